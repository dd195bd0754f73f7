"Runs that are killed, stopped or fed the wrong checkpoint: nothing trained is lost, and every failure says what happened."
import os, shutil, signal, subprocess, sys, time
from pathlib import Path
import pytest, torch
from safetensors.torch import load_file
from videomae_nb.train import main
from videomae_nb.runs import list_checkpoints, read_metrics, save_checkpoint, load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT/'data_samples'
ARGS = ['--data', str(DATA), '--frames', '4', '--size', '32', '--batch_size', '2', '--num_workers', '0', '--quiet']

def _start(out, *extra):
    env = {**os.environ, 'PYTHONUNBUFFERED': '1', 'OMP_NUM_THREADS': '1'}
    return subprocess.Popen([sys.executable, 'videomae_nb/train.py', *ARGS, '--out', str(out), *map(str, extra)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

def _wait_for_checkpoint(out, step, proc, timeout=240):
    t = time.time()
    while time.time() - t < timeout:
        if any(p.name == f'checkpoint-{step:07d}' for p in list_checkpoints(out)): return
        if proc.poll() is not None: raise AssertionError(f'run ended early: {proc.stdout.read()[-2000:]}')
        time.sleep(0.05)
    raise AssertionError('no checkpoint in time')

def _weights(out, step): return load_file(str(Path(out)/'checkpoints'/f'checkpoint-{step:07d}'/'model.safetensors'))

@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp('full')/'run'
    p = _start(out, '--steps', 40, '--save_every', 5, '--keep', 20)
    assert p.wait(timeout=600) == 0, p.stdout.read()[-2000:]
    return out

def test_sigkill_then_resume_gives_the_uninterrupted_weights(tmp_path, uninterrupted):
    out = tmp_path/'run'
    p = _start(out, '--steps', 40, '--save_every', 5, '--keep', 20)
    _wait_for_checkpoint(out, 10, p)
    p.send_signal(signal.SIGKILL); p.wait()
    assert p.returncode == -signal.SIGKILL
    q = _start(out, '--steps', 40, '--save_every', 5, '--keep', 20, '--resume', 'auto')
    assert q.wait(timeout=600) == 0, q.stdout.read()[-2000:]
    a, b = _weights(uninterrupted, 40), _weights(out, 40)
    for k in a: torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=lambda m: f'{k}: {m}')
    assert [r['step'] for r in read_metrics(out)] == list(range(40))          # one row per step, none twice

def test_sigterm_saves_a_checkpoint_and_exits(tmp_path, uninterrupted):
    out = tmp_path/'run'
    p = _start(out, '--steps', 40, '--save_every', 1000)
    t = time.time()
    while not (out/'metrics.csv').exists() or len(read_metrics(out)) < 3:
        assert p.poll() is None and time.time() - t < 240; time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    log = p.communicate(timeout=240)[0]
    assert p.returncode == 128 + 15, log[-2000:]
    assert 'stopped by SIGTERM' in log and '--resume auto' in log
    ck = list_checkpoints(out)[-1]
    n = int(ck.name.split('-')[1])
    assert 3 <= n < 40 and len(read_metrics(out)) == n
    q = _start(out, '--steps', 40, '--save_every', 1000, '--resume', 'auto')
    assert q.wait(timeout=600) == 0
    a, b = _weights(uninterrupted, 40), _weights(out, 40)
    for k in a: torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)

def test_a_crash_while_saving_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    sd = {'w': torch.ones(3)}
    save_checkpoint(tmp_path, 10, sd, {'optimizer': {}})
    import videomae_nb.train as T
    def boom(*a, **k): raise OSError('disk full (injected)')
    monkeypatch.setattr(torch, 'save', boom)                     # the fault: writing state.pt fails mid-checkpoint
    with pytest.raises(OSError, match='injected'): save_checkpoint(tmp_path, 20, {'w': torch.zeros(3)}, {'optimizer': {}})
    monkeypatch.undo()
    assert [p.name for p in list_checkpoints(tmp_path)] == ['checkpoint-0000010']
    w, st = load_checkpoint(list_checkpoints(tmp_path)[-1])
    assert torch.equal(w['w'], torch.ones(3)) and st['step'] == 10

def test_a_killed_save_leaves_the_previous_checkpoint(tmp_path):
    "A process killed in the middle of writing (the temporary folder half written) never shadows a complete checkpoint."
    save_checkpoint(tmp_path, 10, {'w': torch.ones(3)}, {'optimizer': {}})
    tmp = tmp_path/'checkpoints'/'.tmp-checkpoint-0000020-999'; tmp.mkdir()
    (tmp/'model.safetensors').write_bytes(b'half')
    assert [p.name for p in list_checkpoints(tmp_path)] == ['checkpoint-0000010']
    assert load_checkpoint(list_checkpoints(tmp_path)[-1])[1]['step'] == 10

def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    main(data=str(DATA), frames=4, size=32, batch_size=2, num_workers=0, quiet=True, steps=2, out=str(tmp_path/'r'))
    with pytest.raises(ValueError, match='another architecture'):
        main(data=str(DATA), frames=4, size=32, batch_size=2, num_workers=0, quiet=True, steps=4, out=str(tmp_path/'r'),
             resume='auto', decoder_depth=3)

def test_checkpoint_with_a_pickled_object_is_refused(tmp_path):
    save_checkpoint(tmp_path, 5, {'w': torch.ones(3)}, {'optimizer': {}})
    ck = list_checkpoints(tmp_path)[-1]
    torch.save({'step': 5, 'evil': Path('/etc/passwd')}, ck/'state.pt')          # a pickled Python object
    with pytest.raises(ValueError, match='weights_only=True'): load_checkpoint(ck)

def test_non_finite_loss_stops_naming_step_and_videos(tmp_path, monkeypatch):
    import videomae_nb.train as T
    real, calls = T.reconstruction_loss, []
    def flaky(*a, **k):
        calls.append(1)
        return real(*a, **k) * (float('nan') if len(calls) == 4 else 1.)
    monkeypatch.setattr(T, 'reconstruction_loss', flaky)
    with pytest.raises(FloatingPointError, match=r'loss is nan at step 3; batch videos: \[.*\.mp4'):
        main(data=str(DATA), frames=4, size=32, batch_size=2, num_workers=0, quiet=True, steps=10, save_every=1,
             out=str(tmp_path/'r'))
    assert [p.name for p in list_checkpoints(tmp_path/'r')][-1] == 'checkpoint-0000003'   # the last good step's checkpoint

def test_same_seed_same_batches_masks_and_losses(tmp_path):
    "Two runs with one seed on the CPU: identical losses and weights; another seed differs."
    kw = dict(data=str(DATA), frames=4, size=32, batch_size=2, num_workers=2, quiet=True, steps=4, decoder_mask_ratio=0.5)
    runs = [main(**kw, seed=s, out=str(tmp_path/f'r{i}')) for i, s in enumerate((7, 7, 8))]
    losses = [[r['loss'] for r in read_metrics(x['run_dir'])] for x in runs]
    assert losses[0] == losses[1] and losses[0] != losses[2]
    a, b = _weights(tmp_path/'r0', 4), _weights(tmp_path/'r1', 4)
    assert all(torch.equal(a[k], b[k]) for k in a)
