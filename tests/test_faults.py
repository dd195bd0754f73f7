"""Issue 22: faults and bad settings. Damaged checkpoints, a full disk, stale temporary folders, `--resume auto` with
nothing (or something damaged) to resume, signals in fine-tuning: each named in one line, nothing a user made lost."""
import os, re, shutil, signal, subprocess, sys, time
from pathlib import Path
from unittest import mock
import pytest, torch
from safetensors.torch import load_file
from videomae_nb.runs import list_checkpoints, read_metrics, read_csv, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT/'data_samples'
ENV = {**os.environ, 'PYTHONUNBUFFERED': '1', 'OMP_NUM_THREADS': '1', 'PYTHONPATH': str(ROOT)}
PRE = ['--data', str(DATA), '--frames', '4', '--size', '32', '--batch_size', '2', '--num_workers', '0', '--quiet']


def _train(out, *extra, timeout=300):
    "videomae-train as a user runs it (the console script's entry point)."
    return subprocess.run([sys.executable, '-c', 'from videomae_nb.train import cli; cli()', *PRE, '--out', str(out),
                           *map(str, extra)], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)

def _one_line_error(r, prog, *words):
    err = r.stderr.strip()
    assert r.returncode == 2 and len(err.splitlines()) == 1 and err.startswith(f'{prog}: error: '), r.stderr[-2000:]
    for w in words: assert w in err, err
    return err

def _truncate(path):
    data = path.read_bytes(); path.write_bytes(data[:len(data) // 2])


@pytest.fixture(scope='module')
def run4(tmp_path_factory):
    "A pretraining run with checkpoints at steps 2 and 4 (copied by each test that damages one)."
    out = tmp_path_factory.mktemp('faults')/'run'
    r = _train(out, '--steps', 4, '--save_every', 2, '--keep', 5)
    assert r.returncode == 0, r.stderr[-2000:]
    return out


# --- point 3: damaged checkpoint files -----------------------------------------------------------------------------------

@pytest.mark.parametrize('damage', ['empty state.pt', 'truncated model.safetensors'])
def test_resume_auto_skips_a_damaged_newest_checkpoint(tmp_path, run4, damage):
    out = tmp_path/'run'; shutil.copytree(run4, out)
    newest = out/'checkpoints'/'checkpoint-0000004'
    if damage == 'empty state.pt': (newest/'state.pt').write_bytes(b'')
    else: _truncate(newest/'model.safetensors')
    r = _train(out, '--steps', 6, '--save_every', 2, '--keep', 5, '--resume', 'auto')
    assert r.returncode == 0, r.stderr[-2000:]
    assert 'skipped checkpoint-0000004' in r.stdout and 'resuming from step 2' in r.stdout, r.stdout[-2000:]
    assert [p.name for p in list_checkpoints(out)] == ['checkpoint-0000002', 'checkpoint-0000004', 'checkpoint-0000006']
    kept = [p for p in (out/'checkpoints').iterdir() if p.name.startswith('damaged-')]
    assert len(kept) == 1 and kept[0].name.endswith('checkpoint-0000004')         # set aside, not deleted
    assert [int(r['step']) for r in read_metrics(out)] == list(range(6))


def test_resume_auto_refuses_when_no_checkpoint_loads(tmp_path, run4):
    out = tmp_path/'run'; shutil.copytree(run4, out)
    for ck in list_checkpoints(out): (ck/'state.pt').write_bytes(b'')
    before = sorted(p.relative_to(out) for p in out.rglob('*'))
    r = _train(out, '--steps', 6, '--resume', 'auto')
    _one_line_error(r, 'videomae-train', 'none of the 2 checkpoints', "state.pt' is empty (0 bytes)")
    assert sorted(p.relative_to(out) for p in out.rglob('*')) == before             # nothing renamed or started


@pytest.mark.parametrize('damage', ['empty state.pt', 'truncated model.safetensors'])
def test_every_reader_names_the_damaged_file_in_one_line(tmp_path, run4, damage):
    out = tmp_path/'run'; shutil.copytree(run4, out)
    ck = out/'checkpoints'/'checkpoint-0000004'
    name = 'state.pt' if damage == 'empty state.pt' else 'model.safetensors'
    (ck/name).write_bytes(b'') if name == 'state.pt' else _truncate(ck/name)
    py = lambda mod, *args: subprocess.run([sys.executable, '-c', f'from videomae_nb.{mod} import cli; cli()', *args],
                                           cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    _one_line_error(_train(tmp_path/'r2', '--steps', 6, '--resume', str(ck)), 'videomae-train', str(ck/name))
    _one_line_error(py('viz', str(DATA/'cockatoo.mp4'), '--checkpoint', str(out)), 'videomae-vis', str(ck/name))
    if name == 'model.safetensors':                     # convert reads the weights only
        _one_line_error(py('checkpoints', str(ck), str(tmp_path/'hf')), 'videomae-convert', str(ck/name))


# --- point 4: a full disk, stale temporary folders, the user's umask -------------------------------------------------------

def test_a_full_disk_is_named_with_the_space_needed_and_leaves_no_temporary_folder(tmp_path, monkeypatch):
    "The write fails as torch fails on a full disk (its message says nothing of space); the error says it."
    save_checkpoint(tmp_path, 10, {'w': torch.ones(256, 256)}, {})
    free = [10**12]                                     # plenty until the write starts, then nothing
    usage = lambda p: shutil._ntuple_diskusage(10**12, 10**12 - free[0], free[0])
    def full_disk_save(obj, f, *a, **k):
        Path(f).write_bytes(b'PK\x03\x04 partial'); free[0] = 4096
        raise RuntimeError('[enforce fail at inline_container.cc:672] . unexpected pos 2112 vs 2006')
    monkeypatch.setattr(shutil, 'disk_usage', usage)
    monkeypatch.setattr(torch, 'save', full_disk_save)
    with pytest.raises(OSError, match=r'no space left on the disk .* needs about 1\.\d MB, 0\.0 MB are free') as e:
        save_checkpoint(tmp_path, 20, {'w': torch.zeros(256, 256)}, {'optimizer': {'m': torch.zeros(256, 256)}})
    assert 'previous checkpoint is kept' in str(e.value)
    monkeypatch.undo()
    assert [p.name for p in (tmp_path/'checkpoints').iterdir()] == ['checkpoint-0000010']


def test_a_disk_too_small_is_refused_before_writing(tmp_path, monkeypatch):
    save_checkpoint(tmp_path, 10, {'w': torch.ones(3)}, {})
    monkeypatch.setattr(shutil, 'disk_usage', lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(OSError, match='no space left'): save_checkpoint(tmp_path, 20, {'w': torch.ones(3)}, {})
    assert [p.name for p in (tmp_path/'checkpoints').iterdir()] == ['checkpoint-0000010']


def test_stale_temporary_folders_are_removed_when_a_run_starts(tmp_path, run4):
    out = tmp_path/'run'; shutil.copytree(run4, out)
    for pid in (111, 222):                                     # saves killed with kill -9 by two earlier attempts
        tmp = out/'checkpoints'/f'.tmp-checkpoint-0000006-{pid}'; tmp.mkdir(); (tmp/'state.pt').write_bytes(b'x' * 1000)
    r = _train(out, '--steps', 5, '--save_every', 100, '--keep', 5, '--resume', 'auto')
    assert r.returncode == 0, r.stderr[-2000:]
    assert not list((out/'checkpoints').glob('.tmp-*'))
    files = [ck/'model.safetensors' for ck in list_checkpoints(out)]
    umask = os.umask(0); os.umask(umask)
    assert {oct(f.stat().st_mode & 0o777) for f in files} == {oct(0o666 & ~umask)}   # not safetensors' 0600


# --- point 5: --resume auto with nothing to resume ------------------------------------------------------------------------

def test_resume_auto_on_an_empty_out_starts_and_says_so(tmp_path):
    r = _train(tmp_path/'new', '--steps', 2, '--resume', 'auto')
    assert r.returncode == 0 and 'no checkpoint in' in r.stdout and 'starting a new run' in r.stdout, r.stdout[-2000:]
    assert len(read_metrics(tmp_path/'new')) == 2


def test_resume_auto_on_a_run_without_checkpoint_keeps_its_files(tmp_path):
    "A run killed before its first save: its 30 metric rows and settings are moved aside, never overwritten."
    out = tmp_path/'run'; out.mkdir()
    (out/'metrics.csv').write_text('step,epoch,loss,lr,grad_norm,clips_per_s,seconds\n' +
                                   ''.join(f'{i},0,1.0,0.001,,2,{i}\n' for i in range(30)))
    (out/'config.json').write_text('{"settings": {"note": "the earlier run"}}')
    r = _train(out, '--steps', 2, '--resume', 'auto')
    assert r.returncode == 0 and 'holds a run without a checkpoint' in r.stdout, r.stdout[-2000:]
    old = [p for p in out.iterdir() if p.name.startswith('previous-')]
    assert len(old) == 1 and len(read_metrics(old[0])) == 30 and 'the earlier run' in (old[0]/'config.json').read_text()
    assert len(read_metrics(out)) == 2


def test_a_new_run_refuses_a_folder_with_a_run_or_a_file(tmp_path, run4):
    before = len(read_metrics(run4))
    _one_line_error(_train(run4, '--steps', 2), 'videomae-train', 'already holds a run', '--resume auto')
    assert len(read_metrics(run4)) == before
    (tmp_path/'afile').write_text('mine')
    _one_line_error(_train(tmp_path/'afile', '--steps', 2), 'videomae-train', "--out", 'is a file')
    assert (tmp_path/'afile').read_text() == 'mine'


# --- point 6: a warmup the run cannot honour -------------------------------------------------------------------------------

def test_a_warmup_longer_than_the_run_is_refused(tmp_path):
    from videomae_nb.datasets import make_motion_videos, build_lists
    make_motion_videos(tmp_path/'videos', n_per_class=2, frames=8, size=32, seed=1)
    build_lists(tmp_path/'videos', tmp_path/'lists', val_fraction=0.25)
    r = subprocess.run([sys.executable, '-c', 'from videomae_nb.finetune import cli; cli()', '--data_path',
                        str(tmp_path/'lists'), '--steps', '10', '--batch_size', '1', '--frames', '4', '--size', '32',
                        '--num_workers', '0', '--out', str(tmp_path/'ft')],
                       cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    _one_line_error(r, 'videomae-finetune', '--warmup_epochs 5 (20 steps of 4 per epoch)', "run's 10 steps")
    assert not (tmp_path/'ft'/'metrics.csv').exists()
    _one_line_error(_train(tmp_path/'pre', '--steps', 5, '--warmup', 8), 'videomae-train', '--warmup 8', "run's 5 steps")


# --- point 1: signals in fine-tuning ----------------------------------------------------------------------------------------

FT = ['--frames', '4', '--stride', '4', '--size', '32', '--batch_size', '2', '--num_sample', '1', '--warmup_steps', '1',
      '--no_test', '--eval_every', '1000', '--save_every', '1000', '--keep', '5', '--num_workers', '0', '--quiet']

@pytest.fixture(scope='module')
def ft_lists(tmp_path_factory):
    from videomae_nb.datasets import make_motion_videos, build_lists
    d = tmp_path_factory.mktemp('ftsig')
    make_motion_videos(d/'videos', n_per_class=3, frames=16, size=32, seed=4)
    build_lists(d/'videos', d/'lists', val_fraction=0.25)
    return d/'lists'

def _finetune(lists, out, *extra):
    return subprocess.Popen([sys.executable, 'videomae_nb/finetune.py', '--data_path', str(lists), *FT, '--out', str(out),
                             *map(str, extra)], cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGINT])
def test_finetuning_saves_on_a_signal_and_resumes_exactly(tmp_path, ft_lists, sig):
    full = _finetune(ft_lists, tmp_path/'full', '--steps', 30)
    assert full.wait(timeout=600) == 0, full.stdout.read()[-2000:]
    out = tmp_path/'run'
    p, t = _finetune(ft_lists, out, '--steps', 30), time.time()
    while not (out/'metrics.csv').exists() or len(read_metrics(out)) < 3:
        assert p.poll() is None and time.time() - t < 300, p.stdout.read()[-2000:]; time.sleep(0.05)
    p.send_signal(sig)
    log = p.communicate(timeout=300)[0]
    assert p.returncode == 128 + sig, log[-2000:]
    assert f'stopped by {sig.name}' in log and '--resume auto' in log, log[-2000:]
    n = int(list_checkpoints(out)[-1].name.split('-')[1])
    assert 3 <= n < 30 and len(read_metrics(out)) == n
    q = _finetune(ft_lists, out, '--steps', 30, '--resume', 'auto')
    assert q.wait(timeout=600) == 0, q.stdout.read()[-2000:]
    a = load_file(str(tmp_path/'full'/'checkpoints'/'checkpoint-0000030'/'model.safetensors'))
    b = load_file(str(out/'checkpoints'/'checkpoint-0000030'/'model.safetensors'))
    for k in a: torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=lambda m: f'{k}: {m}')
    assert [int(r['step']) for r in read_metrics(out)] == list(range(30))


# --- point 10: every console script refuses in one line, exit status 2 ---------------------------------------------------

BAD = {'videomae-train': ['--batch_size', '0'], 'videomae-finetune': ['--frames', '0'],
       'videomae-vis': [str(DATA/'cockatoo.mp4'), '--size', '0'], 'videomae-convert': ['no-such-file.pth', 'out'],
       'videomae-check-data': [str(DATA), '--min_frames', '0'],
       'videomae-features': ['no-such-run', '--source', str(DATA), '--out', 'feats', '--window', '0'],
       'videomae-bench': ['--batch', '0'], 'videomae-recipes': ['show', 'no-such-recipe'],
       'videomae-predict': ['no-such-video.mp4', '--checkpoint', 'no-such-run'], 'videomae-detect': ['--frames', '0']}

def _scripts():
    import configparser
    ini = configparser.ConfigParser(); ini.read(ROOT/'settings.ini')
    return [s.split('=')[0] for s in ini['DEFAULT']['console_scripts'].split()]

def test_every_console_script_is_covered():
    assert sorted(_scripts()) == sorted(BAD)

MORE = [('videomae-features', ['run', '--source', str(DATA), '--out', 'f', '--batch_size', '0'], '--batch_size must be >= 1'),
        ('videomae-features', ['run', '--source', str(DATA), '--out', 'f', '--part', '2', '--parts', '2'],
         '--part must be from 0 to --parts - 1 = 1, got 2'),
        ('videomae-bench', ['--warmup', '-1'], '--warmup must be >= 0, got -1'),
        ('videomae-check-data', [str(DATA), '--workers', '-1'], '--workers must be >= 0'),
        ('videomae-check-data', [str(DATA), '--val_fraction', '1'], '--val_fraction must be in [0, 1), got 1'),
        ('videomae-train', ['--steps', 'ten'], "argument --steps: invalid int value: 'ten'"),
        ('videomae-vis', [], 'the following arguments are required')]

@pytest.mark.parametrize('prog,args,words', MORE, ids=[f'{p}{a[-2:]}' for p, a, _ in MORE])
def test_more_refusals_in_one_line(tmp_path, prog, args, words):
    "The README's rows on counts and argparse errors, each as it is written there."
    exe = shutil.which(prog, path=str(Path(sys.executable).parent)) or shutil.which(prog)
    r = subprocess.run([exe, *args], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    _one_line_error(r, prog, words)
    assert list(tmp_path.iterdir()) == []

@pytest.mark.parametrize('bad', ['value', 'flag'])
@pytest.mark.parametrize('prog', sorted(BAD))
def test_every_console_script_refuses_in_one_line(tmp_path, prog, bad):
    "A bad value (the library's refusal) and an unknown flag (argparse's): one line, exit 2, nothing written."
    exe = shutil.which(prog, path=str(Path(sys.executable).parent)) or shutil.which(prog)
    assert exe, f'{prog} is not installed (pip install -e .)'
    args = BAD[prog] + ([] if bad == 'value' else ['--no-such-flag', '3'])
    r = subprocess.run([exe, *args], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    err = _one_line_error(r, prog)
    if bad == 'flag': assert re.search('no[-_]such[-_]flag', err) and '--help' in err, err
    else: assert 'Traceback' not in r.stderr and ('must be >= 1, got 0' in err or 'no-such' in err), err
    assert list(tmp_path.iterdir()) == []


def test_symlinked_folders_followed_once(tmp_path):
    "Point 8: a class folder that is a link is read (it was skipped silently); a link loop is named, not walked."
    from videomae_nb.data import find_videos
    (tmp_path/'store/dogs').mkdir(parents=True); (tmp_path/'data/cats').mkdir(parents=True)
    for name in ('a.mp4', 'b.mp4'): shutil.copy(DATA/'cockatoo.mp4', tmp_path/'store/dogs'/name)
    shutil.copy(DATA/'cockatoo.mp4', tmp_path/'data/cats/c.mp4')
    (tmp_path/'data/dogs').symlink_to(tmp_path/'store/dogs'); (tmp_path/'store/dogs/up').symlink_to(tmp_path/'data')
    with pytest.warns(UserWarning, match=r"links to .*data', read already: skipped"):
        found = find_videos(tmp_path/'data')
    assert [p.relative_to(tmp_path/'data').as_posix() for p in found] == ['cats/c.mp4', 'dogs/a.mp4', 'dogs/b.mp4']
    r = subprocess.run([sys.executable, '-c', 'from videomae_nb.datasets import cli; cli()', str(tmp_path/'data'),
                        '--lists_out',
                        str(tmp_path/'lists'), '--val_fraction', '0', '--quiet'], env=ENV, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path/'lists/classes.txt').read_text().split() == ['cats', 'dogs']
    assert len((tmp_path/'lists/train.csv').read_text().splitlines()) == 3


def _check_data(*args):
    return subprocess.run([sys.executable, '-c', 'from videomae_nb.datasets import cli; cli()', *map(str, args)],
                          env=ENV, capture_output=True, text=True, timeout=300)

def test_prepare_keeps_orientation_names_and_settings(tmp_path):
    "Point 2: a rotated phone clip comes out upright; clip.avi + clip.mp4 stay two videos with their own labels;"
    "a re-run with another --short_side re-encodes; a file --prepare did not make is refused, untouched."
    import numpy as np
    from videomae_nb.data import open_video, read_list_file
    from videomae_nb.datasets import write_video, motion_clip, prepare_video
    side = motion_clip(0, 16, (32, 64), np.random.default_rng(0)); side[:, :, :16] = 255   # white band on the left
    write_video(tmp_path/'data/phone/a.mp4', side, rotation=90)
    write_video(tmp_path/'data/pair/clip.mp4', side)
    write_video(tmp_path/'data/pair/clip.avi', motion_clip(1, 16, (32, 64), np.random.default_rng(1)))
    r = _check_data(tmp_path/'data', '--lists_out', tmp_path/'lists', '--val_fraction', '0', '--workers', '0',
                    '--prepare', tmp_path/'prep', '--short_side', '24', '--quiet')
    assert r.returncode == 0, r.stderr[-2000:]
    listed = {p.relative_to(tmp_path/'prep').as_posix(): l for p, l in read_list_file(tmp_path/'prep/train.csv')}
    assert listed == {'pair/clip_avi.mp4': 0, 'pair/clip_mp4.mp4': 0, 'phone/a.mp4': 1}, listed
    up = open_video(tmp_path/'prep/phone/a.mp4').get_batch([0])[0]
    assert up.shape == (48, 24, 3) and up[-6:].mean() > 200 and up[:30].mean() < 200     # upright: band at the bottom
    differ = np.abs(open_video(tmp_path/'prep/pair/clip_avi.mp4').get_batch([5]).astype(int)
                    - open_video(tmp_path/'prep/pair/clip_mp4.mp4').get_batch([5]).astype(int)).mean()
    assert differ > 10                                                                    # two sources, two videos
    r = _check_data(tmp_path/'lists', '--workers', '0', '--prepare', tmp_path/'prep', '--short_side', '16')
    assert r.returncode == 0 and 'were made with other settings: re-encoding them' in r.stdout, r.stdout + r.stderr
    assert open_video(tmp_path/'prep/phone/a.mp4').size == (32, 16)
    foreign = tmp_path/'prep/pair/clip_mp4.mp4'; write_video(foreign, side); before = foreign.read_bytes()
    r = _check_data(tmp_path/'lists', '--workers', '0', '--prepare', tmp_path/'prep', '--short_side', '16', '--quiet')
    _one_line_error(r, 'videomae-check-data', 'was not made by --prepare')
    assert foreign.read_bytes() == before


def _avi(path, n=16, size=64):
    "An MPEG-4 AVI of `n` random frames, written with PyAV."
    import av, numpy as np
    rng = np.random.default_rng(0)
    with av.open(str(path), 'w') as c:
        s = c.add_stream('mpeg4', rate=8); s.width = s.height = size; s.pix_fmt = 'yuv420p'
        for _ in range(n):
            f = av.VideoFrame.from_ndarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8), format='rgb24')
            for p in s.encode(f): c.mux(p)
        for p in s.encode(): c.mux(p)
    return path

def test_decoders_told_apart_from_broken_files(tmp_path):
    "Point 7: a header that lists too many frames is not 'truncated'; a cut file is; a good video one decoder cannot"
    "read (decord2 and narrow frames) is a decoder limit naming the decoder that reads it; tiny videos are accepted."
    import struct, numpy as np
    from videomae_nb.data import open_video, VideoReadError, DecoderLimit
    from videomae_nb.datasets import write_video, check_video
    b = bytearray(_avi(tmp_path/'a.avi').read_bytes())
    struct.pack_into('<I', b, b.index(b'strh') + 8 + 32, 40); struct.pack_into('<I', b, 48, 40)   # "40 frames"
    (tmp_path/'lies.avi').write_bytes(b)
    v = open_video(tmp_path/'lies.avi', backend='pyav')
    assert len(v) == 16 and v.get_batch([15]).shape == (1, 64, 64, 3)
    data = (DATA/'cockatoo.mp4').read_bytes()
    for cut in (81739, 81739 + 500):                       # at a frame boundary (its index runs on), inside a frame
        (tmp_path/'cut.mp4').write_bytes(data[:cut])
        with pytest.raises(VideoReadError, match='truncated: the file holds 5[01] whole frames of the 100'):
            open_video(tmp_path/'cut.mp4', backend='pyav')
    rng = np.random.default_rng(0)
    for s in (8, 16):
        tiny = write_video(tmp_path/f'tiny{s}.mp4', rng.integers(0, 255, (16, s, s, 3), dtype=np.uint8))
        assert check_video(tiny, backend='pyav')['problem'] is None
    pytest.importorskip('decord')
    with pytest.raises(DecoderLimit, match=r"decord cannot read this h264 8x8 video, --decoder pyav does"):
        open_video(tmp_path/'tiny8.mp4', backend='decord').get_batch([0])
    assert check_video(tmp_path/'tiny8.mp4', backend='decord')['problem'] == 'decoder'

def test_rotation_applied_by_every_decoder(tmp_path):
    "Point 7: a phone video (display matrix) is upright, with the same pixels, in PyAV, torchcodec and decord."
    import numpy as np
    from videomae_nb.data import open_video, _decoder_problem
    from videomae_nb.datasets import write_video
    band = np.zeros((8, 64, 128, 3), np.uint8); band[:, :, :32] = 255
    phone = write_video(tmp_path/'phone.mp4', band, rotation=90)
    shown = {b: open_video(phone, backend=b).get_batch([0, 5])
             for b in ('pyav', 'torchcodec', 'decord') if _decoder_problem(b) is None}
    assert 'pyav' in shown and len(shown) >= 2, shown.keys()
    for b, x in shown.items():
        assert x.shape == (2, 128, 64, 3) and x[:, -32:].min() > 240 and x[:, :90].max() < 15, b
        assert np.abs(x.astype(int) - shown['pyav'].astype(int)).max() <= 2, b


def _pid_of_rank(rank:int, marker:str) -> int|None:
    "The pid of the worker with RANK=`rank` whose command line holds `marker` (Linux /proc)."
    for d in Path('/proc').iterdir():
        try:
            if marker in (d/'cmdline').read_bytes().decode(errors='replace') and \
               f'RANK={rank}'.encode() in (d/'environ').read_bytes().split(b'\0'): return int(d.name)
        except (OSError, ValueError): continue
    return None

@pytest.mark.skipif(not Path('/proc/self/environ').exists(), reason='finds the worker through /proc')
def test_a_stopped_process_ends_the_job_naming_it(tmp_path):
    "Point 9: SIGSTOP one of two processes; the job ends within --timeout (plus torchrun's teardown), naming it."
    out = tmp_path/'run'
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', 'videomae_nb/train.py',
           '--cpu', '--steps', '100000', '--save_every', '100000', *PRE, '--out', str(out), '--timeout', '0.25']
    p = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pid = None
    try:
        deadline = time.monotonic() + 300
        while not ((out/'metrics.csv').exists() and len((out/'metrics.csv').read_text().splitlines()) > 2):
            assert p.poll() is None and time.monotonic() < deadline, p.communicate()[1][-3000:]
            time.sleep(0.5)
        pid = _pid_of_rank(1, str(out)); assert pid, 'rank 1 not found'
        os.kill(pid, signal.SIGSTOP); t0 = time.monotonic()
        _, err = p.communicate(timeout=240)
        took = time.monotonic() - t0
    finally:
        if pid:
            try: os.kill(pid, signal.SIGKILL)
            except ProcessLookupError: pass
        if p.poll() is None: p.kill()
    assert p.returncode != 0
    assert 'process 1 of 2 has given no sign of life for 0.25 min' in err, err[-3000:]
    print(f'the job ended {took:.0f} s after SIGSTOP')
    assert took < 15 + 10 + 15, took                  # the wait, the watchdog's beat, torchrun ending the job


WATCHDOG_EXIT = """import sys, time, torch.distributed as dist
from videomae_nb.runs import watchdog
dist.init_process_group('gloo')
watchdog(600., 'test', interval=float(sys.argv[1]))       # beats in the job's store every `interval` seconds
time.sleep(0.3); dist.barrier(); dist.destroy_process_group()
print('exiting', flush=True)
"""

def test_the_watchdog_never_aborts_a_process_that_ends(tmp_path):
    "A process that ends while its watchdog thread is in a store call exits 0 (it aborted with 'terminate called')."
    (script := tmp_path/'watchdog_exit.py').write_text(WATCHDOG_EXIT)
    for attempt in range(4):                              # a beat every 0.5 ms: in a store call at exit, most times
        r = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2',
                            str(script), '0.0005'], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and r.stdout.count('exiting') == 2, (attempt, r.stderr[-2000:])
        assert 'terminate called' not in r.stderr, (attempt, r.stderr[-2000:])


def test_check_data_takes_the_folder_train_takes_and_a_read_only_dataset(tmp_path):
    "Point 11: a flat folder of videos is checked without labels (train --data accepts it); a dataset it cannot"
    "write the lists into is refused in one line that names --lists_out; with --lists_out it works, nothing written."
    flat = tmp_path/'flat'; flat.mkdir()
    for v in DATA.glob('*.mp4'): shutil.copy(v, flat/v.name)
    r = _check_data(flat, '--workers', '0', '--prepare', tmp_path/'prep', '--short_side', '32')
    assert r.returncode == 0 and 'has no class folders: checking its videos, without labels' in r.stdout, r.stderr
    assert '5 videos, 5 good, 0 bad' in r.stdout, r.stdout
    assert len((tmp_path/'prep/pretrain_list.txt').read_text().splitlines()) == 5
    assert sorted(p.name for p in flat.iterdir()) == sorted(p.name for p in DATA.glob('*.mp4'))  # nothing written there
    classes = tmp_path/'classes'
    for c in ('a', 'b'): (classes/c).mkdir(parents=True); shutil.copy(DATA/'cockatoo.mp4', classes/c/'x.mp4')
    shutil.copy(DATA/'car_race_1906.mp4', classes/'a'/'y.mp4'); shutil.copy(DATA/'cockatoo.mp4', classes/'b'/'y.mp4')
    from videomae_nb import datasets
    denied = PermissionError(13, 'Permission denied', str(classes/'train.csv'))  # what a read-only disk says (root
    with mock.patch.object(datasets, 'write_list', side_effect=denied):            # writes through chmod 555)
        with pytest.raises(PermissionError, match=r"cannot write the lists into .*classes' \(Permission denied\): "
                                                  r"pass --lists_out FOLDER"):
            datasets.main(str(classes), workers=0, quiet=True)
    for d in (classes, classes/'a', classes/'b'): d.chmod(0o555)
    try:
        if not os.access(classes, os.W_OK):                                          # a user, not root: for real
            _one_line_error(_check_data(classes, '--workers', '0', '--quiet'), 'videomae-check-data',
                            'cannot write the lists into', 'pass --lists_out FOLDER')
        r = _check_data(classes, '--workers', '0', '--lists_out', tmp_path/'lists', '--quiet')
        assert r.returncode == 0 and (tmp_path/'lists/train.csv').exists(), r.stderr
        assert sorted(p.name for p in classes.iterdir()) == ['a', 'b']
    finally:
        for d in (classes, classes/'a', classes/'b'): d.chmod(0o755)

def test_predictions_top5_is_separated_by_bars(tmp_path):
    "Point 11: class names with spaces stay apart in predictions.csv's top5 column."
    from types import SimpleNamespace
    from videomae_nb.finetune import write_predictions
    import csv
    names = ['playing guitar', 'riding a bike', 'cat', 'dog food', 'e', 'f']
    res = dict(index=torch.tensor([0]), probs=torch.tensor([[.1, .5, .2, .15, .03, .02]]), labels=torch.tensor([1]))
    with open(write_predictions(tmp_path/'p.csv', res, SimpleNamespace(paths=['v.mp4']), names)) as f:
        rows = list(csv.DictReader(f))
    assert rows[0]['top5'].split('|') == ['riding a bike', 'cat', 'dog food', 'playing guitar', 'e']


@pytest.mark.parametrize('content,words', [
    (b'hello, these are not weights\n', "is a text file (it begins 'hello, these are not weights"),
    (b'version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 9\n', 'is a Git LFS pointer'),
    (b'<!DOCTYPE html><html><body>404</body></html>\n', 'is a web page')], ids=['text', 'lfs', 'html'])
def test_a_file_that_is_no_checkpoint_is_named_for_what_it_is(tmp_path, content, words):
    "Point 11: a text file given as --pretrained was said to hold 'Python objects besides tensors'."
    from videomae_nb.checkpoints import CheckpointError, load_weights
    from videomae_nb.classifier import VideoClassifier
    (tmp_path/'w.pth').write_bytes(content * 40)
    with pytest.raises(CheckpointError, match=re.escape(words)):
        load_weights(VideoClassifier('tiny', 4), tmp_path/'w.pth')

def test_mvd_teacher_loaders_name_the_refused_file(tmp_path):
    "Point 11: the teachers' strict loads named no file."
    from videomae_nb.checkpoints import CheckpointError
    from videomae_nb.mvd import image_teacher, load_image_teacher, load_video_teacher, VideoTeacher
    torch.save({'x': torch.zeros(2)}, tmp_path/'other.pth')
    with pytest.raises(CheckpointError, match=r"other.pth' as the image teacher: "):
        load_image_teacher(image_teacher('tiny'), tmp_path/'other.pth')
    with pytest.raises(CheckpointError, match=r"other.pth' as the video teacher: "):
        load_video_teacher(VideoTeacher('tiny'), tmp_path/'other.pth')


@pytest.mark.parametrize('target', ['pixel', 'norm'])
def test_converted_files_keep_the_target(tmp_path, target):
    "Point 11: a run converted --to hf / ours / pth (and the run folder itself) is drawn with the target it was"
    "trained on; a pixel-target run's transformers folder said norm_pix_loss true and was drawn normalized."
    import json
    from videomae_nb.checkpoints import convert
    from videomae_nb.viz import load_model
    r = _train(tmp_path/'run', '--steps', 1, '--target', target); assert r.returncode == 0, r.stderr[-2000:]
    outs = {to: convert(tmp_path/'run', tmp_path/('w.pth' if to == 'pth' else to), to, verbose=False)
            for to in ('hf', 'ours', 'pth')}
    assert json.loads((outs['hf']/'config.json').read_text())['norm_pix_loss'] == (target == 'norm')
    for src in (tmp_path/'run', *outs.values()):
        model, info = load_model(src)
        assert info['target'] == target and model.normalize_target == (target == 'norm'), src


def test_features_stop_on_a_signal_and_continue(tmp_path):
    "Signals in every long command: videomae-features finishes the video in hand, exits 130, a re-run goes on."
    r = _train(tmp_path/'run', '--steps', 1); assert r.returncode == 0, r.stderr[-2000:]
    (tmp_path/'videos').mkdir()
    for i in range(30): shutil.copy(DATA/'cockatoo.mp4', tmp_path/'videos'/f'v{i:02d}.mp4')
    args = [sys.executable, '-c', 'from videomae_nb.features import cli; cli()', str(tmp_path/'run'), '--source',
            str(tmp_path/'videos'), '--out', str(tmp_path/'feats'), '--window', '4', '--size', '32', '--quiet']
    p = subprocess.Popen(args, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not list((tmp_path/'feats').glob('*.npy')):
        assert p.poll() is None and time.monotonic() < deadline, p.communicate()
        time.sleep(0.1)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130 and 'stopped by SIGINT: run the same command again' in out, out + err
    first = sorted(f.name for f in (tmp_path/'feats').glob('*.npy'))
    assert 0 < len(first) < 30 and not list((tmp_path/'feats').glob('.tmp-*'))
    r = subprocess.run(args[:-1], env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and f'({len(first)} existed, 0 unreadable)' in r.stdout, r.stdout + r.stderr
    assert len(list((tmp_path/'feats').glob('*.npy'))) == 30
