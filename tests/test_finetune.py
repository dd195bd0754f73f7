"Fine-tuning (issue 7): layer decay, clip-wide mixup/CutMix, multi-view evaluation, transformers parity, the script."
import csv, json, math, os, shutil, subprocess, sys, time
from pathlib import Path
import numpy as np
import pytest, torch
from safetensors.torch import load_file
from videomae_nb.encoder import get_config
from videomae_nb.data import open_video, clip_transform, as_model_input, read_list_file
from videomae_nb.datasets import make_motion_videos, motion_clip, write_video, build_lists, MultiViewDataset
from videomae_nb.classifier import VideoClassifier
from videomae_nb.finetune import (layer_id, layer_decay_groups, make_finetune_optimizer, MixSpec, mix_clips, cutmix_box,
                                  soft_targets, evaluate, merge_views, gather_predictions, topk_accuracy, main)
from videomae_nb.runs import read_metrics, read_csv, list_checkpoints

ROOT = Path(__file__).resolve().parents[1]

@pytest.fixture(scope='module')
def lists(tmp_path_factory):
    d = tmp_path_factory.mktemp('ft')
    make_motion_videos(d/'videos', n_per_class=4, frames=16, size=64, seed=2)
    build_lists(d/'videos', d/'lists', val_fraction=0.25)
    return d/'lists'

# --- layer-wise lr decay ----------------------------------------------------------------------------------------------

def test_layer_decay_scales_equal_the_formula():
    with torch.device('meta'): model = VideoClassifier('base', num_classes=400)
    depth, decay = 12, 0.75
    groups = layer_decay_groups(model, weight_decay=0.05, layer_decay=decay)
    name = {id(p): n for n, p in model.named_parameters()}
    def official_id(n):                                        # REFERENCE §8 / BEiT's get_num_layer_for_vit
        if n in ('cls_token', 'mask_token', 'pos_embed') or n.startswith('patch_embed'): return 0
        if n.startswith('blocks'): return int(n.split('.')[1]) + 1
        return depth + 1
    seen = 0
    for g in groups:
        for p in g['params']:
            n = name[id(p)]; seen += 1
            assert g['lr_scale'] == pytest.approx(decay ** (depth + 1 - official_id(n))), n
            assert g['weight_decay'] == (0. if p.ndim <= 1 or n.endswith('.bias') else 0.05), n
    assert seen == len(name)
    scales = {name[id(g['params'][0])].split('.')[0] + ('' if not name[id(g['params'][0])].startswith('blocks') else name[id(g['params'][0])].split('.')[1]): g['lr_scale'] for g in groups}
    assert scales['patch_embed'] == pytest.approx(0.75 ** 13) and scales['head'] == 1. and scales['blocks11'] == pytest.approx(0.75)
    # what the optimizer runs with, after the loop multiplies the scheduled lr into each group
    opt = make_finetune_optimizer(VideoClassifier(get_config('tiny', depth=3), 5), lr=1e-3, layer_decay=0.5)
    for g in opt.param_groups: g['lr'] = 2e-3 * g['lr_scale']
    assert sorted({g['lr'] for g in opt.param_groups}) == pytest.approx(sorted(2e-3 * 0.5 ** k for k in range(5)))
    assert opt.defaults['betas'] == (0.9, 0.999)

# --- mixup / cutmix ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('seed', range(6))
def test_cutmix_box_is_shared_by_every_frame(seed):
    B, C, T, H, W = 6, 3, 8, 24, 40
    x = torch.randn(B, C, T, H, W)
    spec = MixSpec(mixup=0., cutmix=1., smoothing=0.1, num_classes=7)
    y = torch.randint(7, (B,))
    xm, t = spec(x.clone(), y, torch.Generator().manual_seed(seed))
    changed = (xm != x)
    box = changed[0, 0, 0]
    if not box.any(): return                                   # λ = 1 exactly: nothing pasted
    for b in range(B // 2):                                     # pairs (b, B-1-b) swap the same box, in every channel and frame
        assert (changed[b] == box).all() and (changed[B - 1 - b] == box).all()
    assert torch.equal(xm[changed], x.flip(0)[changed])
    rows, cols = box.any(1).nonzero().flatten(), box.any(0).nonzero().flatten()
    assert box.sum() == len(rows) * len(cols)                   # a rectangle
    lam = 1 - box.float().mean().item()
    torch.testing.assert_close(t, soft_targets(y, 7, lam, 0.1))

def test_mixing_equals_timm_on_the_channel_time_view():
    from timm.data.mixup import Mixup, rand_bbox
    B, C, T, H, W = 4, 3, 4, 16, 16
    x, y = torch.randn(B, C, T, H, W), torch.tensor([0, 1, 2, 3])
    for cut, seed in ((True, 1), (True, 2), (False, 3)):
        mx = Mixup(mixup_alpha=0. if cut else 0.8, cutmix_alpha=1. if cut else 0., label_smoothing=0.1, num_classes=4)
        np.random.seed(seed); lam, _ = mx._params_per_batch(); box = rand_bbox((H, W), lam) if cut else None
        np.random.seed(seed); xt, tt = mx(x.clone().view(B, C * T, H, W), y)
        xo, to = mix_clips(x, y, 4, lam, tuple(int(v) for v in box) if cut else None, 0.1)
        torch.testing.assert_close(xo.view(B, C * T, H, W), xt); torch.testing.assert_close(to, tt)

def test_mixspec_switches_and_reproduces():
    spec = MixSpec(mixup=0.8, cutmix=1.0, switch_prob=0.5, num_classes=3)
    draws = [spec.sample(torch.Generator().manual_seed(s)) for s in range(200)]
    cut = sum(c for _, c in draws)
    assert 60 < cut < 140 and all(0 <= l <= 1 for l, _ in draws)
    assert spec.sample(torch.Generator().manual_seed(5)) == spec.sample(torch.Generator().manual_seed(5))
    assert MixSpec(0., 0.).sample() == (1., False)
    assert all(0 <= v for v in cutmix_box(10, 10, 0.3, torch.Generator().manual_seed(0)))

# --- multi-view evaluation -----------------------------------------------------------------------------------------------

def _by_hand(model, path, T, stride, S, clips, crops, sampling):
    "REFERENCE §8 recomputed from scratch: indices, short-side crops, one view at a time, softmax, mean."
    vr = open_video(path); n = len(vr)
    if sampling == 'dense':
        idx = list(range(0, n, stride)); idx += [idx[-1]] * max(0, T - len(idx))
        starts = [int(i * max((len(idx) - T) / (clips - 1), 0)) for i in range(clips)]
        clip_idx = [idx[s:s + T] for s in starts]
    else:
        tick = n / T
        both = sorted([int(tick / 2 + tick * x) for x in range(T)] + [int(tick * x) for x in range(T)])
        clip_idx = [both[c::2] for c in range(clips)]
    probs = []
    for ci in clip_idx:
        fr = vr.get_batch(ci); H, W = fr.shape[1:3]; side, long = min(H, W), max(H, W)
        for k in range(crops):
            o = int(k * (long - side) / (crops - 1))
            box = (o, 0, side, side) if H > W else (0, o, side, side)
            with torch.no_grad(): probs.append(model(as_model_input(clip_transform(fr, S, box, normalize=False)[None]))[0].softmax(-1))
    return torch.stack(probs).mean(0)

@pytest.mark.parametrize('sampling, clips', [('dense', 5), ('tsn', 2)])
def test_multiview_evaluation_equals_direct_recomputation(tmp_path, sampling, clips):
    rng = np.random.default_rng(0)
    entries = [(write_video(tmp_path/f'v{i}.mp4', motion_clip(i % 4, 40 + 8 * i, (64, 96) if i % 2 else (96, 64), rng)), i % 4) for i in range(5)]
    torch.manual_seed(0)
    model = VideoClassifier(get_config('tiny', depth=2), num_classes=4, init_scale=1.).eval()
    ds = MultiViewDataset(entries, num_frames=8, stride=3, sampling=sampling, size=32, num_clips=clips, num_crops=3)
    res = evaluate(model, ds, batch_size=2, num_workers=0)
    want = torch.stack([_by_hand(model, p, 8, 3, 32, clips, 3, sampling) for p, _ in entries])
    torch.testing.assert_close(res['probs'], want, atol=1e-5, rtol=1e-4)
    labels = torch.tensor([l for _, l in entries])
    assert res['acc1'] == pytest.approx(topk_accuracy(want, labels)['acc1']) and res['videos'] == 5 and res['views'] == 3 * clips
    assert res['index'].tolist() == list(range(5)) and res['labels'].tolist() == labels.tolist()

def test_gathering_drops_padding_duplicates():
    "Two processes: rank 1's shard is padded with video 0 again and lost video 3 (unreadable); every other video once, in order."
    shards = [dict(index=torch.tensor([0, 2, 4]), probs=torch.eye(5)[[0, 2, 4]], label=torch.tensor([0, 2, 4])),
              dict(index=torch.tensor([1, 0]), probs=torch.eye(5)[[1, 0]], label=torch.tensor([1, 0]))]
    class Two:
        "What an Accelerator of 2 processes does, seen from rank 0: pad to 3 rows, gather = rank 0's rows, then rank 1's."
        num_processes, calls = 2, 0
        def pad_across_processes(self, t, dim=0, pad_index=0): return torch.cat([t, t.new_full((3 - len(t), *t.shape[1:]), pad_index)])
        def gather(self, t):
            k = ('index', 'probs', 'label')[self.calls]; self.calls += 1
            return torch.cat([t, self.pad_across_processes(shards[1][k], pad_index=0 if k == 'probs' else -1)])
    i, p, l = gather_predictions(Two(), shards[0]['index'], shards[0]['probs'], shards[0]['label'])
    assert i.tolist() == [0, 1, 2, 4] and l.tolist() == [0, 1, 2, 4] and torch.equal(p, torch.eye(5)[[0, 1, 2, 4]])
    ids, pr = merge_views(torch.tensor([3, 3, 3]), torch.tensor([[1., 0], [1., 0], [0, 1.]]), torch.tensor([0, 0, 1]))   # view 0 twice
    torch.testing.assert_close(pr, (torch.tensor([1., 0]).softmax(0) + torch.tensor([0, 1.]).softmax(0))[None] / 2)

DIST = r'''
import sys, torch, json
from accelerate import Accelerator
from videomae_nb.encoder import get_config
from videomae_nb.data import read_list_file
from videomae_nb.datasets import MultiViewDataset
from videomae_nb.classifier import VideoClassifier
from videomae_nb.finetune import evaluate
acc = Accelerator(cpu=True)
torch.manual_seed(0)
model = VideoClassifier(get_config('tiny', depth=1), num_classes=4, init_scale=1.).eval()
ds = MultiViewDataset(read_list_file(sys.argv[1]), 4, 4, size=32, num_clips=2, num_crops=1)
r = evaluate(model, ds, acc, batch_size=2, num_workers=0)
if acc.is_main_process: print('RESULT', json.dumps(dict(index=r['index'].tolist(), probs=r['probs'].tolist(), acc1=r['acc1'], videos=r['videos'])))
acc.end_training()
'''

def test_distributed_evaluation_counts_every_video_once(tmp_path, lists):
    "Two real processes (gloo on the CPU) give the one-process result: 5 videos over 2 ranks, padding dropped."
    (tmp_path/'list.csv').write_text(''.join(f'{p} {l}\n' for p, l in read_list_file(lists/'train.csv')[:5]))
    (tmp_path/'dist.py').write_text(DIST)
    env = {**os.environ, 'PYTHONPATH': str(ROOT), 'OMP_NUM_THREADS': '1'}
    one = subprocess.run([sys.executable, str(tmp_path/'dist.py'), str(tmp_path/'list.csv')], capture_output=True, text=True, env=env, timeout=300)
    two = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
                          str(tmp_path/'dist.py'), str(tmp_path/'list.csv')], capture_output=True, text=True, env=env, timeout=300)
    assert one.returncode == 0 and two.returncode == 0, (one.stderr[-1500:], two.stderr[-1500:])
    a = json.loads(one.stdout.split('RESULT ')[1]); b = json.loads(two.stdout.split('RESULT ')[1])
    assert a['index'] == b['index'] == [0, 1, 2, 3, 4] and a['videos'] == b['videos'] == 5
    np.testing.assert_allclose(a['probs'], b['probs'], atol=1e-5)

# --- transformers ----------------------------------------------------------------------------------------------------------

def test_official_finetuned_state_dict_matches_transformers(tmp_path):
    "An official-format fine-tuned checkpoint (DeepSpeed `module` container) loaded into VideoClassifier = VideoMAEForVideoClassification."
    transformers = pytest.importorskip('transformers')
    from videomae_nb.checkpoints import load_weights, official_to_hf, hf_config, match_hf_eps
    cfg = get_config('small')
    torch.manual_seed(0)
    src = VideoClassifier(cfg, num_classes=10, init_scale=1.)
    with torch.no_grad():
        for p in src.parameters(): p.add_(torch.randn_like(p) * 0.02)          # no zero biases
    sd = src.state_dict()
    assert sorted({k.split('.')[0] for k in sd}) == ['blocks', 'fc_norm', 'head', 'patch_embed']
    torch.save({'module': sd}, tmp_path/'mp_rank_00_model_states.pt')
    ours = VideoClassifier(cfg, num_classes=10)
    load_weights(ours, tmp_path/'mp_rank_00_model_states.pt', verbose=False)
    hcfg = hf_config(cfg, img_size=112, num_frames=16, pretrain=False, num_labels=10)
    hcfg._attn_implementation = 'eager'                                       # set before building (HF_INTEROP §4.3)
    hf = transformers.VideoMAEForVideoClassification(hcfg)
    hf.load_state_dict(official_to_hf(sd), strict=True)
    match_hf_eps(hf)                                                          # fc_norm eps 1e-5 → 1e-6
    video = torch.randn(2, 3, 16, 112, 112, generator=torch.Generator().manual_seed(1))
    with torch.no_grad(): a, b = ours.eval()(video), hf.eval()(pixel_values=video.transpose(1, 2)).logits
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert a.abs().max() > 0.1

# --- the script ----------------------------------------------------------------------------------------------------------

FAST = dict(preset='tiny', frames=4, stride=4, size=32, batch_size=4, num_sample=2, epochs=2, warmup_steps=1, num_workers=0,
            test_num_segment=2, test_num_crop=2, no_flip=True, quiet=True)

def test_run_folder_validation_and_test(tmp_path, lists):
    res = main(data_path=str(lists), out=str(tmp_path/'run'), eval_every=2, **FAST)
    run = Path(res['run_dir'])
    assert {p.name for p in run.iterdir()} == {'checkpoints', 'config.json', 'metrics.csv', 'val.csv', 'curves.png', 'test.json',
                                              'predictions.csv', 'classes.txt'}   # classes.txt: issue 18
    assert res['steps'] == 6 and [int(r['step']) for r in read_metrics(run)] == list(range(6))      # 12 videos / 4 per step, 2 epochs
    assert [int(r['step']) for r in read_csv(run/'val.csv')] == [1, 3, 5]
    t = json.loads((run/'test.json').read_text())
    assert (t['videos'], t['views'], t['clips'], t['crops']) == (4, 4, 2, 2)
    rows = list(csv.DictReader(open(run/'predictions.csv')))
    assert len(rows) == 4 and {r['label'] for r in rows} <= {'down', 'left', 'right', 'up'}
    cfg = json.loads((run/'config.json').read_text())['settings']
    assert (cfg['sampling'], cfg['flip'], cfg['nb_classes'], cfg['randaug']) == ('dense', False, 4, 'rand-m7-n4-mstd0.5-inc1')
    # --eval on the run folder gives the same test
    ev = main(eval=True, pretrained=str(run), data_path=str(lists), test_num_segment=2, test_num_crop=2, num_workers=0, out=str(tmp_path/'ev'), quiet=True)
    assert ev['test']['acc1'] == t['acc1'] and ev['test']['videos'] == 4

def test_resume_continues_the_same_run(tmp_path, lists):
    kw = dict(FAST, data_path=str(lists), steps=6, save_every=3, keep=5, drop_path=0.1, reprob=0.5, eval_every=100, no_test=True)
    full = main(out=str(tmp_path/'full'), **kw)
    part = tmp_path/'part'; (part/'checkpoints').mkdir(parents=True)
    shutil.copytree(Path(full['run_dir'])/'checkpoints'/'checkpoint-0000003', part/'checkpoints'/'checkpoint-0000003')
    main(out=str(part), resume='auto', **kw)
    a = load_file(str(Path(full['run_dir'])/'checkpoints'/'checkpoint-0000006'/'model.safetensors'))
    b = load_file(str(part/'checkpoints'/'checkpoint-0000006'/'model.safetensors'))
    for k in a: torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=lambda m: f'{k}: {m}')
    assert [r['loss'] for r in read_metrics(full['run_dir'])][3:] == pytest.approx([r['loss'] for r in read_metrics(part)], abs=1e-6)

def test_starts_from_a_pretraining_run(tmp_path, lists, capsys):
    from videomae_nb.train import main as pretrain
    pre = pretrain(data=str(lists/'train.csv'), frames=4, size=32, batch_size=2, steps=2, num_workers=0, quiet=True, out=str(tmp_path/'pre'))
    res = main(data_path=str(lists), pretrained=pre['run_dir'], out=str(tmp_path/'ft'), steps=2, no_test=True, **{k: v for k, v in FAST.items() if k not in ('preset', 'epochs')})
    out = capsys.readouterr().out
    sd = load_file(str(list_checkpoints(pre['run_dir'])[-1]/'model.safetensors'))
    n_encoder = sum(k.startswith('encoder.') and not k.startswith('encoder.norm.') for k in sd)
    assert f'weights: {n_encoder} tensors from' in out and 'encoder of --pretrained' in out and res['steps'] == 2
    model = json.loads((tmp_path/'ft'/'config.json').read_text())['model']
    assert (model['dim'], model['depth'], model['drop_path']) == (192, 6, 0.1)      # shapes from the checkpoint, drop path of the run

def test_class_folder_data_path_and_ssv2_kind(tmp_path, lists):
    kw = {k: v for k, v in FAST.items() if k not in ('epochs', 'no_flip', 'test_num_segment')}
    res = main(data_path=str(lists.parent/'videos'), dataset_kind='ssv2', out=str(tmp_path/'r'), steps=1, **kw)
    assert (Path(res['run_dir'])/'lists'/'classes.txt').read_text().split() == ['down', 'left', 'right', 'up']
    s = json.loads((tmp_path/'r'/'config.json').read_text())['settings']
    assert (s['sampling'], s['flip'], s['test_num_segment']) == ('tsn', False, 2) and res['test']['views'] == 2 * FAST['test_num_crop']

@pytest.mark.parametrize('bad, msg', [(dict(frames=5), '--frames 5'), (dict(size=40), '--size 40'), (dict(dataset_kind='k700'), 'k700'),
                                      (dict(layer_decay=1.5), 'layer_decay'), (dict(randaug='rand-m9'), 'inc1'),
                                      (dict(sampling='uniform'), 'dense or tsn'), (dict(data_path='no/such'), 'no/such'),
                                      (dict(eval=True, data_path=None), 'fine-tuned weights'), (dict(mixed_precision='fp8'), 'fp8')])
def test_bad_settings_fail_before_work(tmp_path, lists, bad, msg):
    kw = {**FAST, 'data_path': str(lists), 'out': str(tmp_path/'x'), **bad}
    with pytest.raises((ValueError, FileNotFoundError), match=msg): main(**kw)
    assert not (tmp_path/'x').exists()

def test_labels_outside_the_classes_are_refused(tmp_path, lists):
    (tmp_path/'train.csv').write_text(''.join(f'{p} {l}\n' for p, l in read_list_file(lists/'train.csv')) + f'{read_list_file(lists/"train.csv")[0][0]} 7\n')
    with pytest.raises(ValueError, match='outside'): main(train_list=str(tmp_path/'train.csv'), nb_classes=4, out=str(tmp_path/'x'), **FAST)

def test_script_entry_points(tmp_path, lists):
    r = subprocess.run([sys.executable, 'videomae_nb/finetune.py', '--help'], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and '--layer_decay' in r.stdout, r.stderr[-1500:]          # runs as a file (accelerate launch)
    r = subprocess.run([sys.executable, '-c', 'from videomae_nb.finetune import cli; cli()', '--data_path', str(lists), '--steps', '1', '--warmup_steps', '0',
                        '--frames', '4', '--size', '32', '--batch_size', '2', '--num_workers', '0', '--no_test', '--quiet', '--out', str(tmp_path/'s')],
                       cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, 'PYTHONPATH': str(ROOT)})
    assert r.returncode == 0, r.stderr[-2000:]                  # the console script exits 0
    assert 'effective batch: 2 videos' in r.stdout and 'layer decay 0.75' in r.stdout

@pytest.mark.slow
def test_finetuning_learns_motion_direction_on_the_cpu(tmp_path):
    "The tiny model from scratch on 800 labelled synthetic clips (4 directions of motion): >= 90% validation top-1 in < 5 minutes."
    t0 = time.perf_counter()
    make_motion_videos(tmp_path/'videos', n_per_class=250, frames=16, size=64, seed=11)
    build_lists(tmp_path/'videos', tmp_path/'lists', val_fraction=0.2)                 # 800 training, 200 validation videos
    threads = torch.get_num_threads()
    torch.set_num_threads(1)                    # one thread for the model, one worker decoding: no oversubscription on 2 cores
    try:
        res = main(data_path=str(tmp_path/'lists'), preset='tiny', frames=4, stride=4, size=64, batch_size=16, num_sample=1,
                   steps=200, warmup_steps=10, blr=0.008, layer_decay=1.0, init_scale=1.0, drop_path=0., smoothing=0.1,
                   mixup=0., cutmix=0., randaug='none', reprob=0., crop_scale=1.0, no_flip=True,    # a from-scratch run: no heavy augmentation
                   eval_every=100, no_test=True, num_workers=1, out=str(tmp_path/'run'), quiet=True)
    finally: torch.set_num_threads(threads)
    seconds = time.perf_counter() - t0
    val = read_csv(tmp_path/'run'/'val.csv')
    print(f"validation top-1 {[round(r['acc1'], 1) for r in val]} at steps {[int(r['step']) + 1 for r in val]}, {seconds:.0f}s in all")
    assert res['val']['videos'] == 200 and res['val']['acc1'] >= 90, val
    assert seconds < 300

@pytest.mark.slow
def test_two_processes_train_test_and_resume_exactly(tmp_path, lists):
    "torchrun with 2 CPU processes: one run folder, every test video once, and a resume from step 3 equal to the full run."
    env = {**os.environ, 'PYTHONPATH': str(ROOT), 'OMP_NUM_THREADS': '1'}
    args = ['videomae_nb/finetune.py', '--cpu', '--data_path', str(lists), '--frames', '4', '--stride', '4', '--size', '32', '--batch_size', '2',
            '--steps', '6', '--warmup_steps', '1', '--save_every', '3', '--keep', '5', '--eval_every', '3', '--test_num_crop', '1', '--num_workers', '0', '--quiet']
    run = lambda *extra: subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
                                               *args, *extra], cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    full = run('--out', str(tmp_path/'full'))
    assert full.returncode == 0, full.stderr[-2000:]
    assert '2 process(es)' in full.stdout and json.loads((tmp_path/'full'/'test.json').read_text())['videos'] == 4
    assert len(list(csv.DictReader(open(tmp_path/'full'/'predictions.csv')))) == 4
    (tmp_path/'part'/'checkpoints').mkdir(parents=True)
    shutil.copytree(tmp_path/'full'/'checkpoints'/'checkpoint-0000003', tmp_path/'part'/'checkpoints'/'checkpoint-0000003')
    part = run('--out', str(tmp_path/'part'), '--resume', 'auto', '--no_test')
    assert part.returncode == 0 and 'resuming from step 3' in part.stdout, part.stderr[-2000:]
    a = load_file(str(tmp_path/'full'/'checkpoints'/'checkpoint-0000006'/'model.safetensors'))
    b = load_file(str(tmp_path/'part'/'checkpoints'/'checkpoint-0000006'/'model.safetensors'))
    for k in a: torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=lambda m: f'{k}: {m}')

def test_eval_of_a_checkpoint_with_more_classes_than_the_list_names(tmp_path, lists):
    "A 400-class checkpoint tested on a list with 4 named classes: predictions outside them are written as numbers."
    torch.save({'module': VideoClassifier(get_config('tiny'), 400).state_dict()}, tmp_path/'ft.pth')
    res = main(eval=True, pretrained=str(tmp_path/'ft.pth'), data_path=str(lists), frames=8, size=64, test_num_segment=1, test_num_crop=1,
               num_workers=0, out=str(tmp_path/'ev'), quiet=True)
    rows = list(csv.DictReader(open(Path(res['run_dir'])/'predictions.csv')))
    assert rows and all(r['label'] in ('down', 'left', 'right', 'up') for r in rows)
    assert all(r['pred'].isdigit() or r['pred'] in ('down', 'left', 'right', 'up') for r in rows)
