"The training script: runs, writes its run folder, resumes exactly, and refuses bad settings before any work."
import csv, json, shutil, subprocess, sys, os
from pathlib import Path
import pytest, torch
from safetensors.torch import load_file
from videomae_nb.train import main
from videomae_nb.runs import list_checkpoints, read_metrics

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT/'data_samples'
FAST = dict(data=str(DATA), frames=8, size=64, batch_size=2, num_workers=0, quiet=True)

def test_run_folder(tmp_path):
    res = main(steps=4, out=str(tmp_path/'run'), **FAST)
    run = Path(res['run_dir'])
    assert {p.name for p in run.iterdir()} == {'checkpoints', 'config.json', 'loss.png', 'metrics.csv', 'reconstruction.png'}
    rows = read_metrics(run)
    assert [int(r['step']) for r in rows] == [0, 1, 2, 3]
    assert all(torch.isfinite(torch.tensor(r['loss'])) for r in rows)
    cfg = json.loads((run/'config.json').read_text())
    assert cfg['settings']['preset'] == 'tiny' and cfg['effective_batch'] == 2
    assert [p.name for p in list_checkpoints(run)] == ['checkpoint-0000004']

def test_resume_continues_the_same_run(tmp_path):
    full = main(steps=6, save_every=3, keep=5, out=str(tmp_path/'full'), **FAST)
    ck3 = Path(full['run_dir'])/'checkpoints'/'checkpoint-0000003'
    part = tmp_path/'part'; part.mkdir(); (part/'checkpoints').mkdir()
    shutil.copytree(ck3, part/'checkpoints'/ck3.name)
    main(steps=6, save_every=3, keep=5, out=str(part), resume='auto', **FAST)
    a = load_file(str(Path(full['run_dir'])/'checkpoints'/'checkpoint-0000006'/'model.safetensors'))
    b = load_file(str(part/'checkpoints'/'checkpoint-0000006'/'model.safetensors'))
    for k in a: torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=lambda m: f'{k}: {m}')
    la = [r['loss'] for r in read_metrics(full['run_dir'])][3:]
    lb = [r['loss'] for r in read_metrics(part)]
    assert [int(r['step']) for r in read_metrics(part)] == [3, 4, 5]
    assert la == pytest.approx(lb, abs=1e-6)

def test_existing_run_folder_is_not_overwritten(tmp_path):
    main(steps=1, out=str(tmp_path/'r'), **FAST)
    with pytest.raises(FileExistsError, match='--resume auto'): main(steps=1, out=str(tmp_path/'r'), **FAST)

@pytest.mark.parametrize('bad, msg', [(dict(frames=15), '--frames 15'), (dict(size=100), '--size 100'),
                                      (dict(mask_ratio=0.), '(0, 1)'), (dict(mask_ratio=1.5), '(0, 1)'),
                                      (dict(decoder_mask_ratio=0.3), '0.25, 0.5 or 0.75'), (dict(mixed_precision='fp8'), 'fp8'),
                                      (dict(data='no/such/folder'), 'no/such/folder'), (dict(target='features'), 'features')])
def test_bad_settings_fail_before_work(tmp_path, bad, msg):
    with pytest.raises((ValueError, FileNotFoundError), match=msg.replace('(', r'\(').replace(')', r'\)')):
        main(**{**FAST, 'out': str(tmp_path/'x'), **bad})
    assert not (tmp_path/'x').exists()

def test_malformed_list_file_names_the_line(tmp_path):
    lst = tmp_path/'train.txt'
    lst.write_text(f'{DATA}/cockatoo.mp4 0\n{DATA}/car_race_1906.mp4 zero\n')
    with pytest.raises(ValueError, match='train.txt:2'): main(**{**FAST, 'data': str(lst), 'out': str(tmp_path/'x'), 'steps': 1})

def test_broken_videos_are_skipped_and_counted(tmp_path):
    (tmp_path/'empty.mp4').write_bytes(b'')
    (tmp_path/'text.mp4').write_text('not a video\n' * 200)
    lst = tmp_path/'list.txt'
    lst.write_text(f'empty.mp4 0\ntext.mp4 0\nmissing.mp4 0\n{DATA}/cockatoo.mp4 0\n{DATA}/cycling_ball_throw.mp4 0\n')
    with pytest.warns(UserWarning, match='skipping video'):
        res = main(**{**FAST, 'data': str(lst), 'out': str(tmp_path/'x'), 'steps': 3})
    assert res['skipped'] > 0

def test_nothing_readable_is_a_clear_error(tmp_path):
    (tmp_path/'a.mp4').write_bytes(b'\0' * 2048); (tmp_path/'b.mp4').write_bytes(b'\0' * 2048)
    with pytest.warns(UserWarning), pytest.raises(RuntimeError, match='none of the 2 videos'):
        main(**{**FAST, 'data': str(tmp_path), 'out': str(tmp_path/'x'), 'steps': 1})

def _run(args, **kw):
    env = {**os.environ, 'PYTHONUNBUFFERED': '1'}
    return subprocess.run(args, cwd=kw.get("cwd", ROOT), capture_output=True, text=True, timeout=300, env=env)

def test_script_entry_points(tmp_path):
    for cmd in ([sys.executable, 'videomae_nb/train.py', '--help'], [sys.executable, '-m', 'videomae_nb.train', '--help']):
        r = _run(cmd); assert r.returncode == 0 and '--mask_ratio' in r.stdout, r.stderr
    r = _run([sys.executable, 'videomae_nb/train.py', '--steps', '2', '--frames', '4', '--size', '32', '--batch_size', '2',
              '--num_workers', '0', '--quiet', '--out', str(tmp_path/'s')])
    assert r.returncode == 0, r.stderr[-2000:]
    assert 'effective batch: 2 videos' in r.stdout and 'lr = ' in r.stdout
    assert (tmp_path/'s'/'reconstruction.png').exists()

def test_accelerate_launch(tmp_path):
    exe = shutil.which('accelerate')
    if exe is None: pytest.skip('accelerate CLI not on PATH')
    r = _run([exe, 'launch', '--num_processes', '1', '--cpu', 'videomae_nb/train.py', '--steps', '2', '--frames', '4', '--size', '32',
              '--batch_size', '2', '--num_workers', '0', '--quiet', '--out', str(tmp_path/'a')])
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(read_metrics(tmp_path/'a')) == 2

def test_v2_dual_masking_and_repeated_sampling(tmp_path, capsys):
    res = main(**{**FAST, 'out': str(tmp_path/'v2'), 'steps': 3, 'decoder_mask_ratio': 0.5, 'num_sample': 2})
    out = capsys.readouterr().out
    assert 'effective batch: 2 videos' in out and '4 clips with num_sample 2' in out and 'lr scaled by videos' in out
    assert 'running-cell decoder 0.5' in out
    cfg = json.loads((Path(res['run_dir'])/'config.json').read_text())
    assert cfg['settings']['decoder_mask_ratio'] == 0.5 and cfg['settings']['num_sample'] == 2
    assert all(torch.isfinite(torch.tensor(r['loss'])) for r in read_metrics(res['run_dir']))

def test_console_script_exit_status(tmp_path):
    "A console script exits with its function's return value: a successful run must exit 0 (not print a dict)."
    exe = shutil.which('videomae-train')
    if exe is None: pytest.skip('videomae-train not installed (pip install -e .)')
    r = _run([exe, '--steps', '1', '--frames', '4', '--size', '32', '--batch_size', '2', '--num_workers', '0', '--quiet',
              '--data', str(DATA), '--out', str(tmp_path/'c')], cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-1000:] + r.stderr[-1000:]
    assert "{'run_dir'" not in r.stdout + r.stderr


COUNTS = [('steps', 0), ('size', 0), ('size', -16), ('frames', 0), ('log_every', 0), ('save_every', 0), ('keep', 0),
          ('batch_size', 0)]

@pytest.mark.parametrize('script,flag,value', [(s, f, v) for s in ('videomae-train', 'videomae-finetune') for f, v in COUNTS]
                         + [('videomae-train', 'patch_size', 0)])    # fine-tuning takes its patch from the model
def test_a_count_of_zero_or_less_is_refused_before_any_work(monkeypatch, capsys, tmp_path, script, flag, value):
    """Issue 22, point 6: `--steps 0`, `--size 0`, `--frames 0` ran at the defaults; `--size -16` and `--log_every 0`
    crashed after work started. Now: one line naming flag and value, exit 2, no run folder."""
    from videomae_nb import train, finetune
    out = tmp_path/'run'
    monkeypatch.setattr(sys, 'argv', [script, f'--{flag}', str(value), '--out', str(out)])
    with pytest.raises(SystemExit) as e: (train if script == 'videomae-train' else finetune).cli()
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count('\n') == 1 and f'--{flag} must be >= 1, got {value}' in err, err
    assert not out.exists()
