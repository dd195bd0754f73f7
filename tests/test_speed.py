"Speed features of the training scripts and the benchmark: each flag runs, changes what it says, and keeps the results."
import json, subprocess, sys, os
from pathlib import Path
import pytest, torch
from videomae_nb.train import main, make_optimizer
from videomae_nb.runs import read_metrics
from videomae_nb.data import PretrainDataset, collate, device_clips, as_model_input, denormalize
from videomae_nb.ops import cpu_matmul_mode, onednn_available, Linear
from videomae_nb import ops
from videomae_nb.videomae import VideoMAE
from videomae_nb.encoder import get_config
from videomae_nb.masking import tube_mask
from videomae_nb import bench

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT/'data_samples'
FAST = dict(data=str(DATA), frames=8, size=64, batch_size=2, num_workers=0, quiet=True)

def test_speed_flags_run_together(tmp_path):
    res = main(steps=3, out=str(tmp_path/'r'), grad_checkpointing=True, optimizer_impl='foreach', device_augment=True,
               num_sample=2, cpu_matmul='torch', persistent_workers=False, pin_memory=False, **FAST)
    rows = read_metrics(res['run_dir'])
    assert len(rows) == 3 and all(torch.isfinite(torch.tensor(r['loss'])) for r in rows)
    s = json.loads((Path(res['run_dir'])/'config.json').read_text())['settings']
    assert (s['device_augment'], s['optimizer_impl'], s['cpu_matmul'], s['grad_checkpointing']) == (True, 'foreach', 'torch', True)
    assert rows[0]['clips_per_s'] > 0

@pytest.mark.parametrize('flag,value', [('optimizer_impl', 'adam'), ('cpu_matmul', 'mkl')])
def test_bad_speed_flags_are_refused(tmp_path, flag, value):
    with pytest.raises(ValueError, match=f'--{flag} must be one of'): main(steps=1, out=str(tmp_path/'r'), **{flag: value}, **FAST)
    assert not (tmp_path/'r').exists()

def test_torch_compile_flag_trains(tmp_path):
    res = main(steps=2, out=str(tmp_path/'c'), torch_compile=True, **{**FAST, 'size': 32, 'frames': 4})
    assert all(torch.isfinite(torch.tensor(r['loss'])) for r in read_metrics(res['run_dir']))

def test_device_augmentation_gives_the_worker_clips():
    "Same seed → same windows and crops; pixels differ only by the uint8 rounding of the worker path."
    kw = dict(num_frames=8, size=112, num_sample=3)
    cpu, dev = PretrainDataset(DATA, normalize=False, **kw), PretrainDataset(DATA, device_augment=True, **kw)
    a = collate([cpu[(1, i)] for i in range(len(cpu))])
    b = collate([dev[(1, i)] for i in range(len(dev))])
    assert a['path'] == b['path'] and torch.equal(a['index'], b['index'])
    assert b['boxes'].shape == (len(dev), 3, 4) and b['frames'][0].dtype == torch.uint8
    on_dev = device_clips(b['frames'], b['boxes'], 112)
    gap = (denormalize(on_dev) - denormalize(as_model_input(a['video']))).abs() * 255
    assert gap.max() <= 1.01 and gap.mean() < 0.3

def test_device_clips_refuses_mismatched_input():
    with pytest.raises(ValueError, match='2 videos but 1 sets'): device_clips([torch.zeros(2, 8, 8, 3, dtype=torch.uint8)] * 2, torch.zeros(1, 1, 4, dtype=torch.long), 8)
    with pytest.raises(ValueError, match='uint8'): device_clips([torch.zeros(2, 8, 8, 3)], torch.tensor([[[0, 0, 8, 8]]]), 8)

needs_onednn = pytest.mark.skipif(not onednn_available(), reason='oneDNN linear kernels need an x86-64 PyTorch with mkldnn')

@needs_onednn
def test_every_cpu_kernel_gives_the_same_training_step():
    "A whole VideoMAE forward and backward (loss and every gradient) agrees between the fp32 CPU kernels and auto."
    def run(mode):
        torch.manual_seed(0)
        m = VideoMAE(get_config('tiny', depth=2, decoder_depth=1))
        video = torch.randn(2, 3, 8, 64, 64, generator=torch.Generator().manual_seed(1))
        mask = tube_mask(2, m.encoder.grid(video), 0.75, torch.Generator().manual_seed(2))
        with cpu_matmul_mode(mode):
            loss, _ = m.loss(video, mask); loss.backward()
        return loss.detach(), {k: p.grad for k, p in m.named_parameters()}
    l2, g2 = run('torch')
    for mode in ('onednn', 'auto'):
        l1, g1 = run(mode)
        torch.testing.assert_close(l1, l2, rtol=1e-5, atol=1e-6)
        for k in g1: torch.testing.assert_close(g1[k], g2[k], rtol=1e-4, atol=1e-6, msg=lambda m: f'{mode} grad {k}: {m}')

@pytest.fixture
def kernel_cache(tmp_path, monkeypatch):
    "An empty per-test kernel cache, and the module's in-memory choice forgotten before and after."
    monkeypatch.setenv('VIDEOMAE_NB_CACHE', str(tmp_path/'cache'))
    fresh = lambda: ops._choice.update(key=None, shapes={}, memo={}, used=set(), measured=set(), fresh=None)
    fresh(); yield tmp_path/'cache'/'cpu_matmul.json'; fresh()

def _count_measurements(monkeypatch) -> list:
    calls, real = [], ops.time_linear
    monkeypatch.setattr(ops, 'time_linear', lambda *a, **k: calls.append(a) or real(*a, **k))
    return calls

@needs_onednn
def test_kernel_choice_is_measured_once_and_cached_per_machine_and_torch(kernel_cache, monkeypatch):
    calls, lin = _count_measurements(monkeypatch), Linear(24, 8)
    with cpu_matmul_mode('auto'):
        lin(torch.randn(40, 24)); lin(torch.randn(40, 24)); lin(torch.randn(2, 25, 24))   # 40 and 50 rows: one class
        assert calls == [(40, 24, 8)]
        (entry,) = json.loads(kernel_cache.read_text()).values()
        assert entry['machine']['torch'] == torch.__version__ and set(entry['shapes']['64x24x8']) == {'torch', 'onednn'}
        assert entry['machine']['threads'] == torch.get_num_threads() and 'flags' in entry['machine']
        report = ops.cpu_matmul_report()
        assert report.startswith('cpu_matmul auto: 1 linear shapes') and '1 measured now' in report
        ops._choice.update(key=None, shapes={}, memo={})              # a new process on this machine: the file answers
        lin(torch.randn(40, 24)); assert len(calls) == 1
        assert '0 measured now, 1 from' in ops.cpu_matmul_report()
        monkeypatch.setattr(torch, '__version__', '9.9.9')           # another torch measures again
        ops._choice['memo'].clear(); lin(torch.randn(40, 24)); assert len(calls) == 2
        assert len(json.loads(kernel_cache.read_text())) == 2          # and keeps the other entry
        with ops.calibrate_cpu_matmul(): lin(torch.randn(40, 24)); lin(torch.randn(40, 24))
        assert len(calls) == 3                                         # --calibrate: once more, once per class

def _cache_says(path, fastest:str):
    slow = dict(torch=1.0, onednn=1.0); slow[fastest] = 1e-3
    entry = dict(machine=ops.machine_key(), shapes={'64x24x8': slow})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({ops._key_str(ops.machine_key()): entry}))

@needs_onednn
@pytest.mark.parametrize('cached,forced', [('onednn', 'torch'), ('torch', 'onednn')])
def test_a_forced_kernel_wins_over_the_cache(kernel_cache, monkeypatch, cached, forced):
    _cache_says(kernel_cache, cached)
    calls, ran = _count_measurements(monkeypatch), []
    monkeypatch.setattr(ops.OneDNNLinear, 'apply', lambda *a: ran.append('onednn') or torch.nn.functional.linear(*a))
    lin, x = Linear(24, 8), torch.randn(40, 24)
    with cpu_matmul_mode(forced): lin(x)
    assert ran == (['onednn'] if forced == 'onednn' else [])
    ran.clear()
    with cpu_matmul_mode('auto'): lin(x)                              # auto follows the file, without measuring
    assert ran == (['onednn'] if cached == 'onednn' else []) and calls == []

@needs_onednn
def test_an_unreadable_cache_warns_and_measures_again(kernel_cache):
    kernel_cache.parent.mkdir(parents=True); kernel_cache.write_text('{"half a file')
    with pytest.warns(UserWarning, match='unreadable cache'), cpu_matmul_mode('auto'): Linear(24, 8)(torch.randn(40, 24))
    assert '64x24x8' in next(iter(json.loads(kernel_cache.read_text()).values()))['shapes']

def test_auto_without_onednn_is_torch_and_measures_nothing(kernel_cache, monkeypatch):
    calls = _count_measurements(monkeypatch)
    monkeypatch.setattr(ops, '_ONEDNN', False)
    with cpu_matmul_mode('auto'):
        assert ops.cpu_matmul() == 'torch'; Linear(24, 8)(torch.randn(40, 24))
    assert calls == [] and not kernel_cache.exists()

def test_the_benchmark_names_its_machine():
    env = bench._environment(torch.device('cpu'))
    assert {'cpu', 'cpu_flags', 'aten_capability', 'threads', 'torch', 'cpu_matmul'} <= set(env)
    assert env['aten_capability'] == torch.backends.cpu.get_cpu_capability()

def test_optimizer_implementations_agree():
    "fused, foreach and loop AdamW make the same update."
    out = {}
    for impl in ('fused', 'foreach', 'loop'):
        torch.manual_seed(0); m = VideoMAE(get_config('tiny', depth=1, decoder_depth=1)); opt = make_optimizer(m, 1e-2, impl=impl)
        for p in m.parameters(): p.grad = torch.ones_like(p) * 0.1
        opt.step(); out[impl] = torch.cat([p.detach().flatten() for p in m.parameters()])
    torch.testing.assert_close(out['fused'], out['loop']); torch.testing.assert_close(out['foreach'], out['loop'])
    with pytest.raises(ValueError, match='must be one of auto, fused, foreach, loop'): make_optimizer(m, 1e-2, impl='apex')

def test_model_flops_of_mvd_include_the_teachers_once():
    s = bench.make_step('mvd', 'tiny', frames=4, size=32, batch=1)
    assert torch.isfinite(s.step())
    student = 3 * bench._forward_flops(lambda: s.model(torch.zeros(1, 3, 4, 32, 32), torch.zeros(1, 8, dtype=torch.bool).index_fill_(1, torch.arange(6), True)))
    assert s.flops > student

def test_bench_command_runs(tmp_path):
    "The benchmark is tested for running (tiny preset, one repeat), not for speed."
    out = tmp_path/'bench.json'
    env = {**os.environ, 'PYTHONPATH': str(ROOT) + os.pathsep + os.environ.get('PYTHONPATH', '')}
    r = subprocess.run([sys.executable, '-c', 'from videomae_nb.bench import cli; cli()', '--preset', 'tiny', '--frames', '4', '--size', '32',
                        '--repeats', '1', '--warmup', '1', '--compare-hf', '--loader', str(DATA), '--num-samples', '1,2',
                        '--loader-rounds', '1', '--json', str(out)], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(out.read_text())
    names = [s['name'] for s in res['steps']]
    assert names[0] == 'videomae' and names[1] == 'v2' and names[-1] == 'transformers (sdpa)'
    for s in res['steps']:
        assert s['seconds'] > 0 and s['clips_per_s'] > 0 and s['gflop_per_step'] > 0 and 0 < s['mfu'] and s['vs_transformers'] > 0
    assert res['steps'][1]['gflop_per_step'] < res['steps'][0]['gflop_per_step']          # V2 decodes fewer tokens
    assert [l['num_sample'] for l in res['loader']] == [1, 2] and all(l['decode_ms'] > 0 for l in res['loader'])
    assert 'vs transformers (sdpa)' in r.stdout and 'MFU' in r.stdout

def test_bench_refuses_bad_settings():
    with pytest.raises(ValueError, match='--objective takes'): bench.main(objective='mae', preset='tiny')
    with pytest.raises(ValueError, match='transformers has no MVD'): bench.main(objective='mvd', compare_hf=True, preset='tiny')
    with pytest.raises(ValueError, match='--precision must be one of'): bench.main(precision='fp8', preset='tiny')

def test_the_benchmark_calibrates_and_profiles(kernel_cache, capsys):
    out = bench.main(preset='tiny', objective='videomae', frames=4, size=32, repeats=1, warmup=1, device='cpu',
                     calibrate=True, profile=True)
    (prof,) = out['profile'].values()
    assert set(prof) == {'linear', 'attention', 'norms', 'GELU', 'optimizer', 'data movement', 'other'}
    assert prof['linear'] > 0 and prof['attention'] > 0 and all(v >= 0 for v in prof.values())
    text = capsys.readouterr().out
    assert 'cpu_flags' in text and 'data movement' in text
    if onednn_available(): assert 'cpu_matmul auto:' in text and kernel_cache.exists()
