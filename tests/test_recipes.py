"""Recipes against the official runs: the effective batch and the scaled lr each run prints, on the official number
of GPUs and on one GPU with accumulation; refusals of contradicting flags and data; the Accelerate configs; and a
recipe scaled down to the tiny model under two CPU processes."""
import os, re, subprocess, sys
from dataclasses import fields
from pathlib import Path
import pytest
from videomae_nb.recipes import RECIPES, apply_recipe, get_recipe, fit_batch, main as recipes_main
from videomae_nb.train import PretrainConfig
from videomae_nb.finetune import FinetuneConfig
from videomae_nb.detect import DetectConfig

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT/'data_samples'

# The official runs, written from REFERENCE §6 (pretraining: GPUs × per-GPU batch × update_freq, base lr) and §8
# (fine-tuning per-GPU batch and base lr; GPU counts from the official scripts' `--nnodes` × 8), independently of
# the recipe objects: (GPUs, batch per GPU, update_freq, effective batch, peak lr = blr × effective batch / 256).
OFFICIAL = {
    'videomae_k400_s_pt':   (32, 32, 1, 1024, 1.5e-4 * 1024 / 256),
    'videomae_k400_b_pt':   (64, 32, 1, 2048, 1.2e-3),
    'videomae_k400_l_pt':   (64, 8, 1, 512, 3e-4),
    'videomae_k400_h_pt':   (64, 16, 1, 1024, 6e-4),
    'videomae_ssv2_s_pt':   (64, 32, 1, 2048, 1.2e-3),
    'videomae_ssv2_b_pt':   (64, 32, 1, 2048, 1.2e-3),
    'videomae_ucf101_b_pt': (8, 24, 1, 192, 3e-4 * 192 / 256),
    'videomaev2_hybrid_b_pt': (32, 32, 1, 1024, 4e-3),      # lr by videos, not the 4 clips each (num_sample)
    'videomaev2_hybrid_l_pt': (48, 32, 1, 1536, 6e-3),
    'videomaev2_hybrid_h_pt': (64, 32, 1, 2048, 8e-3),
    'videomaev2_hybrid_g_pt': (64, 32, 1, 2048, 6e-4 * 2048 / 256),
    'mvd_k400_s_from_b_pt': (32, 16, 2, 1024, 6e-4),
    'mvd_k400_s_from_l_pt': (32, 16, 2, 1024, 6e-4),
    'mvd_k400_b_from_b_pt': (32, 16, 2, 1024, 6e-4),
    'mvd_k400_b_from_l_pt': (32, 16, 2, 1024, 6e-4),
    'mvd_k400_l_from_l_pt': (32, 16, 2, 1024, 6e-4),
    'mvd_k400_l_from_l_800e_pt': (32, 8, 2, 512, 3e-4),    # GPUs: the script's comment (REFERENCE: not stated)
    'mvd_k400_h_from_h_800e_pt': (32, 8, 2, 512, 3e-4),
    'videomae_k400_s_ft':   (32, 12, 1, 384, 7.5e-4),
    'videomae_k400_b_ft':   (64, 6, 1, 384, 7.5e-4),
    'videomae_k400_l_ft':   (64, 2, 1, 128, 1e-3),
    'videomae_k400_h_ft':   (64, 8, 1, 512, 2e-3),
    'videomae_ssv2_s_ft':   (32, 12, 1, 384, 1.5e-3),
    'videomae_ssv2_b_ft':   (64, 6, 1, 384, 7.5e-4),
    'videomae_ucf101_b_ft': (8, 16, 1, 128, 2.5e-4),
    'mvd_k400_b_ft':        (32, 6, 2, 384, 7.5e-4),
    'mvd_ssv2_b_ft':        (16, 24, 1, 384, 7.5e-4),
}
# VideoMAE V2's fine-tuning batch is not stated in the sources: (base lr) only.
NOT_STATED = {'videomaev2_k400_b_ft': 7e-4, 'videomaev2_k400_l_ft': 2e-3, 'videomaev2_k400_h_ft': 1e-3,
              'videomaev2_k400_g_ft': 1e-3, 'videomaev2_ssv2_b_ft': 2e-3, 'videomaev2_ssv2_g_ft': 3e-4,
              # the distilled students (issue 19): no value of theirs is stated; V2-B's K400 fine-tuning lr is our choice
              'videomaev2_k710_s_dl_from_g': 7e-4, 'videomaev2_k710_b_dl_from_g': 7e-4,
              # AVA detection (issue 20): the papers state no schedule; mmaction2's ViT-B lr, by its batch of 64
              **{n: 5e-4 for n in ('videomae_ava_s_det', 'videomae_ava_b_det', 'videomae_ava_l_det',
                                   'videomae_ava_h_det', 'mvd_ava_b_det', 'mvd_ava_l_det', 'mvd_ava_h_det')}}

_LINE = re.compile(r'^(official|this run): effective batch (\d+) = (\d+) per process x (\d+) (?:processes|GPUs) x (\d+) '
                   r'accumulation; lr = \S+ x \d+ / 256 = (\S+?)(?:;|\s|$)', re.M)

CONFIGS = dict(pretrain=PretrainConfig, finetune=FinetuneConfig, detect=DetectConfig)

def printed(name, world, **flags) -> tuple:
    "Apply a recipe as the script would on `world` processes: the settings, and the batch lines it prints, parsed."
    out, r = [], get_recipe(name)
    if r.method == 'MVD' and r.script == 'pretrain':
        flags = dict(image_teacher_ckpt='mae.pth', video_teacher_ckpt='videomae.pth', **flags)
    if r.teacher: flags = dict(teacher='vit_g_hybrid_pt_1200e_k710_ft.pth', **flags)
    flags = dict(recipe=name, **flags)
    s = apply_recipe(CONFIGS[r.script](**flags), given=set(flags), world=world, log=out.append)
    lines = {m[0]: dict(eff=int(m[1]), batch=int(m[2]), world=int(m[3]), accum=int(m[4]), lr=float(m[5]))
             for m in _LINE.findall('\n'.join(out))}
    return s, lines, '\n'.join(out)

def test_every_recipe_has_official_values():
    assert set(RECIPES) == set(OFFICIAL) | set(NOT_STATED)

@pytest.mark.parametrize('name', sorted(OFFICIAL))
def test_official_gpus_print_official_batch_and_lr(name):
    gpus, per_gpu, freq, eff, lr = OFFICIAL[name]
    assert gpus * per_gpu * freq == eff
    s, lines, text = printed(name, gpus)
    assert lines['official']['eff'] == eff and lines['official']['lr'] == pytest.approx(lr, rel=1e-3), text
    run = lines['this run']
    assert (run['eff'], run['batch'], run['world'], run['accum']) == (eff, per_gpu, gpus, freq), text
    assert run['lr'] == pytest.approx(lr, rel=1e-3), text
    assert (s.batch_size, s.accum) == (per_gpu, freq)

@pytest.mark.parametrize('name', sorted(OFFICIAL))
def test_one_gpu_accumulates_to_the_official_batch(name):
    gpus, per_gpu, freq, eff, lr = OFFICIAL[name]
    s, lines, text = printed(name, 1)
    run = lines['this run']
    assert (run['eff'], run['batch'], run['world'], run['accum']) == (eff, per_gpu, 1, eff // per_gpu), text
    assert run['lr'] == pytest.approx(lr, rel=1e-3), text
    assert '<- the recipe' not in text and 'differs from the recipe: nothing' in text

@pytest.mark.parametrize('name', sorted(NOT_STATED))
def test_unstated_batch_scales_by_the_batch_the_run_has(name):
    s, lines, text = printed(name, 8, batch_size=4)
    assert 'effective batch not stated' in text and 'official' not in lines
    assert lines['this run']['eff'] == 32 and lines['this run']['lr'] == pytest.approx(NOT_STATED[name] * 32 / 256, rel=1e-3)

def test_more_gpus_than_official_shrink_the_per_gpu_batch():
    s, lines, _ = printed('videomae_k400_b_pt', 128)
    assert (s.batch_size, s.accum, lines['this run']['eff']) == (16, 1, 2048)

def test_explicit_flags_win_and_are_reported():
    s, lines, text = printed('videomae_k400_b_pt', 8, batch_size=8, accum=2, epochs=800)
    assert (s.batch_size, s.accum, lines['this run']['eff']) == (8, 2, 128)
    assert lines['this run']['lr'] == pytest.approx(1.5e-4 * 128 / 256)
    assert "<- the recipe's is 2048" in text and '--epochs 800 (recipe: 1600)' in text
    assert s.warmup == pytest.approx(40 / 800)         # 40 warmup epochs, as a fraction of the shorter run

def test_v2_huge_decoder_and_giant_clip():
    from videomae_nb.recipes import model_overrides
    s, _, _ = printed('videomaev2_hybrid_h_pt', 64)
    assert model_overrides(s) == dict(decoder_dim=512, decoder_heads=8) and s.num_sample == 4 and s.decoder_mask_ratio == 0.5
    s, _, _ = printed('videomaev2_hybrid_g_pt', 64)
    assert s.clip_grad == 0.02 and s.grad_checkpointing and s.blr == 6e-4

# --- refusals ---------------------------------------------------------------------------------------------------

def test_train_refuses_ssv2_recipe_without_ssv2_stride():
    from videomae_nb.train import main
    with pytest.raises(ValueError, match=r'--stride 4 contradicts recipe videomae_ssv2_b_pt'):
        main(recipe='videomae_ssv2_b_pt', stride=4, data=str(DATA), steps=1)

def test_train_refuses_a_list_with_more_labels_than_the_recipe(tmp_path):
    from videomae_nb.train import main
    lst = tmp_path/'train.csv'
    lst.write_text(''.join(f'{p} {399 if i == 0 else i}\n' for i, p in enumerate(sorted(DATA.glob('*.mp4')))))
    with pytest.raises(ValueError, match='labels up to 399, more than the 174 classes'):
        main(recipe='videomae_ssv2_s_pt', data=str(lst), steps=1)

def test_train_refuses_a_list_named_for_another_dataset(tmp_path):
    from videomae_nb.train import main
    d = tmp_path/'something-something-v2'; d.mkdir()
    (d/'train.csv').write_text(''.join(f'{p} 0\n' for p in sorted(DATA.glob('*.mp4'))))
    with pytest.raises(ValueError, match='looks like Something-Something V2'):
        main(recipe='videomae_k400_b_pt', data=str(d/'train.csv'), steps=1)

def test_finetune_refuses_contradictions(tmp_path):
    from videomae_nb.finetune import main
    with pytest.raises(ValueError, match="samples 'tsn'"):
        main(recipe='videomae_ssv2_b_ft', sampling='dense', data_path=str(DATA))
    with pytest.raises(ValueError, match='--nb_classes 400 contradicts'):
        main(recipe='mvd_ssv2_b_ft', nb_classes=400, data_path=str(DATA))
    with pytest.raises(ValueError, match='videomae-train'):
        main(recipe='videomae_k400_b_pt', data_path=str(DATA))

def test_full_size_mvd_recipe_needs_its_teachers():
    from videomae_nb.train import main
    with pytest.raises(ValueError, match='--image_teacher_ckpt and --video_teacher_ckpt'):
        main(recipe='mvd_k400_b_from_l_pt', data=str(DATA), steps=1)

def test_unknown_recipe_names_the_close_ones():
    with pytest.raises(ValueError, match='videomae_k400_b_pt'):
        get_recipe('videomae_k400_b')

def test_fsdp_launch_pretrain_only(monkeypatch):
    "FSDP2 pretraining is accepted; fine-tuning, FSDP1 and Accelerate's own activation checkpointing are refused."
    monkeypatch.setenv('ACCELERATE_USE_FSDP', 'true')
    monkeypatch.setenv('FSDP_VERSION', '2')
    assert apply_recipe(PretrainConfig()).preset == 'tiny'
    with pytest.raises(ValueError, match='8gpu_ddp.yaml'):
        apply_recipe(FinetuneConfig())
    monkeypatch.setenv('FSDP_ACTIVATION_CHECKPOINTING', 'true')
    with pytest.raises(ValueError, match='--grad_checkpointing'):
        apply_recipe(PretrainConfig())
    monkeypatch.setenv('FSDP_ACTIVATION_CHECKPOINTING', 'false')
    monkeypatch.setenv('FSDP_VERSION', '1')
    with pytest.raises(ValueError, match='FSDP2 only'):
        apply_recipe(PretrainConfig())

def test_fit_batch_rejects_nonsense():
    with pytest.raises(ValueError, match='positive'): fit_batch(2048, 0, 32)

# --- command line and configs -------------------------------------------------------------------------------------

def test_videomae_recipes_cli(capsys):
    text = recipes_main('list')
    assert all(name in text for name in RECIPES)
    text = recipes_main('show', 'videomae_ssv2_b_pt')
    assert 'stride' in text and '64 x 32 x 1' in text and '0.00015 x 2048 / 256 = 0.0012' in text and 'SSv2 70.8' in text

@pytest.mark.parametrize('name,kind,procs', [('1gpu', 'NO', 1), ('8gpu_ddp', 'MULTI_GPU', 8), ('8gpu_fsdp', 'FSDP', 8),
                                              ('multinode', 'MULTI_GPU', 64)])
def test_accelerate_configs_load(name, kind, procs):
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DistributedType
    cfg = load_config_from_file(str(ROOT/'configs'/'accelerate'/f'{name}.yaml'))
    assert cfg.distributed_type == DistributedType(kind) and cfg.num_processes == procs and cfg.mixed_precision == 'bf16'
    assert cfg.main_training_function == 'main'
    if kind == 'FSDP':                                   # what check_launch accepts (tests/test_distributed.py runs it)
        f = cfg.fsdp_config
        assert f['fsdp_version'] == 2 and f['fsdp_auto_wrap_policy'] == 'TRANSFORMER_BASED_WRAP'
        assert f['fsdp_transformer_layer_cls_to_wrap'] == 'Block' and f['fsdp_activation_checkpointing'] is False
        from videomae_nb.encoder import get_config
        from videomae_nb.videomae import VideoMAE
        m = VideoMAE(get_config('tiny', depth=1, decoder_depth=1))     # FSDP finds the blocks to shard by class name
        assert {type(b).__name__ for b in [*m.encoder.blocks, *m.decoder.blocks]} == {f['fsdp_transformer_layer_cls_to_wrap']}

def test_slurm_example_launches_a_recipe():
    text = (ROOT/'configs'/'slurm'/'pretrain.sbatch').read_text()
    assert 'configs/accelerate/multinode.yaml' in text and '--recipe $RECIPE' in text and '--machine_rank' in text
    r = subprocess.run(['bash', '-n', str(ROOT/'configs'/'slurm'/'pretrain.sbatch')], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr

# --- a recipe scaled down to tiny, two CPU processes -----------------------------------------------------------

def test_recipe_scaled_to_tiny_on_two_cpu_processes(tmp_path):
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONPATH': str(ROOT) + os.pathsep + os.environ.get('PYTHONPATH', '')}
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', 'videomae_nb/train.py',
           '--recipe', 'videomae_k400_b_pt', '--preset', 'tiny', '--frames', '4', '--size', '32', '--batch_size', '1',
           '--accum', '2', '--steps', '3', '--mixed_precision', 'no', '--cpu', '--num_workers', '0', '--quiet',
           '--out', str(tmp_path/'run')]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout
    assert out.count('recipe videomae_k400_b_pt') == 1                   # printed once, by the first process
    assert 'official: effective batch 2048 = 32 per process x 64 GPUs x 1 accumulation; lr = 0.00015 x 2048 / 256 = 0.0012' in out
    assert 'this run: effective batch 4 = 1 per process x 2 processes x 2 accumulation' in out
    assert '--preset tiny (recipe: base)' in out and '--steps 3 (recipe: 1600 epochs)' in out
    assert 'stride 4' in out and 'targets: per-patch normalized pixels' in out   # the recipe's values reached the run
    rows = (tmp_path/'run'/'metrics.csv').read_text().splitlines()
    assert len(rows) == 1 + 3

@pytest.mark.parametrize('script', ['pretrain', 'finetune', 'detect'])
def test_every_recipe_value_reaches_the_script(script):
    "Every value a recipe sets is a setting of its script, and reaches the run's settings (on the official GPUs)."
    from videomae_nb.recipes import recipe_settings, list_recipes
    names = {f.name for f in fields(CONFIGS[script])}
    for r in list_recipes(script):
        rs = recipe_settings(r)
        assert set(rs) <= names, f'{r.name}: {sorted(set(rs) - names)} are not settings of the {script} script'
        s, _, _ = printed(r.name, r.gpus or 8)
        for k, v in rs.items(): assert getattr(s, k) == v, f'{r.name}: --{k} is {getattr(s, k)!r}, the recipe says {v!r}'
