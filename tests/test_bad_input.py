"""Bad input, one case at a time: each gets its documented behaviour (README, 'What bad input gets').
Unreadable videos inside a dataset are replaced and counted; malformed settings and lists are clear errors."""
import warnings
from pathlib import Path
import numpy as np
import pytest, torch
from videomae_nb.data import PretrainDataset, VideoReadError, open_video, read_list_file, video_paths

DATA = Path(__file__).resolve().parents[1]/'data_samples'
GOOD = DATA/'cockatoo.mp4'

def _first_item(paths, **kw):
    "The first item of a dataset over `paths` (a bad first path gets replaced by the next good one), and the warnings."
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        item = PretrainDataset(paths, num_frames=8, size=32, **kw)[0]
    return item, [str(x.message) for x in w]

def _assert_skipped(bad:Path):
    item, warns = _first_item([bad, GOOD])
    assert item['skipped'] == [str(bad)] and Path(item['path']) == GOOD
    assert any(bad.name in m for m in warns), warns

def test_empty_file(tmp_path):
    (tmp_path/'empty.mp4').write_bytes(b''); _assert_skipped(tmp_path/'empty.mp4')

def test_truncated_file(tmp_path):
    data = GOOD.read_bytes(); (tmp_path/'cut.mp4').write_bytes(data[:len(data) // 2]); _assert_skipped(tmp_path/'cut.mp4')

def test_text_file_named_mp4(tmp_path):
    (tmp_path/'notes.mp4').write_text('this is not a video\n' * 100); _assert_skipped(tmp_path/'notes.mp4')

def test_missing_file(tmp_path):
    _assert_skipped(tmp_path/'gone.mp4')

def test_unreadable_path(tmp_path):
    (tmp_path/'folder.mp4').mkdir()                      # a path that exists but cannot be read as a file
    _assert_skipped(tmp_path/'folder.mp4')
    with pytest.raises(VideoReadError, match='folder.mp4'): open_video(tmp_path/'folder.mp4')

def test_video_shorter_than_the_window(tmp_path, make_video):
    short = make_video(tmp_path/'short.mp4', frames=3)
    item, _ = _first_item([short])                      # 8 frames at stride 4 from 3: indices clamped to the last frame
    assert item['video'].shape == (1, 3, 8, 32, 32) and item['skipped'] == []

def test_huge_resolution(tmp_path, make_video):
    big = make_video(tmp_path/'big.mp4', frames=4, width=1920, height=1080)
    item, _ = _first_item([big])                        # decoded at full size, cropped and resized like any other
    assert item['video'].shape == (1, 3, 8, 32, 32)

@pytest.mark.parametrize('name, codec, pix_fmt', [('gray.mkv', 'ffv1', 'gray'), ('argb.mov', 'qtrle', 'argb'),
                                                  ('yuv444.mp4', 'libx264', 'yuv444p')])
def test_grayscale_and_4_channel_videos_become_rgb(tmp_path, make_video, name, codec, pix_fmt):
    v = make_video(tmp_path/name, codec=codec, pix_fmt=pix_fmt)
    assert open_video(v).get_batch([0]).shape == (1, 64, 96, 3)
    item, _ = _first_item([v])
    assert item['video'].shape == (1, 3, 8, 32, 32)

def test_non_ascii_paths(tmp_path, make_video):
    d = tmp_path/'vidéos_日本'; d.mkdir()
    v = make_video(d/'çlip_ñ.mp4')
    assert video_paths(d) == [v]
    lst = d/'liste.txt'; lst.write_text('çlip_ñ 0\n', encoding='utf-8')
    assert video_paths(lst) == [v]
    assert _first_item([v])[0]['skipped'] == []

@pytest.mark.parametrize('sep', [' ', '\t', ',', ' , '])
def test_list_separators(tmp_path, sep):
    lst = tmp_path/'train.txt'; lst.write_text(f'a.mp4{sep}3\nb{sep}7\n')
    assert read_list_file(lst) == [(tmp_path/'a.mp4', 3), (tmp_path/'b.mp4', 7)]

def test_missing_label(tmp_path):
    lst = tmp_path/'train.txt'; lst.write_text('a.mp4 3\nb.mp4\n')
    with pytest.raises(ValueError, match=r'train.txt:2'): read_list_file(lst)                   # fine-tuning needs labels
    assert video_paths(lst) == [tmp_path/'a.mp4', tmp_path/'b.mp4']                            # pretraining does not

def test_non_integer_label(tmp_path):
    lst = tmp_path/'train.txt'; lst.write_text('a.mp4 3\nb.mp4 cat\n')
    with pytest.raises(ValueError, match=r"train.txt:2: label 'cat'"): video_paths(lst)

def test_list_file_that_is_not_text(tmp_path):
    lst = tmp_path/'train.txt'; lst.write_bytes(b'\xff\xfe\x00\x81 binary')
    with pytest.raises(ValueError, match='not UTF-8'): read_list_file(lst)

def test_nothing_readable(tmp_path):
    bads = [tmp_path/'a.mp4', tmp_path/'b.mp4']
    for b in bads: b.write_bytes(b'\0' * 4096)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        with pytest.raises(RuntimeError, match='none of the 2 videos'): PretrainDataset(bads, size=32)[0]
