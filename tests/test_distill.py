"""Distillation from a fine-tuned teacher (issue 19): the loss, what the teacher sees and keeps, the script's run
folder, exact resume, two processes against one, the K710 → K400 rows, the refusals, the benchmark step."""
import os, shutil, subprocess, sys
from pathlib import Path
from types import SimpleNamespace
import pytest, torch
from safetensors.torch import load_file
from accelerate import Accelerator
from videomae_nb.encoder import get_config
from videomae_nb.classifier import VideoClassifier
from videomae_nb.checkpoints import save_ours
from videomae_nb.datasets import (make_motion_videos, build_lists, read_list_file, FinetuneDataset, finetune_loader,
                                  bundled_labels, k710_to_k400, K700_NAMES)
from videomae_nb.finetune import ClassificationObjective, MixSpec, make_finetune_optimizer, main
from videomae_nb.distill import DistillObjective, kd_loss, sibling_rows, teacher_rows, load_teacher
from videomae_nb.train import train_step
from videomae_nb.runs import read_metrics

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(frames=4, stride=4, size=32, batch_size=2, num_sample=2, warmup_steps=1, mixup=0.8, cutmix=1.0,
             randaug='none', no_flip=True, test_num_segment=1, test_num_crop=1, num_workers=0, quiet=True,
             preset='tiny')

@pytest.fixture(scope='module')
def data(tmp_path_factory):
    "Motion clips with lists, and a teacher saved as our folder (4 classes, a head that says something)."
    d = tmp_path_factory.mktemp('distill')
    make_motion_videos(d/'videos', n_per_class=3, frames=16, size=32, seed=3)
    build_lists(d/'videos', d/'lists', val_fraction=1/3)
    torch.manual_seed(7)
    save_ours(VideoClassifier(get_config('tiny', dim=128, heads=2, depth=2), 4, init_scale=1.), d/'teacher')
    return d

def _batch(d, num_sample=2):
    ds = FinetuneDataset(read_list_file(d/'lists'/'train.csv'), num_frames=4, stride=4, size=32, num_sample=num_sample,
                         flip=False, randaug=None, scale=(0.5, 1.))
    return next(iter(finetune_loader(ds, 4, num_workers=0)))

def _models(teacher_classes=4, student_classes=4):
    torch.manual_seed(0)
    student = VideoClassifier(get_config('tiny', depth=2), student_classes, init_scale=1.)
    teacher = VideoClassifier(get_config('tiny', dim=128, heads=2, depth=2), teacher_classes, init_scale=1.)
    return student, teacher.eval().requires_grad_(False)

# --- the loss --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('tau,alpha', [(1., 1.), (2., 1.), (4., 0.3)])
def test_loss_equals_a_direct_recomputation_from_the_two_models_logits(data, tau, alpha):
    student, teacher = _models()
    base = ClassificationObjective(MixSpec(mixup=0.8, cutmix=1.0, num_classes=4), reprob=0.5)
    acc, batch = Accelerator(cpu=True), _batch(data)
    loss, logs = DistillObjective(base, teacher, tau, alpha)(student, batch, acc, torch.Generator().manual_seed(5))
    x, target = base.augment(batch, acc, torch.Generator().manual_seed(5))      # the same erasing and mixing
    with torch.no_grad():
        s, t = student(x).double(), teacher(x).double()
    p_t, log_p_s = (t / tau).softmax(-1), (s / tau).log_softmax(-1)
    kl = (p_t * (p_t.log() - log_p_s)).sum(-1).mean() * tau ** 2
    ce = -(target.double() * s.log_softmax(-1)).sum(-1).mean()
    torch.testing.assert_close(loss.double(), alpha * kl + (1 - alpha) * ce, rtol=1e-5, atol=1e-6)
    assert (logs == {}) == (alpha == 1)
    assert kd_loss(s, s, tau).abs().item() < 1e-12                      # zero when the answers agree

def test_the_teacher_gets_the_students_tensor_no_gradient_and_no_optimizer_state(data):
    student, teacher = _models()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    seen = []
    teacher.register_forward_pre_hook(lambda m, a: seen.append(('teacher', a[0])))
    student.register_forward_pre_hook(lambda m, a: seen.append(('student', a[0])))
    acc, opt = Accelerator(cpu=True), make_finetune_optimizer(student, 1e-3)
    obj = DistillObjective(ClassificationObjective(MixSpec(num_classes=4), reprob=0.25), teacher)
    g = torch.Generator().manual_seed(0)
    for _ in range(2): train_step(acc, student, opt, [_batch(data)], obj, g)
    for (a, xa), (b, xb) in zip(seen[::2], seen[1::2]):
        assert (a, b) == ('student', 'teacher') and xa is xb              # the very tensor, every step
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert all(torch.equal(v, before[k]) for k, v in teacher.state_dict().items())
    student_ids = {id(p) for p in student.parameters()}
    assert {id(p) for g_ in opt.param_groups for p in g_['params']} == student_ids
    assert set(map(id, opt.state)) <= student_ids and len(opt.state) == len(student_ids)

def test_the_sibling_view_gives_the_teacher_the_other_clip_of_each_video(data):
    student, teacher = _models()
    got = {}
    teacher.register_forward_pre_hook(lambda m, a: got.__setitem__('t', a[0]))
    student.register_forward_pre_hook(lambda m, a: got.__setitem__('s', a[0]))
    base = ClassificationObjective(MixSpec(mixup=0.8, cutmix=0., num_classes=4), reprob=0.)
    batch = _batch(data, num_sample=2)
    DistillObjective(base, teacher, view='sibling', num_sample=2)(student, batch, Accelerator(cpu=True),
                                                                  torch.Generator().manual_seed(1))
    assert torch.equal(got['t'], got['s'][sibling_rows(8, 2)]) and not torch.equal(got['t'], got['s'])
    assert sibling_rows(6, 3).tolist() == [1, 2, 0, 4, 5, 3]

# --- K710 → K400 -----------------------------------------------------------------------------------------------------

def test_k710_to_k400_selects_the_rows_of_the_kinetics_400_names(data):
    rows = teacher_rows(710, 400)
    k400, k710 = bundled_labels('kinetics400'), bundled_labels('kinetics710')
    assert len(rows) == 400 == len(set(rows.tolist()))
    assert all(k710[r] == K700_NAMES.get(n, n) for n, r in zip(k400, rows.tolist()))
    student, teacher = _models(710, 400)
    with torch.no_grad(): teacher.head.bias.copy_(torch.arange(710.))   # logit i grows with row i: the pick shows
    base = ClassificationObjective(MixSpec(0., 0., smoothing=0., num_classes=400), reprob=0.)
    acc, batch = Accelerator(cpu=True), _batch(data)
    loss, _ = DistillObjective(base, teacher, rows=rows)(student, batch, acc, torch.Generator().manual_seed(0))
    x, _ = base.augment(batch, acc, torch.Generator().manual_seed(0))
    with torch.no_grad(): ref = kd_loss(student(x), teacher(x)[:, k710_to_k400()])
    torch.testing.assert_close(loss, ref)
    assert teacher_rows(4, 4) is None
    with pytest.raises(ValueError, match='same classes'): teacher_rows(400, 710)

def test_load_teacher_maps_a_710_class_file_and_refuses_one_without_a_head(tmp_path):
    save_ours(VideoClassifier(get_config('tiny', depth=1), 710), tmp_path/'k710')
    cfg = SimpleNamespace(teacher=str(tmp_path/'k710'), distill_temperature=1., distill_alpha=1., distill_view='same')
    model, rows, line = load_teacher(cfg, 400, 'cpu', verbose=False)
    assert rows.tolist() == k710_to_k400() and not model.training and '710 classes → the 400' in line
    from videomae_nb.videomae import VideoMAE
    save_ours(VideoMAE(get_config('tiny', depth=1)), tmp_path/'pre')
    with pytest.raises(ValueError, match='no classification head'):
        load_teacher(SimpleNamespace(**{**vars(cfg), 'teacher': str(tmp_path/'pre')}), 4, 'cpu', verbose=False)

# --- the script ------------------------------------------------------------------------------------------------------

def test_a_distilled_run_saves_no_teacher_and_resumes_exactly(data, tmp_path):
    args = dict(data_path=str(data/'lists'), teacher=str(data/'teacher'), steps=6, save_every=3, keep=5,
                eval_every=3, no_test=True, reprob=0.25, **SMALL)
    full = main(out=str(tmp_path/'full'), **args)
    ck = tmp_path/'full'/'checkpoints'
    saved = load_file(str(ck/'checkpoint-0000006'/'model.safetensors'))
    assert set(saved) == set(VideoClassifier(get_config('tiny'), 4).state_dict())      # the student's, no teacher
    state = torch.load(ck/'checkpoint-0000006'/'state.pt', weights_only=False)
    n_params = len(list(VideoClassifier(get_config('tiny'), 4).parameters()))
    assert len(state['optimizer']['state']) == n_params                                 # no state for the teacher
    (tmp_path/'part'/'checkpoints').mkdir(parents=True)
    shutil.copytree(ck/'checkpoint-0000003', tmp_path/'part'/'checkpoints'/'checkpoint-0000003')
    main(out=str(tmp_path/'part'), resume='auto', **args)
    again = load_file(str(tmp_path/'part'/'checkpoints'/'checkpoint-0000006'/'model.safetensors'))
    for k in saved: assert torch.equal(saved[k], again[k]), k
    assert full['run_dir'] == str(tmp_path/'full')

def test_two_processes_distil_as_one(data, tmp_path):
    """torchrun 2 x 2 videos against 1 x 4 (no mixing, no drop path): the same loss at every step within
    1e-5 (written with 6 decimals) and the same gradient norm."""
    env = {**os.environ, 'PYTHONPATH': str(ROOT), 'OMP_NUM_THREADS': '1'}
    flags = ['--cpu', '--data_path', str(data/'lists'), '--teacher', str(data/'teacher'), '--preset', 'tiny',
             '--frames', '4', '--stride', '4', '--size', '32', '--num_sample', '2', '--steps', '4', '--warmup_steps',
             '1', '--mixup', '0', '--cutmix', '0', '--reprob', '0', '--randaug', 'none', '--no_flip', '--no_test',
             '--num_workers', '0', '--eval_every', '100', '--quiet', '--distill_temperature', '2', '--clip_grad', '1e6',
             '--blr', '0.05', '--drop_path', '0']
    def run(n, batch, out):
        r = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', str(n),
                            'videomae_nb/finetune.py', *flags, '--batch_size', str(batch), '--out', str(out)],
                           cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        assert r.stdout.count('distillation: teacher') == 1                      # printed once, by the main process
        return read_metrics(out)
    two, one = run(2, 2, tmp_path/'two'), run(1, 4, tmp_path/'one')
    assert len(one) == len(two) == 4
    for a, b in zip(one, two):
        # Adam turns a gradient of ~0 into a step of ±lr, so weights are compared through what they compute
        assert abs(float(a['loss']) - float(b['loss'])) < 1e-5, (a, b)
        assert abs(float(a['grad_norm']) - float(b['grad_norm'])) <= 1.5e-4, (a, b)     # written with 4 decimals
    assert float(one[-1]['loss']) < 0.9 * float(one[0]['loss'])             # the steps moved the student

# --- refusals, the recipe, the benchmark -----------------------------------------------------------------------------

@pytest.mark.parametrize('flags,words', [
    (dict(distill_temperature=0.), '--distill_temperature must be > 0'),
    (dict(distill_alpha=1.5), '--distill_alpha must be in [0, 1]'),
    (dict(distill_view='other'), '--distill_view must be one of'),
    (dict(distill_view='sibling', num_sample=1), '--num_sample 2'),
    (dict(teacher=None, distill_alpha=0.5), 'need --teacher'),
    (dict(teacher='/no/such/teacher.pth'), "--teacher '/no/such/teacher.pth' does not exist"),
])
def test_bad_distillation_settings_are_refused_before_work(data, tmp_path, flags, words):
    args = {**dict(data_path=str(data/'lists'), teacher=str(data/'teacher'), steps=2, out=str(tmp_path/'r')), **SMALL}
    with pytest.raises((ValueError, FileNotFoundError), match=words.replace('[', r'\[').replace(']', r'\]')):
        main(**{**args, **flags})
    assert not (tmp_path/'r').exists()

def test_a_teacher_with_other_classes_is_refused_in_one_line(data, tmp_path):
    save_ours(VideoClassifier(get_config('tiny', depth=1), 7), tmp_path/'t7')
    r = subprocess.run([sys.executable, 'videomae_nb/finetune.py', '--data_path', str(data/'lists'), '--teacher',
                        str(tmp_path/'t7'), '--frames', '4', '--size', '32', '--steps', '1', '--warmup_steps', '0', '--num_workers', '0',
                        '--out', str(tmp_path/'r'), '--quiet'], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={**os.environ, 'PYTHONPATH': str(ROOT)})
    assert r.returncode == 2 and 'has 7 classes and the student 4' in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr

def test_the_distillation_recipe_needs_its_teacher_and_prints_the_command():
    from videomae_nb.recipes import get_recipe, apply_recipe, format_recipe
    from videomae_nb.finetune import FinetuneConfig
    r = get_recipe('videomaev2_k710_b_dl_from_g')
    assert (r.dataset, r.preset, r.flags['nb_classes'], r.flags['distill_alpha']) == ('k710', 'base', 710, 1.)
    with pytest.raises(ValueError, match='pass --teacher'):
        apply_recipe(FinetuneConfig(recipe=r.name), given={'recipe'}, world=1, log=lambda *a: None)
    s = apply_recipe(FinetuneConfig(recipe=r.name, teacher='g.pth'), given={'recipe', 'teacher'}, world=1,
                     log=lambda *a: None)
    assert (s.preset, s.dataset_kind, s.distill_temperature) == ('base', 'k710', 1.)
    text = format_recipe(r)
    assert '--teacher TEACHER_CHECKPOINT' in text and 'not stated' in text.lower() and '86.6' in text
    assert 'K400 83.7' in get_recipe('videomaev2_k710_s_dl_from_g').result

def test_the_benchmark_times_a_distillation_step_with_its_flop_model():
    from videomae_nb.bench import make_step, _forward_flops
    from videomae_nb.data import as_model_input
    b = make_step('distill', preset='tiny', frames=4, size=32, batch=2)
    assert torch.isfinite(b.step()) and b.name == 'distill'
    torch.manual_seed(0)
    x = as_model_input(torch.randint(0, 256, (2, 3, 4, 32, 32), dtype=torch.uint8))
    s, t = VideoClassifier(get_config('tiny'), 400), VideoClassifier(get_config('tiny'), 400)
    assert b.flops == 3 * _forward_flops(lambda: s(x)) + _forward_flops(lambda: t(x))
