"Teaching pictures: the default picture is honest; `videomae-vis` runs on every sample clip and on made videos; errors."
import argparse, os, subprocess, sys
from pathlib import Path
import numpy as np
import pytest
import torch
from PIL import Image
from videomae_nb.data import VideoReadError
from videomae_nb.encoder import get_config
from videomae_nb.masking import mask_to_pixels
from videomae_nb.train import main as train
from videomae_nb.videomae import VideoMAE
from videomae_nb.viz import main, reconstruct, load_model, read_clip, example_masks

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT/'data_samples'
SAMPLES = sorted(DATA.glob('*.mp4'))

@pytest.fixture(scope='module', autouse=True)
def one_thread():
    "Tiny models: one thread is as fast, and much faster on a busy machine."
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

@pytest.fixture(scope='module')
def run(tmp_path_factory, one_thread):
    "A run folder of a tiny model pretrained for a few steps on one clip (normalized targets, 8 frames of 64 px, 16-px patches)."
    d = tmp_path_factory.mktemp('viz')
    (d/'one.txt').write_text(f"{DATA/'cycling_ball_throw.mp4'} 0\n")
    res = train(data=str(d/'one.txt'), steps=8, frames=8, size=64, patch_size=16, batch_size=2, num_workers=0, target='norm', quiet=True, out=str(d/'run'))
    return Path(res['run_dir'])

def make_video(path, frames=40, width=200, height=150, fps=10):
    "A small video of a moving square over a gradient, written with PyAV."
    import av
    yy, xx = np.mgrid[0:height, 0:width]
    with av.open(str(path), 'w') as c:
        s = c.add_stream('mpeg4', rate=fps); s.width, s.height, s.pix_fmt = width, height, 'yuv420p'
        for i in range(frames):
            img = np.stack([xx * 255 // width, yy * 255 // height, np.full_like(xx, 80)], -1).astype(np.uint8)
            x0, y0 = (7 * i) % (width - 40), (3 * i) % (height - 40)
            img[y0:y0 + 40, x0:x0 + 40] = (255, 220, 0)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format='rgb24')): c.mux(p)
        for p in s.encode(): c.mux(p)
    return path

def check_png(path, min_side=200):
    "A PNG that exists, has a sensible size and is not blank; returns its (H, W, 3) array."
    assert Path(path).exists(), path
    a = np.asarray(Image.open(path).convert('RGB'))
    assert min(a.shape[:2]) >= min_side, (path, a.shape)
    assert a.std() > 10, f'{path} looks blank (std {a.std():.1f})'
    return a

def check_gif(path, frames, panels, panel=112):
    "An animated GIF with one frame per video frame, `panels` panels side by side, none blank."
    im = Image.open(path)
    assert im.n_frames == frames, (path, im.n_frames)
    assert im.size == (panels * panel + (panels - 1) * 4, 30 + panel), (path, im.size)
    for i in (0, frames - 1):
        im.seek(i)
        a = np.asarray(im.convert('RGB'))
        assert a[30:, :panel].std() > 5, f'{path} frame {i}: the original panel is blank'

# --- honesty -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('kind', ['trained-norm', 'untrained-pixel'])
def test_default_picture_uses_no_statistic_of_a_hidden_patch(run, kind):
    "Changing hidden pixels of the input leaves the default picture's predicted pixels unchanged (not so for the oracle)."
    model = load_model(run)[0] if kind == 'trained-norm' else VideoMAE(get_config('tiny'), normalize_target=False).eval()
    clip = read_clip(SAMPLES[1], frames=8, stride=4, size=64)
    mask = example_masks((4, 4, 4), 0.9, seed=3)['tube 0.9']
    hidden = mask_to_pixels(mask, (4, 4, 4)).bool()
    changed = torch.where(hidden, torch.randn_like(clip) * 3, clip)
    assert not torch.equal(changed, clip)
    a, b = reconstruct(model, clip, mask), reconstruct(model, changed, mask)
    assert a.mode == ('normalized' if kind == 'trained-norm' else 'pixel')
    for row in ('prediction', 'pasted', 'masked'): assert torch.equal(a.rows[row], b.rows[row]), row
    assert not torch.equal(a.rows['original'], b.rows['original'])
    if model.normalize_target:
        for mode in ('visible-stats',):
            assert torch.equal(reconstruct(model, clip, mask, mode).rows['pasted'], reconstruct(model, changed, mask, mode).rows['pasted'])
        assert not torch.equal(reconstruct(model, clip, mask, 'oracle').rows['pasted'], reconstruct(model, changed, mask, 'oracle').rows['pasted'])

# --- the command ---------------------------------------------------------------------------------------------

def test_command_on_every_sample_clip(run, tmp_path):
    out = tmp_path/'vis'
    res = main(str(DATA), checkpoint=str(run), out=str(out), quiet=True)
    assert res['failed'] == [] and res['modes'] == ['normalized']
    for v in SAMPLES:
        check_png(out/f'{v.stem}-masks.png')
        a = check_png(out/f'{v.stem}-normalized.png')
        assert a.shape[1] > a.shape[0]                                   # frames across, rows down
        check_gif(out/f'{v.stem}-normalized.gif', frames=8, panels=5)   # 8 frames from the run's config
    check_png(out/'metrics.png')
    assert len(res['files']) == 3 * len(SAMPLES) + 1

def _script(args, cwd, module=False):
    "Run the command as a user does: the console script of settings.ini (`sys.exit(fn())`), or `python -m videomae_nb.viz`."
    env = {**os.environ, 'PYTHONPATH': str(ROOT), 'OMP_NUM_THREADS': '1', 'MPLBACKEND': 'Agg'}
    if module: cmd = [sys.executable, '-m', 'videomae_nb.viz', *args]
    else:
        line = next(l for l in (ROOT/'settings.ini').read_text().splitlines() if l.startswith('console_scripts'))
        mod, fn = next(e for e in line.split('=', 1)[1].split() if e.startswith('videomae-vis=')).split('=')[1].split(':')
        cmd = [sys.executable, '-c', f"import sys; from {mod} import {fn}; sys.argv = ['videomae-vis', *{list(map(str, args))!r}]; sys.exit({fn}())"]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=300)

def test_command_on_made_videos_of_other_sizes_and_lengths(run, tmp_path):
    "The `videomae-vis` console script on a 40-frame 200x150 video and a 5-frame portrait one, every mode; exit status 0."
    vids = tmp_path/'made'; vids.mkdir()
    make_video(vids/'long.mp4', frames=40, width=200, height=150)
    make_video(vids/'short.mp4', frames=5, width=96, height=128)
    r = _script([vids, '--checkpoint', run, '--out', tmp_path/'vis', '--mode', 'all', '--frames', '12', '--stride', '3',
                 '--seed', '1', '--max_frames', '6'], cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'wrote 15 files' in r.stdout, r.stdout
    for stem in ('long', 'short'):
        check_png(tmp_path/'vis'/f'{stem}-masks.png')
        for mode, panels in (('normalized', 5), ('visible-stats', 4), ('oracle', 4)):
            check_png(tmp_path/'vis'/f'{stem}-{mode}.png')
            check_gif(tmp_path/'vis'/f'{stem}-{mode}.gif', frames=12, panels=panels)

def test_no_checkpoint_writes_the_masks_and_says_what_is_needed(tmp_path):
    "`python -m videomae_nb.viz` without a checkpoint: the mask picture, an explanation, exit status 0."
    r = _script([SAMPLES[0], '--out', tmp_path, '--size', '128'], cwd=tmp_path, module=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert '--checkpoint' in r.stderr and 'videomae-train' in r.stderr, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [f'{SAMPLES[0].stem}-masks.png']
    check_png(tmp_path/f'{SAMPLES[0].stem}-masks.png')

# --- errors --------------------------------------------------------------------------------------------------

def test_unreadable_videos_are_named(tmp_path):
    bad = tmp_path/'broken.mp4'; bad.write_bytes(b'\0not a video' * 300)
    with pytest.raises(VideoReadError, match='broken.mp4'): main(str(bad), out=str(tmp_path/'o'), quiet=True)
    with pytest.raises(FileNotFoundError, match='missing.mp4'): main(str(tmp_path/'missing.mp4'), out=str(tmp_path/'o'), quiet=True)
    make_video(tmp_path/'good.mp4', frames=20, width=64, height=64)
    with pytest.warns(UserWarning, match='broken.mp4'):
        res = main(str(tmp_path), out=str(tmp_path/'o'), size=64, frames=4, quiet=True)
    assert res['failed'] == [str(bad)] and (tmp_path/'o'/'good-masks.png').exists()

def test_modes_are_checked_against_the_model(run, tmp_path):
    with pytest.raises(ValueError, match='raw pixels'): main(str(SAMPLES[0]), checkpoint=str(run), out=str(tmp_path), mode='pixel', quiet=True)
    with pytest.raises(ValueError, match="'nice'"): main(str(SAMPLES[0]), checkpoint=str(run), out=str(tmp_path), mode='nice', quiet=True)
    with pytest.raises(ValueError, match='--size 100'): main(str(SAMPLES[0]), checkpoint=str(run), out=str(tmp_path), size=100, quiet=True)
    with pytest.raises(ValueError, match='--mask_type'): main(str(SAMPLES[0]), out=str(tmp_path), mask_type='cell', quiet=True)
    assert not list(tmp_path.iterdir())                                 # nothing written before the errors
    from safetensors.torch import save_file
    save_file(VideoMAE(get_config('tiny'), normalize_target=False).state_dict(), str(tmp_path/'pixel.safetensors'))
    with pytest.raises(ValueError, match='use pixel'):
        main(str(SAMPLES[0]), checkpoint=str(tmp_path/'pixel.safetensors'), target='pixel', mode='oracle', out=str(tmp_path), quiet=True)
    res = main(str(SAMPLES[0]), checkpoint=str(tmp_path/'pixel.safetensors'), target='pixel', out=str(tmp_path/'o'),
               size=64, frames=4, quiet=True)
    assert res['modes'] == ['pixel'] and (tmp_path/'o'/f'{SAMPLES[0].stem}-pixel.gif').exists()

def test_official_style_weights_file(run, tmp_path):
    "A `.pth` with the official layout (`model` + `args`, compile prefix) gives the same picture as the run folder."
    model, info = load_model(run)
    torch.save({'model': {f'_orig_mod.{k}': v for k, v in model.state_dict().items()}, 'epoch': 7,
                'args': argparse.Namespace(model='pretrain_videomae_tiny')}, tmp_path/'checkpoint-7.pth')
    m2, info2 = load_model(tmp_path/'checkpoint-7.pth')
    assert m2.cfg == model.cfg and info2['target'] == 'norm' and info['frames'] == 8
    clip = read_clip(SAMPLES[0], frames=8, stride=4, size=64)
    mask = example_masks((4, 4, 4), 0.9, seed=0)['tube 0.9']
    assert torch.equal(reconstruct(model, clip, mask).rows['pasted'], reconstruct(m2, clip, mask).rows['pasted'])
    sd = VideoMAE(get_config('tiny', dim=256, heads=4)).state_dict()
    torch.save(sd, tmp_path/'odd.pth')
    with pytest.raises(ValueError, match='--preset'): load_model(tmp_path/'odd.pth')


@pytest.mark.parametrize('flag', ['size', 'frames', 'stride', 'max_frames', 'gif_size', 'dpi'])
def test_vis_refuses_a_zero_instead_of_using_the_default(monkeypatch, capsys, tmp_path, flag):
    "Issue 22, point 6: `--size 0 --frames 0 --stride 0` once drew at the defaults; now one line, exit 2, no output."
    from videomae_nb.cli import run_cli
    from videomae_nb.viz import main as vis_main
    out = tmp_path/'vis'
    monkeypatch.setattr(sys, 'argv', ['videomae-vis', str(DATA/'cockatoo.mp4'), '--out', str(out), f'--{flag}', '0'])
    with pytest.raises(SystemExit) as e: run_cli(vis_main, 'videomae-vis')
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count('\n') == 1 and f'--{flag} must be >= 1, got 0' in err, err
    assert not out.exists()
