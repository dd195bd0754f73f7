"Checkpoint loading and conversion (issue 6): official V1/V2, MVD, transformers 4.x/5.x, ours; all offline, random weights."
import argparse, json, os, re, subprocess, sys
from pathlib import Path
import pytest, torch
from torch import nn
from videomae_nb.encoder import get_config, VideoEncoder, vit_base, vit_giant
from videomae_nb.decoder import VideoDecoder
from videomae_nb.patching import TubeletEmbed, token_grid, sincos_table_1d
from videomae_nb.masking import tube_mask
from videomae_nb.patching import sincos_table_3d
from videomae_nb.videomae import VideoMAE
from videomae_nb.classifier import VideoClassifier
from videomae_nb import checkpoints as ck
from videomae_nb.checkpoints import (load_weights, CheckpointError, DECODER_KEYS, FINETUNE_FROM_PRETRAIN, resize_pos_table,
                                     read_state_dict, canonical_state_dict, to_hf, from_hf, load_hf_model,
                                     hf_config, match_hf_eps, official_to_hf, infer_config, load_pretrained, fetch, RELEASES, main)

ROOT = Path(__file__).resolve().parents[1]
CFG = get_config('tiny', depth=2, decoder_depth=1)

def _perturbed(model, seed=0):
    "Every parameter moved off its init (zero biases would hide mistakes)."
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters(): p.add_(torch.randn(p.shape, generator=g) * 0.02)
    return model.eval()

def _equal_state(model, sd):
    cur = model.state_dict()
    return sorted(cur) == sorted(sd) and all(torch.equal(cur[k], sd[k]) for k in sd)

def _hf4(sd):
    "transformers 5.x names → 4.x (`query.bias` → `q_bias`, `value.bias` → `v_bias` under `attention.attention.`)."
    return {re.sub(r'attention\.attention\.(query|value)\.bias', lambda m: f'attention.attention.{m[1][0]}_bias', k): v for k, v in sd.items()}

@pytest.fixture(scope='module')
def pretrain_sd(): return _perturbed(VideoMAE(CFG)).state_dict()

@pytest.fixture(scope='module')
def finetune_sd(): return _perturbed(VideoClassifier(CFG, num_classes=400), 1).state_dict()

# --- official formats ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize('container', ['model', 'module', None])
@pytest.mark.parametrize('compiled', [False, True])
@pytest.mark.parametrize('case', ['pretrain', 'pretrain->encoder', 'finetune', 'finetune+encoder.'])
def test_official_state_dicts_load_strictly(tmp_path, pretrain_sd, finetune_sd, container, compiled, case):
    src = pretrain_sd if case.startswith('pretrain') else finetune_sd
    if case == 'finetune+encoder.': src = {f'encoder.{k}': v for k, v in src.items()}
    if compiled: src = {f'_orig_mod.{k}': v for k, v in src.items()}
    torch.save({container: src, 'epoch': 3, 'args': argparse.Namespace(lr=1e-3)} if container else src, tmp_path/'ckpt.pth')
    model = {'pretrain': lambda: VideoMAE(CFG), 'pretrain->encoder': lambda: VideoEncoder(CFG)}.get(case, lambda: VideoClassifier(CFG, 400))()
    allow = DECODER_KEYS if case == 'pretrain->encoder' else ()
    rep = load_weights(model, tmp_path/'ckpt.pth', allow_unexpected=allow, verbose=False)
    assert not rep.missing and not rep.reinitialized and not rep.problems
    assert rep.unexpected == ([] if case != 'pretrain->encoder' else [k for k in pretrain_sd if not k.startswith('encoder.')])
    want = pretrain_sd if case == 'pretrain' else {k[len('encoder.'):]: v for k, v in pretrain_sd.items() if k.startswith('encoder.')} \
           if case == 'pretrain->encoder' else finetune_sd
    assert _equal_state(model, want)
    if compiled: assert '_orig_mod.' in rep.source

def test_file_kinds_and_folders(tmp_path, pretrain_sd):
    "safetensors, a sharded index, a DeepSpeed folder and our training checkpoint folder all load."
    from safetensors.torch import save_file
    from videomae_nb.train import save_checkpoint
    save_file(pretrain_sd, str(tmp_path/'w.safetensors'))
    keys = list(pretrain_sd); half = len(keys) // 2
    (tmp_path/'sharded').mkdir()
    save_file({k: pretrain_sd[k] for k in keys[:half]}, str(tmp_path/'sharded/a.safetensors'))
    save_file({k: pretrain_sd[k] for k in keys[half:]}, str(tmp_path/'sharded/b.safetensors'))
    (tmp_path/'sharded/model.safetensors.index.json').write_text(json.dumps(
        {'weight_map': {k: 'a.safetensors' if i < half else 'b.safetensors' for i, k in enumerate(keys)}}))
    (tmp_path/'ds').mkdir(); torch.save({'module': pretrain_sd, 'ds_version': '0.9'}, tmp_path/'ds/mp_rank_00_model_states.pt')
    run = save_checkpoint(tmp_path/'run', 5, pretrain_sd, {'optimizer': {}})
    for src in (tmp_path/'w.safetensors', tmp_path/'sharded', tmp_path/'ds', run):
        model = VideoMAE(CFG)
        load_weights(model, src, verbose=False)
        assert _equal_state(model, pretrain_sd), src

def test_weights_only_refuses_code_but_reads_plain_data(tmp_path, pretrain_sd):
    import numpy as np
    torch.save({'model': pretrain_sd, 'best_acc': np.float64(81.5), 'args': argparse.Namespace(x=1)}, tmp_path/'ok.pth')
    assert sorted(read_state_dict(tmp_path/'ok.pth')[0]) == sorted(pretrain_sd)
    torch.save({'model': pretrain_sd, 'hook': nn.ReLU()}, tmp_path/'evil.pth')
    with pytest.raises(CheckpointError, match=r"evil\.pth.*torch\.nn\.modules\.activation\.ReLU.*weights_only=True"):
        read_state_dict(tmp_path/'evil.pth')

def test_truncated_state_dict_is_refused_with_a_report(finetune_sd):
    cut = {k: v for k, v in finetune_sd.items() if not k.startswith('blocks.1.') and k != 'fc_norm.bias'}
    model = VideoClassifier(CFG, 400)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError) as e: load_weights(model, cut, verbose=False)
    msg = str(e.value)
    assert 'REFUSED' in msg and 'blocks.1.* (13)' in msg and 'fc_norm.bias' in msg and 'allow_missing' in msg
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())      # nothing was loaded
    rep = load_weights(model, cut, allow_missing=['blocks.1.*', 'fc_norm.bias'], verbose=False)   # unless the caller says so
    assert len(rep.missing) == 14

def test_unexpected_keys_refused_unless_allowed(pretrain_sd):
    with pytest.raises(CheckpointError, match=r'unexpected in the source: mask_token, encoder_to_decoder\.weight, decoder\.\* \(17\)'):
        load_weights(VideoEncoder(CFG), pretrain_sd, verbose=False)
    with pytest.raises(CheckpointError, match='shape'):      # a mismatch other than the head is never allowed
        load_weights(VideoMAE(get_config('tiny', depth=2, decoder_depth=1, decoder_dim=48, decoder_heads=3)), pretrain_sd, verbose=False)

def test_head_with_other_classes_is_reinitialized(finetune_sd, capsys):
    model = VideoClassifier(CFG, num_classes=10)
    head = model.head.weight.clone()
    rep = load_weights(model, {'module': finetune_sd})
    assert rep.reinitialized == {'head.weight': ((400, 192), (10, 192)), 'head.bias': ((400,), (10,))}
    assert 're-initialized head.weight: (400, 192) in the source, (10, 192) here' in capsys.readouterr().out
    assert torch.equal(model.head.weight, head)
    assert torch.equal(model.blocks[0].attn.qkv.weight, finetune_sd['blocks.0.attn.qkv.weight'])
    with pytest.raises(CheckpointError, match='head.weight: shape'): load_weights(VideoClassifier(CFG, 10), finetune_sd, reinit_head=False, verbose=False)

def test_head_rows_reindex_k710_style(tmp_path):
    src = _perturbed(VideoClassifier(CFG, num_classes=7)).state_dict()
    rows = [6, 0, 3, 2]
    (tmp_path/'label_7to4.json').write_text(json.dumps(rows))
    model = VideoClassifier(CFG, num_classes=4)
    rep = load_weights(model, src, head_rows=tmp_path/'label_7to4.json', verbose=False)
    assert not rep.reinitialized and torch.equal(model.head.weight, src['head.weight'][rows])

def test_finetune_from_pretrain(pretrain_sd):
    model = VideoClassifier(CFG, num_classes=10)
    rep = load_weights(model, {'model': pretrain_sd}, **FINETUNE_FROM_PRETRAIN, verbose=False)
    assert rep.missing == ['fc_norm.weight', 'fc_norm.bias', 'head.weight', 'head.bias']
    assert torch.equal(model.blocks[1].attn.v_bias, pretrain_sd['encoder.blocks.1.attn.v_bias'])

def test_silent_zeroing_is_caught(pretrain_sd):
    "A target that drops the attention biases while loading (as transformers 5 once did) cannot pass the check."
    class Lossy(VideoEncoder):
        def load_state_dict(self, sd, strict=True, assign=False):
            out = super().load_state_dict(sd, strict=strict)
            with torch.no_grad():
                for b in self.blocks: b.attn.q_bias.zero_()
            return out
    with pytest.raises(CheckpointError, match=r'blocks\.0\.attn\.q_bias, blocks\.1\.attn\.q_bias differ from the source'):
        load_weights(Lossy(CFG), pretrain_sd, allow_unexpected=DECODER_KEYS, verbose=False)

# --- MVD and other models ----------------------------------------------------------------------------------------

class MVDStudentStandIn(nn.Module):
    "Exactly the keys of an MVD student (REFERENCE §10), for a tiny size: until the real student lands."
    def __init__(self, cfg=CFG, n=8 * 4 * 4, dec=96, teacher=64):
        super().__init__()
        self.patch_embed = TubeletEmbed(cfg.dim, cfg.patch_size, cfg.tubelet_size)
        self.pos_embed = nn.Parameter(torch.zeros(1, n, cfg.dim), requires_grad=False)
        self.blocks = VideoEncoder(cfg).blocks
        self.norm = nn.LayerNorm(cfg.dim, eps=1e-6)
        for b in ('img', 'vid'):
            setattr(self, f'mask_token_{b}', nn.Parameter(torch.zeros(1, 1, dec)))
            setattr(self, f'down_{b}', nn.Linear(cfg.dim, dec))
            setattr(self, f'pos_embed_{b}', nn.Parameter(torch.zeros(1, n, dec), requires_grad=False))
            setattr(self, f'decoder_{b}', VideoDecoder(dec, 1, 3, teacher))

@pytest.fixture(scope='module')
def mvd_sd():
    sd = _perturbed(MVDStudentStandIn()).state_dict()
    assert {k.split('.')[0] for k in sd} == {'patch_embed', 'pos_embed', 'blocks', 'norm', 'mask_token_img', 'mask_token_vid', 'down_img',
                                             'down_vid', 'pos_embed_img', 'pos_embed_vid', 'decoder_img', 'decoder_vid'}
    return sd

def test_mvd_student_loads_into_a_student(mvd_sd):
    model = MVDStudentStandIn()
    rep = load_weights(model, {'model': mvd_sd}, verbose=False)
    assert rep.format == 'mvd-student' and not rep.missing and not rep.unexpected
    assert _equal_state(model, mvd_sd)

def test_mvd_student_encoder_into_our_encoder(mvd_sd):
    enc = VideoEncoder(CFG)
    with pytest.raises(CheckpointError, match='pos_embed'): load_weights(enc, mvd_sd, allow_unexpected=DECODER_KEYS, verbose=False)
    rep = load_weights(enc, mvd_sd, allow_unexpected=DECODER_KEYS + ('pos_embed',), verbose=False)
    assert 'pos_embed' in rep.unexpected and any(k.startswith('decoder_vid.') for k in rep.unexpected)
    assert torch.equal(enc.blocks[1].mlp.fc2.weight, mvd_sd['blocks.1.mlp.fc2.weight'])

def test_mvd_student_into_a_classifier_keeps_its_table(mvd_sd):
    clf = VideoClassifier(CFG, num_classes=5).eval()
    load_weights(clf, mvd_sd, source_grid=(8, 4, 4), **FINETUNE_FROM_PRETRAIN, verbose=False)
    assert torch.equal(clf.pos_embed, mvd_sd['pos_embed'])
    video = torch.randn(1, 3, 16, 64, 64)
    with torch.no_grad():
        x = clf.patch_embed(video) + mvd_sd['pos_embed']
        for b in clf.blocks: x = b(x)
        torch.testing.assert_close(clf(video), clf.head(clf.fc_norm(x.mean(1))))
    clf2 = VideoClassifier(CFG, num_classes=5)    # at 8 frames of 128²: the table is resized
    rep = load_weights(clf2, mvd_sd, source_grid=(8, 4, 4), grid=token_grid(8, 128, 128), **FINETUNE_FROM_PRETRAIN, verbose=False)
    assert rep.resized == {'pos_embed': ((8, 4, 4), (4, 8, 8))} and clf2(torch.randn(1, 3, 8, 128, 128)).shape == (1, 5)

def test_from_checkpoint_picks_the_model(mvd_sd, pretrain_sd):
    with pytest.raises(CheckpointError, match="kind='classifier'"): ck.from_checkpoint(mvd_sd, verbose=False)
    clf = ck.from_checkpoint(mvd_sd, kind='classifier', verbose=False)
    assert isinstance(clf, VideoClassifier) and clf.pos_embed.shape == (1, 128, 192)
    enc = ck.from_checkpoint({'model': pretrain_sd}, kind='encoder', verbose=False)
    assert type(enc) is VideoEncoder and torch.equal(enc.norm.weight, pretrain_sd['encoder.norm.weight'])

def test_mae_image_teacher_loads_into_timm_vit():
    "The MVD image teacher: an MAE checkpoint (cls token, full qkv bias, decoder_*) into timm's ViT."
    from timm.models.vision_transformer import VisionTransformer
    kw = dict(img_size=32, patch_size=16, embed_dim=32, depth=1, num_heads=2, num_classes=0)
    src = _perturbed(VisionTransformer(**kw)).state_dict()
    src.update({'decoder_embed.weight': torch.randn(16, 32), 'decoder_pos_embed': torch.randn(1, 5, 16), 'mask_token': torch.randn(1, 1, 16)})
    teacher = VisionTransformer(**kw)
    rep = load_weights(teacher, {'model': src}, allow_unexpected=DECODER_KEYS, verbose=False)
    assert rep.format == 'mae-image' and sorted(rep.unexpected) == ['decoder_embed.weight', 'decoder_pos_embed', 'mask_token']
    assert torch.equal(teacher.blocks[0].attn.qkv.bias, src['blocks.0.attn.qkv.bias'])

# --- position tables ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize('frames,size', [(8, 224), (32, 224), (16, 160), (16, 320), (8, 160), (32, 320)])
def test_position_tables_resize(frames, size):
    grid = token_grid(frames, size, size)
    table = resize_pos_table(sincos_table_1d(1568, 192), (8, 14, 14), grid)
    assert table.shape == (1, grid[0] * grid[1] * grid[2], 192)
    base = sincos_table_1d(1568, 192).reshape(8, 14, 14, 192)
    out = table.reshape(*grid, 192)
    if grid[1:] == (14, 14) and grid[0] == 4: torch.testing.assert_close(out, (base[0::2] + base[1::2]) / 2)
    if grid[0] == 8:              # space only: every time slice resized on its own
        flat = resize_pos_table(base[3].reshape(1, 196, 192), (1, 14, 14), (1, *grid[1:]))
        torch.testing.assert_close(out[3].reshape(1, -1, 192), flat)
    const_t = base[:1].expand(8, -1, -1, -1).reshape(1, 1568, 192)      # constant in time stays constant
    r = resize_pos_table(const_t, (8, 14, 14), grid).reshape(*grid, 192)
    torch.testing.assert_close(r, r[:1].expand_as(r))

@pytest.mark.parametrize('frames,size', [(8, 160), (32, 160), (8, 320)])
def test_v2_finetune_table_at_other_sizes(finetune_sd, frames, size):
    "V2's fine-tuning builds the model at its size (16 frames: the plain 1-D table of the grid; 8 or 32: a reshape error there)."
    clf = VideoClassifier(CFG, num_classes=400)
    grid = token_grid(frames, size, size)
    rep = load_weights(clf, finetune_sd, grid=grid, pos='1d', verbose=False)
    assert rep.resized == {} and clf.pos_embed is None          # nothing stored, nothing interpolated: the 1-D table of the grid
    with torch.no_grad(): assert clf(torch.randn(1, 3, frames, size, size)).shape == (1, 400)
    assert load_weights(VideoClassifier(CFG, 400), finetune_sd, grid=(8, 14, 14), pos='1d', verbose=False).resized == {}

# --- transformers ------------------------------------------------------------------------------------------------

transformers = pytest.importorskip('transformers')

def _hf_pair(kind, eps=1e-6, attn='sdpa', seed=0, **kw):
    "A perturbed transformers model of the tiny size (built from a config, no download)."
    cfg = hf_config(get_config('tiny', depth=2, decoder_depth=1, norm_eps=eps), img_size=64, num_frames=8, pretrain=kind == 'pretrain', **kw)
    cfg._attn_implementation = attn
    cls = transformers.VideoMAEForPreTraining if kind == 'pretrain' else transformers.VideoMAEForVideoClassification
    hf = cls(cfg)
    if eps == 1e-6: match_hf_eps(hf)
    return _perturbed(hf, seed)

def _outputs(ours, hf, kind):
    video = torch.randn(2, 3, 8, 64, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        if kind == 'pretrain':
            mask = tube_mask(2, (4, 4, 4), 0.75, torch.Generator().manual_seed(5))
            return ours(video, mask), hf(pixel_values=video.transpose(1, 2), bool_masked_pos=mask).logits
        return ours(video), hf(pixel_values=video.transpose(1, 2)).logits

@pytest.mark.parametrize('kind', ['pretrain', 'classifier'])
@pytest.mark.parametrize('names', ['5.x', '4.x'])
def test_transformers_weights_load_and_match(tmp_path, kind, names):
    hf = _hf_pair(kind, num_labels=7) if kind == 'classifier' else _hf_pair(kind)
    sd = hf.state_dict() if names == '5.x' else _hf4(hf.state_dict())
    assert any(k.endswith('.q_bias') for k in sd) == (names == '4.x')
    hf.config.save_pretrained(tmp_path)                                       # a folder as transformers writes it
    torch.save(sd, tmp_path/'pytorch_model.bin')
    ours = from_hf(tmp_path, verbose=False)
    rep = load_weights(type(ours)(ours.cfg, **({'num_classes': 7} if kind == 'classifier' else {})), sd, verbose=False)
    assert rep.format == f'transformers-{names}'
    a, b = _outputs(ours, hf, kind)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    enc = ours.encoder if kind == 'pretrain' else ours
    for i in range(2):                                                        # the biases are the source's non-zero values
        for ob, hb in ((enc.blocks[i].attn.q_bias, hf.videomae.encoder.layer[i].attention.attention.query.bias),
                       (enc.blocks[i].attn.v_bias, hf.videomae.encoder.layer[i].attention.attention.value.bias)):
            assert hb.abs().min() > 0 and torch.equal(ob, hb)

@pytest.mark.parametrize('kind', ['pretrain', 'classifier'])
def test_transformers_default_eps_reproduced_with_match_eps(kind):
    "Hub checkpoints keep transformers' eps (1e-12 and hard-coded 1e-5); match_eps copies them, eager attention is bit-close."
    hf = _hf_pair(kind, eps=1e-12, attn='eager', **({'num_labels': 3} if kind == 'classifier' else {}))
    ours = from_hf(hf, match_eps=True, verbose=False)
    a, b = _outputs(ours, hf, kind)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)

def test_transformers_first_token_pooling_loads_faithfully():
    "use_mean_pooling=False (the first patch token after layernorm) is our pool='first'; once refused, now equal outputs."
    hf_cls = _perturbed(transformers.VideoMAEForVideoClassification(hf_config(get_config('tiny', depth=2, decoder_depth=1), 64, 8,
                                                                              pretrain=True, num_labels=3)))
    match_hf_eps(hf_cls)
    ours = from_hf(hf_cls, verbose=False)
    assert ours.pooling == 'first'
    a, b = _outputs(ours, hf_cls, 'classifier')
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)

@pytest.mark.parametrize('kind', ['pretrain', 'classifier', 'encoder'])
def test_ours_to_transformers_folder_and_back(tmp_path, kind):
    ours = _perturbed({'pretrain': lambda: VideoMAE(CFG), 'classifier': lambda: VideoClassifier(CFG, num_classes=6),
                       'encoder': lambda: VideoEncoder(CFG)}[kind]())
    folder = to_hf(ours, tmp_path/'hf', num_frames=8, img_size=64, id2label={i: f'c{i}' for i in range(6)} if kind == 'classifier' else None)
    hf = load_hf_model(folder).eval()
    assert type(hf).__name__ == ck._HF_CLASS[kind] and hf.config.layer_norm_eps == 1e-6
    video = torch.randn(2, 3, 8, 64, 64)
    with torch.no_grad():
        if kind == 'pretrain':
            mask = tube_mask(2, (4, 4, 4), 0.75, torch.Generator().manual_seed(1))
            a, b = ours(video, mask), hf(pixel_values=video.transpose(1, 2), bool_masked_pos=mask).logits
        elif kind == 'classifier': a, b = ours(video), hf(pixel_values=video.transpose(1, 2)).logits
        else: a, b = ours(video), hf(pixel_values=video.transpose(1, 2)).last_hidden_state
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    back = from_hf(folder, verbose=False)
    assert type(back) is type(ours) and _equal_state(back, ours.state_dict())

def test_fixed_table_does_not_convert(tmp_path):
    clf = VideoClassifier(CFG, num_classes=3)
    clf.pos_embed = sincos_table_3d((4, 4, 4), 192)
    with pytest.raises(CheckpointError, match='fixed position table'): to_hf(clf, tmp_path/'x', num_frames=8, img_size=64)

def test_v2_hub_remote_code_weights(tmp_path, finetune_sd):
    "OpenGVLab/VideoMAEv2-* folders: official fine-tuned names under `model.`, fc_norm, no head."
    from safetensors.torch import save_file
    sd = {f'model.{k}': v for k, v in finetune_sd.items() if not k.startswith('head.')}
    save_file(sd, str(tmp_path/'model.safetensors'))
    (tmp_path/'config.json').write_text(json.dumps({'model_type': 'VideoMAEv2_Base', 'model_config': {'num_heads': 3, 'embed_dim': 192}}))
    model = from_hf(tmp_path, verbose=False)
    assert isinstance(model, VideoClassifier) and isinstance(model.head, nn.Identity)
    assert torch.equal(model.fc_norm.weight, finetune_sd['fc_norm.weight'])

def test_vit_base_names_and_shapes_match_transformers():
    "Real ViT-B shapes (meta device, no memory): our names map onto transformers' exactly; config read back from shapes."
    with torch.device('meta'):
        ours = VideoMAE(vit_base()).state_dict()
        hf = transformers.VideoMAEForPreTraining(hf_config(vit_base())).state_dict()
    mapped = official_to_hf(ours)
    assert sorted(mapped) == sorted(hf) and all(mapped[k].shape == hf[k].shape for k in hf)
    assert infer_config(canonical_state_dict(ours)[0]) == vit_base()
    with torch.device('meta'): g = VideoClassifier(vit_giant(), num_classes=710).state_dict()
    cfg = infer_config(canonical_state_dict(g)[0])
    assert cfg.patch_size == 14 and cfg.dim == 1408 and cfg.heads == 16 and int(cfg.dim * cfg.mlp_ratio) == 6144

# --- registry and command -----------------------------------------------------------------------------------------

def test_registry_entries():
    assert len(RELEASES) >= 30
    for r in RELEASES.values():
        assert r.project in ('videomae', 'videomae-v2', 'mvd') and r.kind in ('pretrain', 'finetune', 'features')
        assert r.arch in ('small', 'base', 'large', 'huge', 'giant') and r.data and r.source.startswith('https://') and r.license
        assert (r.kind == 'finetune') == (r.classes > 0)
    assert RELEASES['videomae-base-k400-pretrain'].hub == 'MCG-NJU/videomae-base'

def test_load_pretrained_from_a_local_file(tmp_path, pretrain_sd, finetune_sd):
    torch.save({'model': pretrain_sd}, tmp_path/'pt.pth')
    m = load_pretrained('videomae-base-k400-pretrain', path=tmp_path/'pt.pth', model=VideoMAE(CFG), verbose=False)
    assert _equal_state(m, pretrain_sd)
    clf = load_pretrained('videomae-base-k400-pretrain', path=tmp_path/'pt.pth', model=VideoClassifier(CFG, 10), verbose=False)
    assert torch.equal(clf.blocks[0].attn.q_bias, pretrain_sd['encoder.blocks.0.attn.q_bias'])
    torch.save({'module': finetune_sd}, tmp_path/'ft.pth')
    v2 = load_pretrained('videomaev2-base-k710-distilled', path=tmp_path/'ft.pth', model=VideoClassifier(CFG, 400), num_frames=8, img_size=160, verbose=False)
    assert v2.pos_embed is None and v2(torch.randn(1, 3, 8, 160, 160)).shape == (1, 400)   # the 1-D table of the 4x10x10 grid
    with pytest.raises(KeyError, match='videomae-base-k400-pretrain'): load_pretrained('videomae-base-k400-pretrian', path=tmp_path/'pt.pth')

def test_fetch_errors_are_clear_and_offline(monkeypatch):
    with pytest.raises(CheckpointError, match=r'drive\.google\.com.*path='): fetch('mvd-base-k400-pretrain-from-base')
    import huggingface_hub
    def no_network(*a, **k): raise ConnectionError('no network here')
    monkeypatch.setattr(huggingface_hub, 'hf_hub_download', no_network)
    with pytest.raises(CheckpointError, match=r'MCG-NJU/videomae-base .*ConnectionError.*pass path='): fetch('videomae-base-k400-pretrain')
    with pytest.raises(CheckpointError, match=r'distill/vit_b_k710_dl_from_giant\.pth'): load_pretrained('videomaev2-base-k710-distilled')

def test_convert_command(tmp_path, finetune_sd):
    torch.save({'module': {f'_orig_mod.{k}': v for k, v in finetune_sd.items()}}, tmp_path/'ft.pth')
    out = main(str(tmp_path/'ft.pth'), str(tmp_path/'hf'), to='hf', frames=8, size=64)
    assert json.loads((out/'config.json').read_text())['architectures'] == ['VideoMAEForVideoClassification']
    ours = main(str(out), str(tmp_path/'ours'), to='ours')
    pth = main(str(ours), str(tmp_path/'official.pth'), to='pth')
    back = torch.load(pth, weights_only=True)['model']
    assert sorted(back) == sorted(finetune_sd) and all(torch.equal(back[k], finetune_sd[k]) for k in back)

def test_console_script_entry():
    # the console script calls `cli`, which returns nothing: `main` returns the output path, and a console script
    # exits with its function's return value (a non-zero status for a successful run)
    assert 'videomae-convert=videomae_nb.checkpoints:cli' in (ROOT/'settings.ini').read_text()
    env = {**os.environ, 'PYTHONPATH': str(ROOT)}
    r = subprocess.run([sys.executable, '-m', 'videomae_nb.checkpoints', '--help'], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0 and '--to' in r.stdout and 'pth' in r.stdout

@pytest.mark.parametrize('name', ['notes.pth', 'notes.safetensors', 'notes.bin'])
def test_a_file_that_is_not_a_checkpoint_is_a_clear_error(tmp_path, name):
    from videomae_nb.checkpoints import read_state_dict, CheckpointError
    (tmp_path/name).write_text('these are my notes, not weights\n' * 20)
    with pytest.raises(CheckpointError, match=name): read_state_dict(tmp_path/name)
