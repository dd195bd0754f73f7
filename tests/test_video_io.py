"""Video input (issue 17): every decoder gives the same frames, PyAV seeks, decode-time resize keeps the clips, and
folders of frames train, fine-tune and pass `videomae-check-data`."""
import fractions, statistics, sys, time, warnings
from pathlib import Path
import numpy as np
import pytest, torch
from videomae_nb.data import (DECODERS, VideoReadError, open_video, video_backend, decoder_info, decode_size, scale_box,
                              multiscale_crop_box, clip_transform, PretrainDataset, read_list_file, video_paths)
from videomae_nb.datasets import FinetuneDataset, MultiViewDataset, check_data, make_motion_videos, build_lists

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT/'data_samples'

def _works(name):
    try: video_backend(name); return True
    except RuntimeError: return False

USABLE = [n for n in DECODERS if _works(n)]
OTHERS = [n for n in DECODERS if n != 'pyav']

def _scene(i, H, W):
    "A frame with texture, colour and a moving bar, so that a wrong frame or a colour error shows."
    y, x = np.mgrid[0:H, 0:W]
    img = np.stack([(x * 3 + i * 5) % 256, (y * 5 + i * 3) % 256, ((x + y) * 2 + i * 7) % 256], -1).astype(np.uint8)
    r = (i * 3) % max(W - 10, 1); img[H // 3:H // 3 + 8, r:r + 10] = 255
    return img

def _write(path, n, W, H, codec='libx264', pts=None, gop=None, fps=30, frames=None):
    "Encode `n` frames with PyAV; `pts` (ms) makes a variable frame rate, `gop` a keyframe every `gop` frames."
    import av
    with av.open(str(path), 'w') as c:
        s = c.add_stream(codec, rate=fps); s.width, s.height, s.pix_fmt = W, H, 'yuv420p'
        if codec == 'libx264': s.options = {'preset': 'veryfast', **({'g': str(gop), 'keyint_min': str(gop)} if gop else {})}
        if pts is not None: s.time_base = s.codec_context.time_base = fractions.Fraction(1, 1000)
        for i in range(n):
            f = av.VideoFrame.from_ndarray(frames[i] if frames is not None else _scene(i, H, W), format='rgb24')
            if pts is not None: f.pts, f.time_base = int(pts[i]), fractions.Fraction(1, 1000)
            for p in s.encode(f): c.mux(p)
        for p in s.encode(): c.mux(p)
    return Path(path)

@pytest.fixture(scope='module')
def made(tmp_path_factory):
    d = tmp_path_factory.mktemp('made')
    rng = np.random.default_rng(0)
    return {'odd size, VP9, WebM (no frame count)': _write(d/'odd.webm', 30, 99, 67, codec='libvpx-vp9'),
            'H.264 in MKV (no frame count)': _write(d/'nocount.mkv', 40, 160, 96),
            'variable frame rate': _write(d/'vfr.mp4', 40, 160, 96, pts=np.cumsum(rng.choice([20, 33, 50, 90], 40))),
            'keyframe every 10 frames': _write(d/'gop.mp4', 45, 128, 64, gop=10)}

def _decoded_count(path):
    import av
    with av.open(str(path)) as c: return sum(1 for _ in c.decode(video=0))

def _clips():
    return [pytest.param(p, id=p.name) for p in sorted(DATA.glob('*.mp4'))]

@pytest.mark.parametrize('path', _clips())
def test_every_decoder_gives_the_same_frames_on_the_samples(path):
    ref = open_video(path, 'pyav')
    n = len(ref)
    assert n == _decoded_count(path)
    idx = [n - 1, 0, 7 % n, n // 2, n // 2, n - 2]                       # any order, repeats, both ends
    want = ref.get_batch(idx).astype(int)
    for name in USABLE:
        v = open_video(path, name)
        assert len(v) == n, name
        got = np.asarray(v.get_batch(idx)).astype(int)
        assert got.shape == want.shape and np.abs(got - want).max() <= 1, name

@pytest.mark.parametrize('kind', ['odd size, VP9, WebM (no frame count)', 'H.264 in MKV (no frame count)',
                                  'variable frame rate', 'keyframe every 10 frames'])
def test_every_decoder_gives_the_same_frames_on_made_clips(made, kind):
    path = made[kind]
    ref = open_video(path, 'pyav')
    n = _decoded_count(path)
    assert len(ref) == n                                                 # exact, also without a count in the header
    idx = [n - 1, 0, 3, n // 2, 11, 11, n - 3]
    want = ref.get_batch(idx).astype(int)
    import av
    with av.open(str(path)) as c:                                        # frame i = the i-th frame decoded in order
        seq = [f.to_ndarray(format='rgb24') for f in c.decode(video=0)]
    assert np.abs(np.stack([seq[i] for i in idx]).astype(int) - want).mean() < 1.5
    for name in [n_ for n_ in USABLE if n_ != 'pyav']:
        v = open_video(path, name)
        assert len(v) == n, name
        got = np.asarray(v.get_batch(idx)).astype(int)
        assert np.abs(got - want).mean() < 0.5 and np.abs(got - want).max() <= 2, name

def test_pyav_window_near_the_end_costs_like_one_at_the_start(tmp_path):
    "A 90-second clip with a keyframe every 2 s: a 64-frame window at its end within 2x of one at its start."
    long = _write(tmp_path/'long.mp4', 2700, 64, 48, gop=60)
    v = open_video(long, 'pyav')
    assert len(v) == 2700
    start, end = np.arange(16) * 4 + 3, np.arange(16) * 4 + 2700 - 64
    times = {'start': [], 'end': []}
    for _ in range(7):                                                   # alternated, medians compared
        for k, idx in (('start', start), ('end', end)):
            t = time.perf_counter(); v.get_batch(idx); times[k].append(time.perf_counter() - t)
    ratio = statistics.median(times['end']) / statistics.median(times['start'])
    assert ratio < 2, (ratio, times)
    np.testing.assert_array_equal(v.get_batch([2699]), open_video(long, 'pyav').get_batch([2699]))

def test_decode_time_resize_matches_the_full_resolution_path(tmp_path):
    "A real clip upscaled to 640 x 360 (as the 1080p clip of the loader benchmark), 64-pixel clips: decoded at 97 x 173."
    src = open_video(DATA/'cockatoo.mp4', resize=lambda H, W: (360, 640))
    big = _write(tmp_path/'big.mp4', 40, 640, 360, frames=src.get_batch(range(40)))
    for name in USABLE:
        kw = dict(num_frames=8, stride=4, size=64, num_sample=3, backend=name)
        full = PretrainDataset([big], normalize=False, decode_resize=False, **kw)
        fast = PretrainDataset([big], normalize=False, **kw)
        assert fast.open(0).get_batch([0]).shape == (1, 97, 173, 3)        # 0.66 * 97 >= 64: the smallest crop fits
        for epoch in range(3):
            a, b = full[(epoch, 0)]['video'].float(), fast[(epoch, 0)]['video'].float()
            assert (a - b).abs().mean() < 3, (name, epoch, (a - b).abs().mean())
        # the same random draws: the boxes on the decoded frames are the full-resolution boxes, scaled
        fa = PretrainDataset([big], device_augment=True, decode_resize=False, **kw)[(5, 0)]
        fb = PretrainDataset([big], device_augment=True, **kw)[(5, 0)]
        assert [scale_box(bx, (360, 640), (97, 173)) for bx in fa['boxes'].tolist()] == [tuple(bx) for bx in fb['boxes'].tolist()]
        ft_full = FinetuneDataset([(big, 0)], 8, 4, size=64, randaug=None, backend=name, decode_resize=False)
        ft_fast = FinetuneDataset([(big, 0)], 8, 4, size=64, randaug=None, backend=name)
        assert ft_fast.open(0).get_batch([0]).shape[1] < 360
        assert (ft_full[(2, 0)]['video'].float() - ft_fast[(2, 0)]['video'].float()).abs().mean() < 3
        mv = [MultiViewDataset([(big, 0)], 8, 4, size=64, num_clips=2, backend=name, decode_resize=r)[0]['video'].float()
              for r in (False, True)]
        assert (mv[0] - mv[1]).abs().mean() < 3

def test_small_sources_are_decoded_as_they_are():
    ds = PretrainDataset(DATA, size=224)
    assert [ds.open(i).size for i in range(len(ds))] == [ds.open(i).source_size for i in range(len(ds))]
    assert decode_size(256, 340, 0.66 * 256, 224) == (256, 340) and decode_size(1080, 1920, 0.66 * 1080, 224) == (340, 604)

def test_decoder_choice_and_its_errors(monkeypatch):
    assert video_backend() == video_backend('auto') in USABLE and decoder_info().split()[0] in USABLE
    with pytest.raises(ValueError, match="got 'ffmpeg'"): video_backend('ffmpeg')
    with pytest.raises(ValueError, match='torchcodec:cuda'): video_backend('pyav:cuda')
    monkeypatch.setitem(sys.modules, 'decord', None)                    # as on a machine without decord
    with pytest.raises(RuntimeError, match='pip install decord2'): video_backend('decord')
    with pytest.raises(RuntimeError, match='pip install decord2'): PretrainDataset(DATA, backend='decord')
    if 'torchcodec' in USABLE and not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match='CUDA GPU'): video_backend('torchcodec:cuda')
    assert PretrainDataset(DATA, size=32, num_frames=4)[0]['video'].shape == (1, 3, 4, 32, 32)    # auto: still works

def test_torchcodec_without_ffmpeg_is_refused_in_one_line(monkeypatch):
    "torchcodec imports without FFmpeg's libraries and fails only when it opens a file: the probe must say so first."
    torchcodec = pytest.importorskip('torchcodec')
    monkeypatch.setattr(torchcodec, 'ffmpeg_major_version', None, raising=False)    # as on a machine without FFmpeg
    with pytest.raises(RuntimeError, match="'torchcodec' cannot be used: it finds no FFmpeg libraries") as e:
        video_backend('torchcodec')
    assert '\n' not in str(e.value) and 'apt-get install ffmpeg' in str(e.value)
    with pytest.raises(RuntimeError, match='finds no FFmpeg'): open_video(DATA/'cockatoo.mp4', backend='torchcodec')
    assert video_backend('auto') != 'torchcodec' and open_video(DATA/'cockatoo.mp4').get_batch([0]).shape[-1] == 3

def test_a_decoder_error_is_one_line(tmp_path):
    "A library's error can carry a whole traceback; what a user reads of a failed decode is one line."
    from videomae_nb.data import _failed
    e = RuntimeError("Could not load libtorchcodec. Likely causes:\n  1. FFmpeg is not installed\n  2. ...")
    for path in (DATA/'cockatoo.mp4', tmp_path/'missing.mp4'):                   # a decoder limit; a broken file
        msg = str(_failed(path, 'torchcodec', 'torchcodec could not open it', e))
        assert '\n' not in msg and msg.endswith('(RuntimeError: Could not load libtorchcodec. Likely causes:)'), msg

# --- folders of frames --------------------------------------------------------------------------------------------------

def _frames_tree(tmp_path, n_per_class=6, frames=16):
    "The motion dataset as a tree of frame folders `root/<class>/<video>/img_00001.jpg` (Something-Something style)."
    from PIL import Image
    vids = make_motion_videos(tmp_path/'videos', n_per_class=n_per_class, frames=frames, size=64)
    root = tmp_path/'frames'
    for p, _ in vids:
        d = root/p.parent.name/p.stem; d.mkdir(parents=True)
        v = open_video(p)
        for i, f in enumerate(v.get_batch(range(len(v)))): Image.fromarray(f).save(d/f'img_{i + 1:05d}.jpg', quality=95)
    return root

def test_frame_folders_read_like_their_videos(tmp_path):
    root = _frames_tree(tmp_path, n_per_class=1)
    folder = sorted(root.glob('*/*'))[0]
    video = tmp_path/'videos'/folder.parent.name/(folder.name + '.mp4')
    f, v = open_video(folder), open_video(video)
    assert len(f) == len(v) == 16 and f.source_size == (64, 64)
    assert np.abs(f.get_batch([0, 15, 3]).astype(int) - v.get_batch([0, 15, 3])).mean() < 3      # JPEG at quality 95
    assert video_paths(root) == sorted(root.glob('*/*'))                                      # a folder of folders
    assert open_video(folder, resize=lambda H, W: (32, 32)).get_batch([0]).shape == (1, 32, 32, 3)

def test_frame_folders_pretrain_with_the_training_script(tmp_path):
    from videomae_nb.train import main
    root = _frames_tree(tmp_path, n_per_class=1)
    (tmp_path/'v2.txt').write_text(''.join(f'{p.relative_to(tmp_path)} 1 16\n' for p in sorted(root.glob('*/*'))))
    for data in (root, tmp_path/'v2.txt'):                                # a folder of frame folders; V2's list
        res = main(data=str(data), steps=2, frames=8, size=32, batch_size=2, num_workers=0, quiet=True,
                   out=str(tmp_path/f'run-{Path(data).name}'))
        assert np.isfinite(res['loss'])

def test_frame_folders_finetune_and_pass_check_data(tmp_path):
    from videomae_nb.finetune import main
    root = _frames_tree(tmp_path, n_per_class=3)
    info = build_lists(root, tmp_path/'lists', val_fraction=1/3)
    assert (info['train'], info['val']) == (8, 4) and read_list_file(tmp_path/'lists'/'train.csv')[0][0].is_dir()
    s = check_data(tmp_path/'lists'/'train.csv', min_frames=16, progress=False)
    assert (s['good'], s['bad'], s['frames']) == (8, 0, (16, 16, 16))
    res = main(data_path=str(tmp_path/'lists'), preset='tiny', frames=4, stride=4, size=32, batch_size=4, num_sample=2,
               epochs=1, warmup_steps=1, num_workers=0, test_num_segment=2, test_num_crop=1, no_flip=True, quiet=True,
               out=str(tmp_path/'ft'))
    assert res['test']['videos'] == 4 and np.isfinite(res['steps'])

def test_broken_frame_folders_are_named_and_skipped(tmp_path):
    root = _frames_tree(tmp_path, n_per_class=1)
    good = sorted(root.glob('*/*'))[0]
    (tmp_path/'empty').mkdir()
    broken = tmp_path/'broken'; broken.mkdir()
    (broken/'img_00001.jpg').write_bytes((good/'img_00001.jpg').read_bytes())
    (broken/'img_00002.jpg').write_bytes(b'\xff\xd8 this is not a JPEG' * 100)
    with pytest.raises(VideoReadError, match='empty.*no frame images'): open_video(tmp_path/'empty')
    with pytest.raises(VideoReadError, match="img_00002.jpg"): open_video(broken).get_batch([1])
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        item = PretrainDataset([tmp_path/'empty', broken, good], num_frames=4, stride=1, size=32)[0]
    assert item['skipped'] == [str(tmp_path/'empty'), str(broken)] and item['path'] == str(good)
    assert any('img_00002.jpg' in str(x.message) for x in w)
    (tmp_path/'list.txt').write_text(f'empty 0\nbroken 1\n{good} 2\n')
    s = check_data(tmp_path/'list.txt', num_classes=4, min_frames=2, progress=False)
    assert s['problems'] == {'empty': 1, 'truncated': 1} and s['good'] == 1
    assert '# truncated' in (tmp_path/'list.bad.txt').read_text()
