"Never silently wrong (issue 14): FLOPs on every torch, position tables, pooling, release architectures, one-line refusals."
import json, os, shutil, subprocess, sys, warnings
from pathlib import Path
import pytest, torch
from torch import nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode
from videomae_nb.encoder import get_config, VideoEncoder
from videomae_nb.patching import sincos_table_1d, token_grid
from videomae_nb.videomae import VideoMAE, pretrain_macs
from videomae_nb.classifier import VideoClassifier
from videomae_nb.patching import sincos_table_3d
from videomae_nb.ops import count_flops
from videomae_nb.cli import run_cli
from videomae_nb import checkpoints as ck
from videomae_nb.checkpoints import load_weights, from_checkpoint, load_pretrained, CheckpointError, FINETUNE_FROM_PRETRAIN

CFG = get_config('tiny', depth=2, decoder_depth=1)

def _perturbed(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters(): p.add_(torch.randn(p.shape, generator=g) * 0.02)
    return model.eval()

def _by_hand(clf, video, table):
    "Logits of a classifier computed step by step with a given position table (a second formulation)."
    with torch.no_grad():
        x = clf.patch_embed(video) + table
        for b in clf.blocks: x = b(x)
        pooled = clf.fc_norm(x.mean(1)) if clf.pooling == 'mean' else clf.norm(x[:, 0])
        return clf.head(pooled)

# --- 1. FLOPs counted the same on every torch ----------------------------------------------------------------

def test_attention_is_counted_on_every_torch():
    q = torch.randn(2, 3, 10, 8)
    assert count_flops(lambda: F.scaled_dot_product_attention(q, q, q)) == 4 * 2 * 3 * 10 * 10 * 8
    with FlopCounterMode(display=False) as fc: F.scaled_dot_product_attention(q, q, q)
    assert fc.get_total_flops() in (0, 4 * 2 * 3 * 10 * 10 * 8)      # 0 where the fused CPU kernel has no formula (2.14)

def test_vit_b_macs_are_the_official_models_count():
    "35.44 / 25.84 GMAC (ViT-B, 16x224^2, official patch embedding), whatever kernel SDPA dispatches to (PERF.md §5)."
    with torch.device('meta'): model = VideoMAE('base')
    model = model.to_empty(device='cpu').eval()
    v1 = pretrain_macs(model, official_patch_embed=True) / 1e9
    v2 = pretrain_macs(model, decoder_mask_ratio=0.5, official_patch_embed=True) / 1e9
    assert round(v1, 2) == 35.44 and round(v2, 2) == 25.84, (v1, v2, torch.__version__)

def test_benchmark_flops_are_three_forward_passes_of_the_model():
    from videomae_nb import bench
    s = bench.make_step('videomae', 'small', frames=16, size=224, batch=2)
    macs = pretrain_macs(s.model, 16, 224)                           # the same model, our (visible-only) patch embedding
    assert s.flops == pytest.approx(3 * 2 * 2 * macs, rel=1e-9)
    assert s.flops / 1e9 > 6 * 2 * 10                                 # attention included: ~11 GMAC per ViT-S clip (PERF.md)

# --- 2. MVD fine-tuned checkpoints: no pos_embed key, a 3-D table ---------------------------------------------

@pytest.fixture(scope='module')
def mvd_finetuned(tmp_path_factory):
    "An MVD-style fine-tuned classifier (3-D table) and its official file, which holds no pos_embed (as MVD writes it)."
    clf = _perturbed(VideoClassifier(CFG, num_classes=7))
    clf.pos_embed = sincos_table_3d((8, 14, 14), CFG.dim)
    sd = {k: v for k, v in clf.state_dict().items() if k != 'pos_embed'}
    path = tmp_path_factory.mktemp('mvd')/'mvd_ft.pth'
    torch.save({'module': sd}, path)
    return clf, path

def test_mvd_finetuned_roundtrips_with_pos_3d(mvd_finetuned):
    src, path = mvd_finetuned
    video = torch.randn(2, 3, 16, 224, 224, generator=torch.Generator().manual_seed(1))
    want = src(video)
    clf = VideoClassifier(CFG, num_classes=7).eval()
    load_weights(clf, path, pos='3d', verbose=False)
    torch.testing.assert_close(clf(video), want, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(from_checkpoint(path, pos='3d', verbose=False)(video), want, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(_by_hand(clf, video, sincos_table_3d((8, 14, 14), CFG.dim)), want, atol=1e-5, rtol=1e-5)

def test_mvd_finetuned_without_pos_warns_and_names_the_option(mvd_finetuned):
    src, path = mvd_finetuned
    clf = VideoClassifier(CFG, num_classes=7).eval()
    with pytest.warns(UserWarning, match=r"pos='3d'"): rep = load_weights(clf, path, verbose=False)
    assert clf.pos_embed is None and any('assumed' in n for n in rep.notes)
    video = torch.randn(1, 3, 16, 224, 224)
    assert (clf(video) - src(video)).abs().max() > 1e-3                  # the 1-D table gives other logits: hence the warning
    with warnings.catch_warnings():
        warnings.simplefilter('error')                                   # a source that tells, or an explicit choice: quiet
        load_weights(VideoClassifier(CFG, num_classes=7), path, pos='1d', verbose=False)
        load_weights(VideoClassifier(CFG, num_classes=7), {'model': _perturbed(VideoMAE(CFG)).state_dict()},
                     **FINETUNE_FROM_PRETRAIN, verbose=False)

def test_mvd_finetuned_through_our_folder_and_the_command(mvd_finetuned, tmp_path):
    src, path = mvd_finetuned
    ck.main(str(path), str(tmp_path/'ours'), to='ours', pos='3d')
    back = from_checkpoint(tmp_path/'ours', verbose=False)                # our folder stores the table: no option needed
    assert torch.equal(back.pos_embed, sincos_table_3d((8, 14, 14), CFG.dim))
    with pytest.raises(CheckpointError, match='fixed position table'): ck.main(str(path), str(tmp_path/'hf'), to='hf', pos='3d')

def test_recipes_and_registry_name_the_table():
    from videomae_nb.recipes import RECIPES
    ft = [r for r in RECIPES.values() if r.script == 'finetune']
    assert ft and all(r.flags['pos'] == ('3d' if r.method == 'MVD' else '1d') for r in ft)
    assert all(r.pos == ('3d' if r.project == 'mvd' else '1d') for r in ck.RELEASES.values())

# --- 3. VideoMAE V2 at other sizes: the plain 1-D table of the new grid -----------------------------------------

@pytest.mark.parametrize('size', [112, 160, 320])
def test_v2_classifier_at_other_sizes_uses_the_plain_1d_table(size):
    src = _perturbed(VideoClassifier(CFG, num_classes=5)).state_dict()
    clf = VideoClassifier(CFG, num_classes=5).eval()
    grid = token_grid(16, size, size)
    rep = load_weights(clf, {'module': src}, grid=grid, pos='1d', verbose=False)
    assert clf.pos_embed is None and rep.resized == {}
    video = torch.randn(1, 3, 16, size, size)
    torch.testing.assert_close(clf(video), _by_hand(clf, video, sincos_table_1d(grid[0] * grid[1] * grid[2], CFG.dim)),
                               atol=1e-5, rtol=1e-5)
    v2 = load_pretrained('videomaev2-base-k710-distilled', path={'module': src}, model=VideoClassifier(CFG, 5),
                         num_frames=16, img_size=size, verbose=False)
    assert v2.pos_embed is None and not hasattr(ck, 'v2_pos_table')

# --- 4. Released architectures ---------------------------------------------------------------------------------

def test_large_pretraining_release_loads_strictly_with_its_12_block_decoder(tmp_path):
    "The official ViT-L pretraining used decoder depth 12; a file shaped like it (zeros, fp16) loads into the default model."
    with torch.device('meta'): shapes = VideoMAE(get_config('large', decoder_depth=12)).state_dict()
    torch.save({'model': {k: torch.zeros(v.shape, dtype=torch.float16) for k, v in shapes.items()}}, tmp_path/'vit_l.pth')
    model = load_pretrained('videomae-large-k400-pretrain', path=tmp_path/'vit_l.pth', verbose=False)
    assert model.cfg.decoder_depth == 12 and len(model.decoder.blocks) == 12
    del model

def test_a_deeper_decoder_is_never_dropped():
    deep = VideoMAE(get_config('tiny', depth=2, decoder_depth=3)).state_dict()
    with pytest.raises(CheckpointError) as e: load_weights(VideoMAE(CFG), deep, verbose=False)
    assert 'decoder_depth=3' in str(e.value) and 'allow_unexpected' not in str(e.value)
    with pytest.raises(CheckpointError, match='depth=2'): load_weights(VideoEncoder(get_config('tiny', depth=1)), deep,
                                                                       allow_unexpected=ck.DECODER_KEYS, verbose=False)

# --- 5. Pooling read from the checkpoint ----------------------------------------------------------------------

def test_use_cls_classifier_loads_faithfully_or_is_refused():
    src = _perturbed(VideoClassifier(CFG, num_classes=4, pool='first'))
    sd = src.state_dict()
    assert 'norm.weight' in sd and 'fc_norm.weight' not in sd
    video = torch.randn(2, 3, 8, 64, 64)
    back = from_checkpoint({'module': sd}, pos='1d', verbose=False)
    assert back.pooling == 'first'
    torch.testing.assert_close(back(video), src(video), atol=1e-6, rtol=1e-6)
    with pytest.raises(CheckpointError, match=r"pool='first'"):
        load_weights(VideoClassifier(CFG, num_classes=4), sd, pos='1d', **FINETUNE_FROM_PRETRAIN, verbose=False)
    rep = load_weights(VideoClassifier(CFG, num_classes=9), sd, pos='1d', **FINETUNE_FROM_PRETRAIN, verbose=False)
    assert any('first token' in n for n in rep.notes)                    # a new head: encoder loaded, pooling reported
    with pytest.raises(CheckpointError, match='class token'):
        from_checkpoint({'module': {**sd, 'cls_token': torch.zeros(1, 1, CFG.dim)}}, pos='1d', verbose=False)

def test_first_token_classifier_to_transformers_and_back(tmp_path):
    pytest.importorskip('transformers')
    clf = _perturbed(VideoClassifier(CFG, num_classes=3, pool='first'))
    folder = ck.to_hf(clf, tmp_path/'hf', num_frames=8, img_size=64)
    hf = ck.load_hf_model(folder).eval()
    assert hf.config.use_mean_pooling is False
    video = torch.randn(2, 3, 8, 64, 64)
    with torch.no_grad(): torch.testing.assert_close(hf(pixel_values=video.transpose(1, 2)).logits, clf(video), atol=1e-5, rtol=1e-5)
    back = ck.from_hf(folder, verbose=False)
    assert back.pooling == 'first'

# --- 6. One-line refusals from videomae-convert ---------------------------------------------------------------

def _refusal(monkeypatch, capsys, *argv) -> str:
    "Run `videomae-convert ARGV` as the console script does; return its one line of stderr (exit status 2)."
    monkeypatch.setattr(sys, 'argv', ['videomae-convert', *map(str, argv)])
    with pytest.raises(SystemExit) as e: run_cli(ck.main, 'videomae-convert')
    err = capsys.readouterr().err
    assert e.value.code == 2, err
    assert err.count('\n') == 1 and err.startswith('videomae-convert: error: ') and 'Traceback' not in err, err
    return err

@pytest.fixture(scope='module')
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp('convert')
    mvd = {k: v for k, v in VideoEncoder(CFG).state_dict().items()}
    mvd.update(pos_embed=torch.zeros(1, 1568, CFG.dim), **{'down_img.weight': torch.zeros(96, CFG.dim), 'mask_token_img': torch.zeros(1, 1, 96)})
    torch.save({'model': mvd}, d/'mvd_student.pth')
    torch.save({'module': VideoClassifier(CFG, num_classes=3).state_dict()}, d/'ft.pth')
    odd = get_config('tiny', dim=200, heads=4, depth=1, decoder_dim=96)
    torch.save({'module': VideoClassifier(odd, num_classes=3).state_dict()}, d/'odd.pth')
    cls = VideoClassifier(CFG, num_classes=3, pool='first').state_dict()
    torch.save({'module': {**cls, 'cls_token': torch.zeros(1, 1, CFG.dim)}}, d/'cls_token.pth')
    (d/'notes.pth').write_text('not weights\n' * 200)
    return d

@pytest.mark.parametrize('case,argv,says', [
    ('mvd student as an encoder', ['{d}/mvd_student.pth', '{d}/out'], '--model classifier'),
    ('3-D table to transformers', ['{d}/ft.pth', '{d}/out', '--to', 'hf', '--pos', '3d'], 'fixed position table'),
    ('not a checkpoint', ['{d}/notes.pth', '{d}/out'], 'not a readable PyTorch checkpoint'),
    ('missing file', ['{d}/nothing.pth', '{d}/out'], 'no checkpoint at'),
    ('unknown format', ['{d}/ft.pth', '{d}/out', '--to', 'onnx'], '--to must be hf, ours or pth'),
    ('unknown table', ['{d}/ft.pth', '{d}/out', '--to', 'ours', '--pos', '2d'], 'pos must be one of 1d, 3d'),
    ('width of no preset', ['{d}/odd.pth', '{d}/out'], 'pass heads='),
    ('a class token', ['{d}/cls_token.pth', '{d}/out', '--to', 'ours'], 'class token'),
    ('unknown model kind', ['{d}/ft.pth', '{d}/out', '--model', 'decoder'], 'kind must be auto, pretrain, classifier or encoder'),
])
def test_every_convert_refusal_is_one_line(monkeypatch, capsys, files, case, argv, says):
    err = _refusal(monkeypatch, capsys, *[a.format(d=files) for a in argv])
    assert says in err, err

def test_the_console_script_prints_one_line_and_exits_2(files):
    "The real entry point, in a process of its own; --debug shows the traceback."
    exe = shutil.which('videomae-convert')
    cmd = [exe] if exe else [sys.executable, '-m', 'videomae_nb.checkpoints']
    r = subprocess.run(cmd + [str(files/'mvd_student.pth'), str(files/'out')], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.count('\n') == 1 and 'Traceback' not in r.stderr, r.stderr
    r = subprocess.run([sys.executable, '-m', 'videomae_nb.checkpoints', str(files/'nothing.pth'), str(files/'out'), '--debug'],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and 'Traceback' in r.stderr and 'FileNotFoundError' in r.stderr

# --- 7. Stochastic depth reaches the pretraining decoder -------------------------------------------------------

def test_drop_path_reaches_the_decoder():
    m = VideoMAE(get_config('tiny', decoder_depth=3, drop_path=0.2))
    rates = [getattr(b.drop_path, 'drop_prob', 0.) for b in m.decoder.blocks]
    assert rates == pytest.approx(torch.linspace(0, 0.2, 3).tolist())
    m.train()
    video, mask = torch.randn(2, 3, 4, 32, 32), torch.zeros(2, 8, dtype=torch.bool)
    mask[:, :6] = True
    torch.manual_seed(0); a = m(video, mask)
    torch.manual_seed(1); b = m(video, mask)
    assert not torch.equal(a, b)                                         # stochastic in training
    m.eval(); assert torch.equal(m(video, mask), m(video, mask))
