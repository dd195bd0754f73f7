"Fine-tuning data (issue 7): list formats, class folders, clip sampling, and `videomae-check-data` on planted broken files."
import os, subprocess, sys
from pathlib import Path
import numpy as np
import pytest, torch
from videomae_nb.data import open_video, read_list_file
from videomae_nb.datasets import (make_motion_videos, motion_clip, write_video, build_lists, read_classes, read_v2_list, list_format,
                                  check_data, dense_test_indices, tsn_indices, FinetuneDataset, MultiViewDataset, main, MOTION_CLASSES)

ROOT = Path(__file__).resolve().parents[1]

@pytest.fixture(scope='module')
def motion(tmp_path_factory):
    d = tmp_path_factory.mktemp('motion')
    make_motion_videos(d/'videos', n_per_class=3, frames=24, size=64, seed=1)
    return d

def _plant(d:Path, good:Path) -> dict:
    "One file of every broken kind next to two good ones; returns name → expected problem."
    data = good.read_bytes()
    (d/'ok1.mp4').write_bytes(data); (d/'ok2.mp4').write_bytes(data)
    (d/'empty.mp4').write_bytes(b'')
    (d/'truncated.mp4').write_bytes(data[:len(data) * 6 // 10])                       # index (moov) lost: cannot be opened
    fs = d/'faststart.mp4'
    import av
    with av.open(str(fs), 'w', options={'movflags': 'faststart'}) as c:               # index first: opens, decoding fails
        s = c.add_stream('libx264', rate=8); s.width = s.height = 64; s.pix_fmt = 'yuv420p'
        for f in motion_clip(0, 24, 64, np.random.default_rng(0)):
            for p in s.encode(av.VideoFrame.from_ndarray(f, format='rgb24')): c.mux(p)
        for p in s.encode(): c.mux(p)
    b = fs.read_bytes(); (d/'truncated_faststart.mp4').write_bytes(b[:len(b) // 2]); fs.unlink()
    (d/'not_a_video.mp4').write_text('<html><body>404 Not Found</body></html>\n' * 60)
    write_video(d/'short.mp4', motion_clip(1, 6, 64, np.random.default_rng(1)))
    return {'empty.mp4': {'empty'}, 'truncated.mp4': {'unreadable'}, 'truncated_faststart.mp4': {'truncated', 'unreadable'},
            'not_a_video.mp4': {'unreadable'}, 'missing.mp4': {'missing'}, 'short.mp4': {'too short'}}

def test_check_data_finds_every_planted_broken_file(tmp_path, motion, capsys):
    want = _plant(tmp_path, next((motion/'videos').rglob('*.mp4')))
    names = ['ok1.mp4', *want, 'ok2.mp4']
    (tmp_path/'train.csv').write_text(''.join(f'{n} {i % 4}\n' for i, n in enumerate(names)) + 'ok1.mp4 9\n')   # and a bad label
    summary, = main(str(tmp_path/'train.csv'), nb_classes=4, min_frames=16, workers=0)
    found = {Path(p).name for p in summary['bad_files']}
    assert found == set(want) | {'ok1.mp4'} and summary['good'] == 2 and summary['bad'] == 7
    lines = (tmp_path/'train.bad.csv').read_text().splitlines()                 # `# problem: detail` above each entry
    problems = {lines[i + 1].split()[0]: lines[i][2:].split(':')[0] for i in range(0, len(lines), 2)}
    assert all(problems[name] in ok for name, ok in want.items()), problems
    assert problems['ok1.mp4'] == 'bad label' and sum(summary['problems'].values()) == 7
    bad = read_list_file(tmp_path/'train.bad.csv')                       # the bad list is itself a valid list
    assert sorted(p.name for p, _ in bad) == sorted([*want, 'ok1.mp4'])
    out = capsys.readouterr()
    assert '2 good, 7 bad' in out.out and 'checking train.csv' in out.err    # summary, and a progress bar on stderr

def test_check_data_in_parallel_and_good_list(tmp_path, motion):
    _plant(tmp_path, next((motion/'videos').rglob('*.mp4')))
    lst = tmp_path/'all.txt'
    lst.write_text(''.join(f'{p.name} 0\n' for p in sorted(tmp_path.glob('*.mp4'))))
    s = check_data(lst, min_frames=16, workers=2, good_list=tmp_path/'good.txt', progress=False)
    assert s['good'] == 2 and s['bad'] == 5
    assert sorted(p.name for p, _ in read_list_file(tmp_path/'good.txt')) == ['ok1.mp4', 'ok2.mp4']

def test_check_data_command_line(tmp_path, motion):
    want = _plant(tmp_path, next((motion/'videos').rglob('*.mp4')))
    (tmp_path/'v2.txt').write_text(''.join(f'{n} 0 -1\n' for n in ['ok1.mp4', *want]))
    r = subprocess.run([sys.executable, '-c', 'from videomae_nb.datasets import cli; cli()', str(tmp_path/'v2.txt'), '--workers', '0', '--quiet'],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert sorted(p.name for p, _, _ in read_v2_list(tmp_path/'v2.bad.txt')) == sorted(want)
    bad = (tmp_path/'v2.bad.txt').read_text()
    assert all(n in bad for n in want) and 'ok1.mp4' not in bad
    r = subprocess.run([sys.executable, 'videomae_nb/datasets.py', '--help'], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and '--prepare' in r.stdout

def test_prepare_reencodes_to_short_side(tmp_path):
    for i, (h, w) in enumerate([(96, 160), (160, 96), (48, 64)]):
        write_video(tmp_path/'raw'/'cls'/f'v{i}.mp4', motion_clip(i % 4, 12, (h, w), np.random.default_rng(i)))
    (tmp_path/'raw'/'list.csv').write_text('cls/v0.mp4 0\ncls/v1.mp4 1\ncls/v2.mp4 2\ncls/gone.mp4 3\n')
    s, = main(str(tmp_path/'raw'/'list.csv'), min_frames=4, workers=0, prepare=str(tmp_path/'p'), short_side=64, quiet=True)
    new = read_list_file(s['prepared_list'])
    assert [(p.relative_to(tmp_path/'p').as_posix(), l) for p, l in new] == [('cls/v0.mp4', 0), ('cls/v1.mp4', 1), ('cls/v2.mp4', 2)]
    shapes = [open_video(p).get_batch([0]).shape[1:3] for p, _ in new]
    assert shapes == [(64, 106), (106, 64), (48, 64)]                          # short side 64, never upscaled
    assert [len(open_video(p)) for p, _ in new] == [12, 12, 12]

def test_build_lists_from_class_folders(tmp_path, motion):
    info = build_lists(motion/'videos', tmp_path/'lists', val_fraction=1/3, seed=3)
    assert info['classes'] == sorted(MOTION_CLASSES) and (info['train'], info['val']) == (8, 4)
    tr, va = read_list_file(tmp_path/'lists'/'train.csv'), read_list_file(tmp_path/'lists'/'val.csv')
    assert not {p for p, _ in tr} & {p for p, _ in va}
    assert all(read_classes(tmp_path/'lists'/'classes.txt')[l] == p.parent.name for p, l in tr + va)
    assert read_list_file(tmp_path/'lists'/'test.csv') == va
    # an already split tree keeps its split
    for split, n in (('train', 2), ('val', 1)):
        for c in ('a', 'b'):
            for i in range(n): write_video(tmp_path/'split'/split/c/f'{i}.mp4', motion_clip(0, 4, 32, np.random.default_rng(i)))
    info = build_lists(tmp_path/'split')
    assert (info['train'], info['val'], info['classes']) == (4, 2, ['a', 'b'])

def test_list_formats(tmp_path):
    (tmp_path/'a.txt').write_text('x/y.mp4 0 -1\n'); (tmp_path/'b.txt').write_text('x/y.mp4 3\n')
    assert list_format(tmp_path/'a.txt') == 'v2' and list_format(tmp_path/'b.txt') == 'label'
    assert read_v2_list(tmp_path/'a.txt') == [(tmp_path/'x/y.mp4', 0, -1)]
    (tmp_path/'c.txt').write_text('x/y.mp4 zero -1\n')
    with pytest.raises(ValueError, match='c.txt:1'): read_v2_list(tmp_path/'c.txt')

def test_official_test_sampling():
    "K400: every 4th frame, clips spread from start to end; SSv2: the two interleaved TSN samplings of the official code."
    n, T = 300, 16
    all_idx = list(range(0, n, 4))
    for i in range(5):
        start = int(i * max((len(all_idx) - T) / 4, 0))
        assert dense_test_indices(n, T, 4, i, 5).tolist() == all_idx[start:start + T]
    tick = n / T
    both = sorted([int(tick / 2 + tick * x) for x in range(T)] + [int(tick * x) for x in range(T)])
    assert tsn_indices(n, T, clip=0, num_clips=2).tolist() == both[0::2]
    assert tsn_indices(n, T, clip=1, num_clips=2).tolist() == both[1::2]

def test_flip_and_views(motion):
    entries = [(p, i) for i, p in enumerate(sorted((motion/'videos').rglob('*.mp4'))[:4])]
    flips = FinetuneDataset(entries, 8, 2, size=64, flip=True, randaug=None, scale=(1., 1.))
    plain = FinetuneDataset(entries, 8, 2, size=64, flip=False, randaug=None, scale=(1., 1.))
    pairs = [(flips[(0, i)]['video'][0], plain[(0, i)]['video'][0]) for i in range(4)]
    assert all(torch.equal(a, b) or torch.equal(a, b.flip(-1)) for a, b in pairs)
    assert any(not torch.equal(a, b) for a, b in pairs)                         # some were flipped
    mv = MultiViewDataset(entries, 8, 2, 'tsn', 32, num_clips=2, num_crops=3)
    assert mv[0]['video'].shape == (6, 3, 8, 32, 32)

def test_pretraining_takes_a_videomae_v2_list(tmp_path):
    "`videomae-train --data` reads V2's `path 0 -1` lists as well as `path label` lists (the same videos, same run)."
    from videomae_nb.train import main as train
    from videomae_nb.runs import read_metrics
    data = ROOT/'data_samples'
    vids = sorted(p.name for p in data.glob('*.mp4'))
    (tmp_path/'v2.txt').write_text(''.join(f'{data/v} 0 -1\n' for v in vids))
    (tmp_path/'v1.txt').write_text(''.join(f'{data/v} 0\n' for v in vids))
    fast = dict(frames=4, size=32, batch_size=2, num_workers=0, quiet=True, steps=2)
    a = read_metrics(train(data=str(tmp_path/'v2.txt'), out=str(tmp_path/'a'), **fast)['run_dir'])
    b = read_metrics(train(data=str(tmp_path/'v1.txt'), out=str(tmp_path/'b'), **fast)['run_dir'])
    assert [r['loss'] for r in a] == [r['loss'] for r in b]
