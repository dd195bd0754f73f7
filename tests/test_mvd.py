"MVD: frozen teachers, frame selection, zero loss for a perfect student, MVD's state-dict names, official teacher weights, the script."
import argparse, shutil, warnings
from pathlib import Path
import pytest, torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from safetensors.torch import load_file
from videomae_nb.encoder import get_config
from videomae_nb.masking import tube_mask
from videomae_nb.videomae import VideoMAE
from videomae_nb.checkpoints import CheckpointError
from videomae_nb.mvd import (MVDStudent, ImageTeacher, VideoTeacher, image_teacher, make_teachers, teacher_targets, mvd_loss,
                             load_image_teacher, load_video_teacher, mvd_config, sincos_table_3d)
from videomae_nb.masking import MaskSpec
from videomae_nb.train import main, train_step, MVDObjective, make_optimizer
from videomae_nb.runs import list_checkpoints, read_metrics

ROOT = Path(__file__).resolve().parents[1]
FAST = dict(data=str(ROOT/'data_samples'), frames=8, size=64, batch_size=2, num_workers=0, quiet=True)

def tiny_teachers(frames=8, size=64):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')                        # random teachers warn, on purpose
        return make_teachers(get_config('tiny'), frames, size, default='tiny')[:2]

def mae_official_state_dict(dim=192, depth=2, dec_dim=64, patch=16, grid=4):
    "Random weights under the key names and shapes of MAE's MaskedAutoencoderViT (encoder and decoder)."
    shapes = {'cls_token': (1, 1, dim), 'pos_embed': (1, grid * grid + 1, dim), 'mask_token': (1, 1, dec_dim),
              'patch_embed.proj.weight': (dim, 3, patch, patch), 'patch_embed.proj.bias': (dim,), 'norm.weight': (dim,), 'norm.bias': (dim,),
              'decoder_embed.weight': (dec_dim, dim), 'decoder_embed.bias': (dec_dim,), 'decoder_pos_embed': (1, grid * grid + 1, dec_dim),
              'decoder_norm.weight': (dec_dim,), 'decoder_norm.bias': (dec_dim,),
              'decoder_pred.weight': (patch * patch * 3, dec_dim), 'decoder_pred.bias': (patch * patch * 3,)}
    for pre, d in (('blocks', dim), ('decoder_blocks', dec_dim)):
        for i in range(depth):
            for k, s in {'norm1.weight': (d,), 'norm1.bias': (d,), 'attn.qkv.weight': (3 * d, d), 'attn.qkv.bias': (3 * d,),
                         'attn.proj.weight': (d, d), 'attn.proj.bias': (d,), 'norm2.weight': (d,), 'norm2.bias': (d,),
                         'mlp.fc1.weight': (4 * d, d), 'mlp.fc1.bias': (4 * d,), 'mlp.fc2.weight': (d, 4 * d), 'mlp.fc2.bias': (d,)}.items():
                shapes[f'{pre}.{i}.{k}'] = s
    return {k: torch.randn(s) for k, s in shapes.items()}

def test_teachers_get_no_gradients_and_do_not_change():
    it, vt = tiny_teachers()
    torch.manual_seed(0)
    student = MVDStudent(mvd_config('tiny'), it.embed_dim, vt.cfg.dim, 8, 64)
    opt = make_optimizer(student, lr=1e-2)
    acc = Accelerator(cpu=True)
    student, opt = acc.prepare(student, opt)
    student.train(); it.train(); vt.train()                     # a loop's .train() must not reach the teachers
    before = {k: v.clone() for k, v in {**it.state_dict(), **vt.state_dict()}.items()}
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        out = train_step(acc, student, opt, [dict(video=torch.randn(2, 3, 8, 64, 64))],
                         MVDObjective(student.cfg, MaskSpec(0.75), (it, vt)), g)
        assert torch.isfinite(out['loss'])
    assert not it.training and not vt.training
    for m in (it, vt):
        assert all(not p.requires_grad and p.grad is None for p in m.parameters())
    after = {**it.state_dict(), **vt.state_dict()}
    assert all(torch.equal(before[k], after[k]) for k in before)
    in_opt = {id(p) for g_ in opt.param_groups for p in g_['params']}
    assert not in_opt & {id(p) for m in (it, vt) for p in m.parameters()}

def test_teachers_run_without_grad_in_the_training_precision():
    it, vt = tiny_teachers()
    student = MVDStudent(mvd_config('tiny'), it.embed_dim, vt.cfg.dim, 8, 64)
    AcceleratorState._reset_state(reset_partial_state=True)    # the state is a per-process singleton; other tests use 'no'
    acc = Accelerator(cpu=True, mixed_precision='bf16')
    opt = make_optimizer(student, lr=1e-3)
    student, opt = acc.prepare(student, opt)
    seen = []
    for m in (it, vt):
        m.register_forward_pre_hook(lambda mod, args: seen.append((torch.is_grad_enabled(), torch.is_autocast_enabled('cpu'),
                                                                   torch.get_autocast_dtype('cpu'))))
    train_step(acc, student, opt, [dict(video=torch.randn(2, 3, 8, 64, 64))],
               MVDObjective(student.cfg, MaskSpec(0.75), (it, vt)), torch.Generator().manual_seed(0))
    AcceleratorState._reset_state(reset_partial_state=True)
    assert seen == [(False, True, torch.bfloat16)] * 2

@pytest.mark.parametrize('frames', [8, 16])
def test_image_teacher_sees_frames_0_2_4(frames):
    it, vt = tiny_teachers(frames)
    video = torch.arange(frames, dtype=torch.float)[None, None, :, None, None].expand(2, 3, frames, 64, 64).contiguous()
    video[1] += 100                                             # tell the two clips apart
    seen = []
    it.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    img, vid = teacher_targets(it, vt, video)
    (x,) = seen
    assert x.shape == (2 * frames // 2, 3, 64, 64)
    ids = x.flatten(1).mean(1).tolist()                         # one constant value per frame
    assert ids == [float(f) for f in range(0, frames, 2)] + [100. + f for f in range(0, frames, 2)]
    assert img.shape == (2, frames // 2 * 16, 192) and vid.shape == (2, frames // 2 * 16, 192)

def test_a_student_that_outputs_the_teacher_features_has_zero_loss():
    it, vt = tiny_teachers()
    student = MVDStudent(mvd_config('tiny'), it.embed_dim, vt.cfg.dim, 8, 64)
    video = torch.randn(2, 3, 8, 64, 64)
    mask = tube_mask(2, student.table_grid, 0.75, torch.Generator().manual_seed(0))
    img_t, vid_t = teacher_targets(it, vt, video)
    for kind in ('smoothl1', 'l1', 'l2'):
        assert mvd_loss(*student(video, mask), img_t, vid_t, mask, kind)[0] > 0
    student.decoder_img.forward = lambda x, n: img_t[mask].view(2, n, -1)
    student.decoder_vid.forward = lambda x, n: vid_t[mask].view(2, n, -1)
    for kind in ('smoothl1', 'l1', 'l2'):
        loss, l_img, l_vid = mvd_loss(*student(video, mask), img_t, vid_t, mask, kind, 2., 3.)
        assert loss.item() == l_img.item() == l_vid.item() == 0.

def mvd_official_keys_vit_b():
    "REFERENCE §10: the keys of MVD's `pretrain_masked_video_student_base_patch16_224` (no cls token, decoder depth 2)."
    blk = ['norm1.weight', 'norm1.bias', 'attn.qkv.weight', 'attn.q_bias', 'attn.v_bias', 'attn.proj.weight', 'attn.proj.bias',
           'norm2.weight', 'norm2.bias', 'mlp.fc1.weight', 'mlp.fc1.bias', 'mlp.fc2.weight', 'mlp.fc2.bias']
    keys = {'patch_embed.proj.weight', 'patch_embed.proj.bias', 'pos_embed', 'norm.weight', 'norm.bias'}
    keys |= {f'blocks.{i}.{k}' for i in range(12) for k in blk}
    for b in ('img', 'vid'):
        keys |= {f'mask_token_{b}', f'down_{b}.weight', f'down_{b}.bias', f'pos_embed_{b}', f'decoder_{b}.norm.weight',
                 f'decoder_{b}.norm.bias', f'decoder_{b}.head.weight', f'decoder_{b}.head.bias'}
        keys |= {f'decoder_{b}.blocks.{i}.{k}' for i in range(2) for k in blk}
    return keys

def test_student_state_dict_keys_are_mvds_for_vit_b():
    with torch.device('meta'): student = MVDStudent('base')
    sd = student.state_dict()
    assert set(sd) == mvd_official_keys_vit_b()
    shapes = {'patch_embed.proj.weight': (768, 3, 2, 16, 16), 'pos_embed': (1, 1568, 768), 'mask_token_img': (1, 1, 768),
              'down_img.weight': (768, 768), 'down_vid.bias': (768,), 'pos_embed_vid': (1, 1568, 768),
              'decoder_img.head.weight': (768, 768), 'blocks.11.attn.qkv.weight': (2304, 768)}
    assert {k: tuple(sd[k].shape) for k in shapes} == shapes
    assert [n for n, p in student.named_parameters() if not p.requires_grad] == ['pos_embed', 'pos_embed_img', 'pos_embed_vid']

def test_student_pos_embed_is_mvds_3d_table():
    student = MVDStudent(mvd_config('tiny'), 192, 192, 16, 224)
    assert torch.equal(student.pos_embed, sincos_table_3d((8, 14, 14), 192))
    cube = student.pos_embed.view(8, 14, 14, 192)
    assert torch.equal(cube[..., :48], cube[:, :1, :1, :48].expand(8, 14, 14, 48))     # D/4 temporal channels
    assert torch.equal(cube[..., 48:], cube[:1, ..., 48:].expand(8, 14, 14, 144))      # 3D/4 spatial channels

def test_official_mae_checkpoint_loads_into_the_image_teacher(tmp_path):
    sd = mae_official_state_dict()
    torch.save({'model': sd, 'args': argparse.Namespace(model='mae_vit')}, tmp_path/'mae.pth')
    it = ImageTeacher(img_size=64, dim=192, depth=2, heads=3)
    rep = load_image_teacher(it, tmp_path/'mae.pth')
    assert rep['skipped'] == ['pos_embed']
    assert set(rep['ignored']) == {k for k in sd if k.startswith('decoder_') or k == 'mask_token'}
    got = it.state_dict()
    assert all(torch.equal(got[k], v) for k, v in sd.items() if k in got and k != 'pos_embed')
    assert got['pos_embed'][0, 0].abs().sum() == 0             # regenerated sin-cos, zero cls row
    del sd['blocks.1.attn.qkv.bias']
    with pytest.raises(CheckpointError, match='blocks.1.attn.qkv.bias'): load_image_teacher(it, sd)  # a strict load refuses

def test_videomae_pretrain_checkpoint_loads_into_the_video_teacher(tmp_path):
    torch.manual_seed(0)
    mae = VideoMAE(get_config('tiny'))
    torch.save({'model': {'_orig_mod.' + k: v for k, v in mae.state_dict().items()}, 'args': argparse.Namespace()}, tmp_path/'v2.pth')
    vt = VideoTeacher('tiny')
    rep = load_video_teacher(vt, tmp_path/'v2.pth')
    assert rep['skipped'] == [] and rep['ignored'] == sorted(k for k in mae.state_dict() if not k.startswith('encoder.'))
    x = torch.randn(1, 3, 4, 32, 32)
    torch.testing.assert_close(vt(x), mae.encoder.forward_features(x))
    with pytest.warns(UserWarning, match='image teacher .* RANDOMLY INITIALIZED'):
        _, vt2, notes = make_teachers(get_config('tiny'), 4, 32, image_arch='tiny', video_ckpt=tmp_path/'v2.pth')
    assert vt2.cfg.dim == 192 and any('video teacher' in n for n in notes)

def test_mvd_script_run_checkpoint_and_resume(tmp_path):
    teacher = main(steps=2, out=str(tmp_path/'teacher'), **FAST)
    kw = dict(objective='mvd', video_teacher_ckpt=teacher['run_dir'], **FAST)
    with pytest.warns(UserWarning, match='RANDOMLY INITIALIZED'):
        full = main(steps=4, save_every=2, keep=5, out=str(tmp_path/'full'), **kw)
    run = Path(full['run_dir'])
    assert {p.name for p in run.iterdir()} == {'checkpoints', 'config.json', 'features.png', 'loss.png', 'metrics.csv'}
    sd = load_file(str(run/'checkpoints'/'checkpoint-0000004'/'model.safetensors'))
    assert set(sd) == set(MVDStudent(mvd_config('tiny'), 192, 192, 8, 64).state_dict())   # the student only
    part = tmp_path/'part'; (part/'checkpoints').mkdir(parents=True)
    shutil.copytree(run/'checkpoints'/'checkpoint-0000002', part/'checkpoints'/'checkpoint-0000002')
    with pytest.warns(UserWarning):
        main(steps=4, save_every=2, keep=5, out=str(part), resume='auto', **kw)
    sd2 = load_file(str(part/'checkpoints'/'checkpoint-0000004'/'model.safetensors'))
    for k in sd: torch.testing.assert_close(sd[k], sd2[k], rtol=0, atol=1e-6)
    assert [r['loss'] for r in read_metrics(run)][2:] == pytest.approx([r['loss'] for r in read_metrics(part)], abs=1e-6)

@pytest.mark.parametrize('bad, msg', [(dict(objective='features'), 'pixel or mvd'), (dict(decoder_mask_ratio=0.5), 'does not apply'),
                                      (dict(distill_loss='cosine'), 'smoothl1'), (dict(video_teacher_ckpt='no/such.pth'), 'no/such.pth'),
                                      (dict(image_teacher='resnet50'), 'VisionTransformer')])
def test_bad_mvd_settings_fail_before_work(tmp_path, bad, msg):
    with pytest.raises((ValueError, FileNotFoundError), match=msg):
        main(**{**FAST, 'objective': 'mvd', 'out': str(tmp_path/'x'), **bad})
    assert not (tmp_path/'x').exists()

def test_readme_mvd_section_uses_real_flags():
    import inspect, re
    readme = (ROOT/'README.md').read_text()
    start = readme.index('## MVD')
    section = readme[start:readme.index('\n## ', start + 1)]            # the MVD section alone
    flags = set(re.findall(r'--(\w+)', section))
    assert {'objective', 'video_teacher_ckpt', 'image_teacher_ckpt'} <= flags
    from dataclasses import fields
    from videomae_nb.train import PretrainConfig
    names = {f.name for f in fields(PretrainConfig)}                  # the flags of videomae-train
    assert flags <= names, flags - names
