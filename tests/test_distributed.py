"Two CPU processes (torchrun, gloo) against one: disjoint samples, identical weights, the same loss as one process."
import json, os, shutil, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT/'data_samples'

def _torchrun(n, *args, timeout=600):
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONPATH': str(ROOT) + os.pathsep + os.environ.get('PYTHONPATH', '')}
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={n}', *map(str, args)]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r

def test_two_processes_match_one(tmp_path):
    _torchrun(2, ROOT/'tests'/'ddp_worker.py', tmp_path/'two', DATA, 4, 2)
    _torchrun(1, ROOT/'tests'/'ddp_worker.py', tmp_path/'one', DATA, 4, 2)
    r0, r1 = (json.loads((tmp_path/'two'/f'rank{r}-of2.json').read_text()) for r in (0, 1))
    one = json.loads((tmp_path/'one'/'rank0-of1.json').read_text())
    for a, b, o in zip(r0, r1, one):
        assert not set(a['paths']) & set(b['paths']), f"step {a['step']}: ranks saw the same video"
        assert a['checksum'] == b['checksum'] and a['weights_head'] == b['weights_head'], 'weights differ between ranks'
        assert abs(a['loss'] - o['loss']) < 1e-5, (a['loss'], o['loss'])
        assert max(abs(x - y) for x, y in zip(a['weights_head'], o['weights_head'])) < 1e-5

def test_training_script_under_torchrun_writes_once(tmp_path):
    r = _torchrun(2, 'videomae_nb/train.py', '--cpu', '--steps', 3, '--frames', 4, '--size', 32, '--batch_size', 2,
                  '--num_workers', 0, '--quiet', '--out', tmp_path/'run')
    assert '2 process(es)' in r.stdout and 'effective batch: 4 videos = 2 per process x 2 processes' in r.stdout
    rows = (tmp_path/'run'/'metrics.csv').read_text().splitlines()
    assert len(rows) == 1 + 3                            # header + one row per step, written by one process
    assert [p.name for p in (tmp_path/'run'/'checkpoints').iterdir()] == ['checkpoint-0000003']

def test_two_process_resume(tmp_path):
    "Resuming a 2-process run restores each rank's mask generator (stored as independent tensors, not views)."
    args = ['videomae_nb/train.py', '--cpu', '--frames', 4, '--size', 32, '--batch_size', 2, '--num_workers', 0, '--quiet',
            '--steps', 4, '--save_every', 2, '--keep', 5]
    _torchrun(2, *args, '--out', tmp_path/'full')
    part = tmp_path/'part'; (part/'checkpoints').mkdir(parents=True)
    shutil.copytree(tmp_path/'full'/'checkpoints'/'checkpoint-0000002', part/'checkpoints'/'checkpoint-0000002')
    _torchrun(2, *args, '--out', part, '--resume', 'auto')
    from safetensors.torch import load_file
    a = load_file(str(tmp_path/'full'/'checkpoints'/'checkpoint-0000004'/'model.safetensors'))
    b = load_file(str(part/'checkpoints'/'checkpoint-0000004'/'model.safetensors'))
    assert all((a[k] - b[k]).abs().max() <= 1e-6 for k in a)
