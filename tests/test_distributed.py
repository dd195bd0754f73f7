"""Two CPU processes (torchrun, gloo) against one: disjoint samples, identical weights, the same loss as one process.
And FSDP pretraining on two CPU processes (tests/fsdp_cpu.py): full checkpoints, exact resume, the same run as DDP."""
import json, math, os, re, shutil, subprocess, sys
from pathlib import Path
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT/'data_samples'

def _torchrun(n, *args, timeout=600, env=None):
    env = {**os.environ, **(env or {}), 'OMP_NUM_THREADS': '1', 'PYTHONPATH': str(ROOT) + os.pathsep + os.environ.get('PYTHONPATH', '')}
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

# --- FSDP -----------------------------------------------------------------------------------------------------------

def _fsdp_env() -> dict:
    "The FSDP variables `accelerate launch --config_file configs/accelerate/8gpu_fsdp.yaml` gives its processes."
    from accelerate.commands.launch import launch_command_parser, _validate_launch_command
    from accelerate.utils.launch import prepare_multi_gpu_env
    cfg = str(ROOT/'configs'/'accelerate'/'8gpu_fsdp.yaml')
    args, _, _ = _validate_launch_command(launch_command_parser().parse_args(['--config_file', cfg, 'train.py']))
    return {k: v for k, v in prepare_multi_gpu_env(args).items() if k.startswith('FSDP_') or k == 'ACCELERATE_USE_FSDP'}

def test_fsdp_config_sets_fsdp2_block_wrapping():
    env = _fsdp_env()
    assert env['ACCELERATE_USE_FSDP'] == 'true' and env['FSDP_VERSION'] == '2'
    assert env['FSDP_AUTO_WRAP_POLICY'] == 'TRANSFORMER_BASED_WRAP' and env['FSDP_TRANSFORMER_CLS_TO_WRAP'] == 'Block'
    assert env['FSDP_ACTIVATION_CHECKPOINTING'] == 'false' and env['FSDP_STATE_DICT_TYPE'] == 'FULL_STATE_DICT'

def _ckpt(run, step):
    from safetensors.torch import load_file
    d = Path(run)/'checkpoints'/f'checkpoint-{step:07d}'
    return load_file(str(d/'model.safetensors')), torch.load(d/'state.pt', weights_only=True)

def _max_diff(a:dict, b:dict) -> float:
    assert sorted(a) == sorted(b)
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)

def _sharded(stdout:str) -> dict:
    "rank -> (elements held, elements in all), from tests/fsdp_cpu.py's report after prepare."
    hits = re.findall(r'fsdp_cpu: rank (\d+): (\d+) of (\d+) parameters sharded, holds (\d+) of (\d+) elements', stdout)
    assert hits and all(int(n) == int(of) for _, n, of, _, _ in hits), stdout[-2000:]
    return {int(r): (int(held), int(full)) for r, _, _, held, full in hits}

def test_fsdp_pretraining_checkpoints_and_resumes(tmp_path):
    """FSDP on two CPU processes: the model is sharded; each checkpoint holds the full weights and optimizer state,
    in the format (and with the values) of a DDP run; resuming under FSDP reproduces the uninterrupted run, and the
    FSDP checkpoint resumes under DDP too."""
    fsdp = _fsdp_env()
    args = ['videomae_nb/train.py', '--cpu', '--frames', 4, '--size', 32, '--batch_size', 2, '--accum', 2, '--num_workers', 0,
            '--quiet', '--steps', 4, '--save_every', 2, '--keep', 5]
    r = _torchrun(2, 'tests/fsdp_cpu.py', *args, '--out', tmp_path/'fsdp', env=fsdp)
    assert 'FSDP (weights, gradients and optimizer state sharded)' in r.stdout
    held = _sharded(r.stdout)
    assert sorted(held) == [0, 1] and all(h < full for h, full in held.values()) and sum(h for h, _ in held.values()) == held[0][1]
    assert (tmp_path/'fsdp'/'reconstruction.png').stat().st_size > 0            # drawn with a plain copy on the first process
    _torchrun(2, *args, '--out', tmp_path/'ddp')                                 # the same run, data parallel
    one = ['videomae_nb/train.py', '--cpu', '--frames', 4, '--size', 32, '--batch_size', 2, '--num_workers', 0, '--quiet', '--steps', 1]
    _torchrun(1, *one, '--out', tmp_path/'one')                                  # one process, for the checkpoint format

    for step in (2, 4):
        (f, fs), (d, ds) = _ckpt(tmp_path/'fsdp', step), _ckpt(tmp_path/'ddp', step)
        assert {k: v.shape for k, v in f.items()} == {k: v.shape for k, v in d.items()}    # full tensors, DDP's names
        assert _max_diff(f, d) <= 1e-6                                           # FSDP trains as DDP does
        fo, do = fs['optimizer'], ds['optimizer']
        n = sum(len(g['params']) for g in do['param_groups'])
        assert sorted(fo['state']) == sorted(do['state']) == list(range(n))       # numbered like Optimizer.state_dict()
        assert [g['params'] for g in fo['param_groups']] == [g['params'] for g in do['param_groups']]
        assert [{k: v for k, v in g.items() if k != 'params'} for g in fo['param_groups']] == \
               [{k: v for k, v in g.items() if k != 'params'} for g in do['param_groups']]
        for i in fo['state']:
            assert fo['state'][i]['exp_avg'].shape == do['state'][i]['exp_avg'].shape      # full moments, not shards
            assert _max_diff(fo['state'][i], do['state'][i]) <= 1e-6
            assert int(fo['state'][i]['step']) == step
        assert fs['step'] == step and len(fs['rng']) == 2
    o, _ = _ckpt(tmp_path/'one', 1)
    assert {k: v.shape for k, v in o.items()} == {k: v.shape for k, v in f.items()}

    for name, extra in (('part', fsdp), ('ddp_from_fsdp', None)):               # resume step 2 under FSDP, and under DDP
        (tmp_path/name/'checkpoints').mkdir(parents=True)
        shutil.copytree(tmp_path/'fsdp'/'checkpoints'/'checkpoint-0000002', tmp_path/name/'checkpoints'/'checkpoint-0000002')
        shutil.copy(tmp_path/'fsdp'/'metrics.csv', tmp_path/name/'metrics.csv')
        r = _torchrun(2, *(['tests/fsdp_cpu.py'] if extra else []), *args, '--out', tmp_path/name, '--resume', 'auto', env=extra)
        assert 'resuming from step 2' in r.stdout and 'done: 4 steps' in r.stdout
        rows = (tmp_path/name/'metrics.csv').read_text().splitlines()[1:]
        assert [int(x.split(',')[0]) for x in rows] == [0, 1, 2, 3] and all(math.isfinite(float(x.split(',')[2])) for x in rows)
        assert _max_diff(_ckpt(tmp_path/name, 4)[0], _ckpt(tmp_path/'fsdp', 4)[0]) <= 1e-6

def test_fsdp_mvd_pretraining(tmp_path):
    "MVD under FSDP: the student is sharded, the teachers are not; the checkpoint is the full student."
    r = _torchrun(2, 'tests/fsdp_cpu.py', 'videomae_nb/train.py', '--objective', 'mvd', '--cpu', '--frames', 4, '--size', 32,
                  '--batch_size', 2, '--num_workers', 0, '--quiet', '--steps', 2, '--out', tmp_path/'mvd', env=_fsdp_env())
    held = _sharded(r.stdout)
    assert all(h < full for h, full in held.values())
    from videomae_nb.mvd import MVDStudent, mvd_config
    sd, st = _ckpt(tmp_path/'mvd', 2)
    ref = MVDStudent(mvd_config('tiny', patch_size=8), 192, 192, 4, 32).state_dict()   # the tiny demo's 8-px patches
    assert {k: v.shape for k, v in sd.items()} == {k: v.shape for k, v in ref.items()}
    assert all(s['exp_avg'].shape == s['exp_avg_sq'].shape for s in st['optimizer']['state'].values())
    assert (tmp_path/'mvd'/'features.png').stat().st_size > 0

# --- the end of a process of several -------------------------------------------------------------------------------

LEAVE = """import atexit, os
from videomae_nb.cli import run_cli
class Teardown:
    def __del__(self): os.write(1, b'torn down\\n')
keep = Teardown()                                      # deleted in Python's final teardown, if there is one
atexit.register(lambda: print('exit handlers ran'))
def main(status:int=0, refuse:bool=False, message:str=''):
    print('working', end='')                           # not flushed: must still come out
    if refuse: raise ValueError('--refuse was given')
    if message: raise SystemExit(message)
    if status: raise SystemExit(status)
run_cli(main, 'leave')
"""

@pytest.mark.parametrize('args, rc, out, err', [
    ([], 0, 'workingexit handlers ran\n', ''),
    (['--refuse'], 2, 'workingexit handlers ran\n', 'leave: error: --refuse was given\n'),
    (['--status', '143'], 143, 'workingexit handlers ran\n', ''),
    (['--message', 'stopped'], 1, 'workingexit handlers ran\n', 'stopped\n')])
def test_a_process_of_several_ends_as_python_would_without_the_teardown(tmp_path, args, rc, out, err):
    "The exit status, the exit handlers, the output, and no teardown (where gloo's threads abort the process)."
    (script := tmp_path/'leave.py').write_text(LEAVE)
    env = {**os.environ, 'PYTHONPATH': str(ROOT), 'WORLD_SIZE': '2'}
    r = subprocess.run([sys.executable, str(script), *args], env=env, capture_output=True, text=True, timeout=120)
    assert (r.returncode, r.stdout, r.stderr) == (rc, out, err)
    alone = subprocess.run([sys.executable, str(script), *args], env={**env, 'WORLD_SIZE': '1'}, capture_output=True,
                           text=True, timeout=120)
    assert (alone.returncode, alone.stdout, alone.stderr) == (rc, out + 'torn down\n', err)   # one process: as before
