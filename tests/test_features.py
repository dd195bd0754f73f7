"Frozen features (issue 7): TAD windows as .npy, clip features, k-NN and linear probes, the command."
from pathlib import Path
import numpy as np
import pytest, torch
from videomae_nb.encoder import get_config
from videomae_nb.data import open_video, clip_transform, as_model_input
from videomae_nb.datasets import make_motion_videos, motion_clip, write_video, build_lists
from videomae_nb.classifier import VideoClassifier
from videomae_nb.checkpoints import save_ours
from videomae_nb.features import window_starts, window_features, extract_features, knn_classify, linear_probe, main

@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0)
    return VideoClassifier(get_config('tiny', depth=1), num_classes=4).eval()

def test_windows_follow_videomae_v2(tmp_path, model):
    assert window_starts(100, 16, 4) == list(range(0, 100 - 15, 4))             # V2's THUMOS14 range(0, n - 15, 4)
    assert window_starts(100, 16, 16) == list(range(0, 100 - 15, 16))           # FineAction
    v = write_video(tmp_path/'v.mp4', motion_clip(0, 30, (64, 96), np.random.default_rng(0)))
    for normalize in (True, False):
        f = window_features(model, v, window=8, step=5, size=32, normalize=normalize, batch_size=3)
        assert f.shape == (len(range(0, 30 - 7, 5)), 192) and f.dtype == np.float32
        frames = open_video(v).get_batch(range(10, 18))                            # window 2, by hand: whole frame → 32×32
        clip = clip_transform(frames, 32, normalize=False)[None]
        x = as_model_input(clip) if normalize else clip.float() / 255              # V2's TAD input: [0, 1], no mean/std
        with torch.no_grad(): np.testing.assert_allclose(f[2], model.pool(x)[0].numpy(), atol=1e-5)

def test_extract_features_writes_npy_per_video_and_resumes(tmp_path, model):
    for name, n in (('a', 20), ('sub/b', 9)):
        write_video(tmp_path/'vids'/f'{name}.mp4', motion_clip(1, n, 32, np.random.default_rng(n)))
    (tmp_path/'vids'/'broken.mp4').write_bytes(b'\0' * 3000)
    r = extract_features(model, tmp_path/'vids', tmp_path/'out', window=8, step=4, size=32, progress=False)
    assert (r['written'], r['existing'], len(r['failed'])) == (2, 0, 1)
    assert np.load(tmp_path/'out'/'a.npy').shape == (4, 192) and np.load(tmp_path/'out'/'sub'/'b.npy').shape == (1, 192)
    again = extract_features(model, tmp_path/'vids', tmp_path/'out', window=8, step=4, size=32, progress=False)
    assert (again['written'], again['existing']) == (0, 2)
    halves = [extract_features(model, tmp_path/'vids', tmp_path/f'p{i}', window=8, step=4, size=32, part=i, parts=2, progress=False) for i in (0, 1)]
    assert sum(h['videos'] for h in halves) == 3

def test_knn_and_linear_probe():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(5, 16, generator=g) * 2
    ytr, yte = torch.arange(5).repeat(20), torch.arange(5).repeat(8)
    xtr, xte = centres[ytr] + torch.randn(100, 16, generator=g), centres[yte] + torch.randn(40, 16, generator=g)
    for scores in (knn_classify(xtr, ytr, xte, k=10), linear_probe(xtr, ytr, xte)):
        assert scores.shape == (40, 5) and (scores.argmax(1) == yte).float().mean() >= 0.95
    noise = torch.randn(100, 16, generator=g)
    assert (knn_classify(noise, ytr, xte).argmax(1) == yte).float().mean() < 0.6          # no signal, no accuracy

def test_features_command(tmp_path, model):
    make_motion_videos(tmp_path/'m', n_per_class=3, frames=8, size=32)
    build_lists(tmp_path/'m', tmp_path/'lists', val_fraction=1/3)
    save_ours(model, tmp_path/'ckpt')
    r = main(str(tmp_path/'ckpt'), train_list=str(tmp_path/'lists'/'train.csv'), val_list=str(tmp_path/'lists'/'val.csv'),
             frames=4, stride=2, size=32, quiet=True)
    assert (r['train'], r['val'], r['dim']) == (8, 4, 192) and r['linear']['acc5'] == 100.
    r = main(str(tmp_path/'ckpt'), source=str(tmp_path/'lists'/'val.csv'), out=str(tmp_path/'f'), window=4, step=2, size=32, quiet=True)
    assert r['written'] == 4 and len(list((tmp_path/'f').rglob('*.npy'))) == 4
    with pytest.raises(ValueError, match='either --source'): main(str(tmp_path/'ckpt'), quiet=True)
