"""Action detection (issue 20): frame-mAP against hand-worked cases and a second computation, the head against a
direct one, AVA's file formats, the synthetic AVA learned well above chance, exact resume, one process against two,
the refusals."""
import csv, os, pickle, shutil, subprocess, sys
from pathlib import Path
import numpy as np
import pytest, torch
from torchvision.ops import roi_align
from safetensors.torch import load_file
from videomae_nb.encoder import get_config
from videomae_nb.videomae import VideoMAE
from videomae_nb.detect import (ActionHead, ActionDetector, frame_ap, voc_ap, box_iou, read_ava_csv, read_labelmap,
                                read_proposals, read_exclusions, write_ava_csv, evaluate_files, people, crop_boxes,
                                training_boxes, make_ava_like, chance_map, load_backbone, detection_loss,
                                keyframe_clip, keyframe_index, SYNTHETIC_CLASSES, main)
from videomae_nb.runs import read_metrics

ROOT = Path(__file__).resolve().parents[1]
A, B = (0.1, 0.1, 0.4, 0.9), (0.6, 0.1, 0.9, 0.9)
GT = {('v', 902): [(A, 12, 0), (B, 12, 1), (A, 79, 0)]}

def _ap(det, gt=GT, classes=(12, 79), **kw): return frame_ap(gt, det, list(classes), **kw)

# ---------------------------------------------------------------- frame-mAP, hand-worked
def test_map_perfect_detections_score_one():
    r = _ap({('v', 902): [(A, 12, .9), (B, 12, .8), (A, 79, .7)]})
    assert r['mAP'] == 1. and r['ap'] == {12: 1., 79: 1.}

def test_map_duplicate_missed_and_low_iou_by_hand():
    near_A = (0.12, 0.1, 0.42, 0.9)                     # IoU 0.875 with A, whose match is taken: a duplicate
    assert _ap({('v', 902): [(A, 12, .9), (near_A, 12, .8), (B, 12, .7)]})['ap'][12] == pytest.approx(5 / 6)
    assert _ap({('v', 902): [(A, 12, .9)]})['ap'][12] == pytest.approx(1 / 2)                     # B missed
    low = (0.1, 0.1, 0.2, 0.9)                                                                     # IoU 1/3 with A
    assert box_iou(low, A)[0, 0] == pytest.approx(1 / 3)
    assert _ap({('v', 902): [(low, 12, .9), (B, 12, .8)]})['ap'][12] == pytest.approx(1 / 4)
    # the higher-scoring of the two on A takes it, whichever box it is: TP, FP, TP again
    assert _ap({('v', 902): [(near_A, 12, .95), (A, 12, .9), (B, 12, .7)]})['ap'][12] == pytest.approx(5 / 6)

def test_map_leaves_out_a_class_without_ground_truth_and_counts_stray_keyframes():
    r = frame_ap({('v', 902): [(A, 12, 0)]}, {('v', 902): [(A, 12, .9), (A, 79, .99)], ('w', 905): [(B, 12, .95)]},
                 [12, 79])
    assert list(r['ap']) == [12] and r['mAP'] == pytest.approx(1 / 2)      # the stray FP at 0.95 ranks first
    assert r['gt'] == {12: 1, 79: 0} and r['detections'] == {12: 2, 79: 1}

def test_map_matches_the_best_box_only_as_the_official_code():
    "A detection whose best box is taken is a false positive even if another box it overlaps >= 0.5 is free."
    C = (0.1, 0.1, 0.4, 0.8)                             # IoU(A, C) = 0.875
    gt = {('v', 902): [(A, 12, 0), (C, 12, 1)]}
    between = (0.1, 0.1, 0.4, 0.88)                      # IoU 0.975 with A, 0.897 with C
    r = frame_ap(gt, {('v', 902): [(A, 12, .9), (between, 12, .8)]}, [12])
    assert r['ap'][12] == pytest.approx(1 / 2)

def test_map_excluded_keyframes_and_the_50_cap(tmp_path):
    assert _ap({('v', 902): [(A, 12, .9)]}, excluded={('v', 902)})['ap'] == {}
    def rows(tp_score):   # 50 false boxes at 0.5-0.6, the true box at tp_score
        far = [((0.0, 0.0, 0.05, 0.05), 12, 0.5 + i / 500) for i in range(50)]
        return far + [(A, 12, tp_score)]
    gt = {('v', 902): [(A, 12, 0)]}
    def ap_of(det_rows):
        write_ava_csv(tmp_path/'gt.csv', [('v', 902, A, 12, 1.)])
        write_ava_csv(tmp_path/'det.csv', [('v', 902, *r) for r in det_rows])
        return evaluate_files(tmp_path/'gt.csv', tmp_path/'det.csv', _labelmap(tmp_path, {12: 'stand'}))['ap'][12]
    assert ap_of(rows(0.99)) == pytest.approx(1.)                  # ranked first: kept, AP 1
    assert ap_of(rows(0.40)) == 0.                                 # the 51st: cut off by the cap → never found
    assert frame_ap(gt, {('v', 902): rows(0.40)}, [12])['ap'][12] == pytest.approx(1 / 51)   # without the cap

def _labelmap(d:Path, names:dict) -> Path:
    p = d/'labels.pbtxt'
    p.write_text(''.join(f'item {{\n  name: "{n}"\n  id: {i}\n}}\n' for i, n in names.items()))
    return p

# ---------------------------------------------------------------- frame-mAP, a second computation on random cases
def _reference_map(gt, det, classes, thr=0.5):
    """The same definition written another way: all detections of a class in one global score order (within a
    keyframe it is the same order), AP as (1/n_gt) x the sum over true positives of the best precision at or after."""
    aps = {}
    for c in classes:
        n_gt = sum(a == c for rows in gt.values() for _, a, _ in rows)
        if not n_gt: continue
        dets = sorted([(s, k, b) for k, rows in det.items() for b, a, s in rows if a == c], key=lambda r: -r[0])
        taken, tp = set(), []
        for s, k, b in dets:
            boxes = [g for g, a, _ in gt.get(k, []) if a == c]
            if not boxes: tp.append(False); continue
            ious = [float(box_iou(b, g)[0, 0]) for g in boxes]
            j = int(np.argmax(ious))
            ok = ious[j] >= thr and (k, j) not in taken
            if ok: taken.add((k, j))
            tp.append(ok)
        prec = [sum(tp[:i + 1]) / (i + 1) for i in range(len(tp))]
        aps[c] = sum(max(prec[i:]) for i in range(len(tp)) if tp[i]) / n_gt
    return aps

@pytest.mark.parametrize('seed', range(6))
def test_map_equals_a_direct_recomputation_on_random_cases(seed, tmp_path):
    rng = np.random.default_rng(seed)
    classes, gt, det = [3, 12, 17], {}, {}
    for f in range(6):
        k = ('vid', 902 + f)
        corners = rng.uniform(0, .6, (3, 2))
        boxes = [(x, y, x + rng.uniform(.1, .4), y + rng.uniform(.1, .4)) for x, y in corners]
        gt[k] = [(b, int(c), p) for p, b in enumerate(boxes) for c in rng.choice(classes, rng.integers(1, 3), False)]
        det[k] = [(tuple(np.clip(np.array(b) + rng.normal(0, .05, 4), 0, 1)), int(c), float(rng.random()))
                  for b in boxes for c in classes] + [((.0, .0, .3, .3), 17, float(rng.random()))]
    if seed == 0: gt[('vid', 950)] = [((.2, .2, .5, .5), 3, 0)]              # a keyframe nobody detected on
    r = frame_ap(gt, det, classes)
    ref = _reference_map(gt, det, classes)
    assert set(r['ap']) == set(ref) and all(r['ap'][c] == pytest.approx(ref[c], abs=1e-12) for c in ref)
    # and through AVA's files: the same numbers from the CSVs (boxes written with 3 decimals both sides)
    write_ava_csv(tmp_path/'gt.csv', [(*k, b, a, 1.) for k, rows in gt.items() for b, a, _ in rows])
    write_ava_csv(tmp_path/'det.csv', [(*k, b, a, s) for k, rows in det.items() for b, a, s in rows])
    rd = lambda p, cap: {k: [(b, a, s) for b, a, s in v] for k, v in read_ava_csv(p, classes, cap).items()}
    gt3 = {k: [(b, a, 0) for b, a, _ in v] for k, v in read_ava_csv(tmp_path/'gt.csv', classes).items()}
    fr = evaluate_files(tmp_path/'gt.csv', tmp_path/'det.csv', _labelmap(tmp_path, {c: str(c) for c in classes}))
    assert fr['mAP'] == pytest.approx(np.mean(list(_reference_map(gt3, rd(tmp_path/'det.csv', 50), classes).values())))

def test_voc_ap_of_a_precision_recall_curve():
    assert voc_ap(np.array([.9, .8, .7]), np.array([1, 0, 1]), 2) == pytest.approx(1 / 2 + 1 / 2 * 2 / 3)
    assert voc_ap(np.array([]), np.array([], bool), 3) == 0.

# ---------------------------------------------------------------- files
def test_label_maps_csvs_and_proposals_read_as_ava_writes_them(tmp_path):
    p = tmp_path/'a.pbtxt'
    p.write_text('label {\n  name: "walk"\n  label_id: 14\n  label_type: PERSON_MOVEMENT\n}\n'
                 'label {\n  name: "stand"\n  label_id: 12\n  label_type: PERSON_MOVEMENT\n}\n')
    assert read_labelmap(p) == {12: 'stand', 14: 'walk'}
    (tmp_path/'bad.pbtxt').write_text('nothing here')
    with pytest.raises(ValueError, match='no label map entries'): read_labelmap(tmp_path/'bad.pbtxt')
    (tmp_path/'gt.csv').write_text('vid1,0902,0.1,0.2,0.4,0.9,12,0\nvid1,0902,0.1,0.2,0.4,0.9,79,0\n'
                                   'vid1,902,0.5,0.1,0.8,0.9,11,1\n')
    rows = read_ava_csv(tmp_path/'gt.csv')
    assert list(rows) == [('vid1', 902)] and len(rows[('vid1', 902)]) == 3
    boxes, labels = people(rows[('vid1', 902)], [11, 12, 79])
    assert boxes.shape == (2, 4) and labels.tolist() == [[0, 1, 1], [1, 0, 0]]
    (tmp_path/'bad.csv').write_text('vid1,0902,0.1,x,0.4,0.9,12,0\n')
    with pytest.raises(ValueError, match=r"line 1: second, box and action must be numbers"):
        read_ava_csv(tmp_path/'bad.csv')
    props = {'vid1,0902': np.array([[.1, .2, .4, .9, .95], [.5, .1, .8, .9, .5]])}
    with open(tmp_path/'p.pkl', 'wb') as f: pickle.dump(props, f)
    (tmp_path/'p.csv').write_text('vid1,0902,0.1,0.2,0.4,0.9,0.95\nvid1,0902,0.5,0.1,0.8,0.9,0.5\n')
    for f in ('p.pkl', 'p.csv'):
        got = read_proposals(tmp_path/f, threshold=0.8)
        assert list(got) == [('vid1', 902)] and got[('vid1', 902)].tolist() == [[.1, .2, .4, .9, .95]]
    (tmp_path/'ex.csv').write_text('vid1,0902\nvid2,0905\n')
    assert read_exclusions(tmp_path/'ex.csv') == {('vid1', 902), ('vid2', 905)}

def test_training_boxes_label_proposals_by_iou():
    rows = [(A, 12, 0), (A, 79, 0), (B, 11, 1)]
    props = np.array([[*A, .99], [0.12, 0.1, 0.42, 0.9, .9], [0, 0, .05, .05, .9]])   # IoU 1, 0.875, 0
    boxes, labels = training_boxes(rows, props, [11, 12, 79], iou=0.85)
    assert len(boxes) == 5 and labels.tolist() == [[0, 1, 1], [1, 0, 0], [0, 1, 1], [0, 1, 1], [0, 0, 0]]
    assert training_boxes(rows, props, [11, 12, 79], iou=0.9)[1][3].tolist() == [0, 0, 0]

def test_keyframe_clip_and_crop_boxes():
    assert keyframe_index(902) == 60 and keyframe_clip(60, 1000).tolist() == list(range(28, 92, 4))
    assert keyframe_clip(2, 10, 4, 4).tolist() == [0, 0, 2, 6]
    b = np.array([[.1, .2, .5, .9], [.6, .0, .9, .3]])
    assert np.allclose(crop_boxes(b, (0, 0, 1, 1), False)[0], b)
    flipped, _ = crop_boxes(b, (0, 0, 1, 1), True)
    assert np.allclose(crop_boxes(flipped, (0, 0, 1, 1), True)[0], b)
    kept_boxes, kept = crop_boxes(b, (0., .5, 1., 1.), False)          # the second box is outside: dropped
    assert kept.tolist() == [True, False] and np.allclose(kept_boxes, [[.1, 0., .5, .8]])

# ---------------------------------------------------------------- the model
def test_head_equals_a_direct_computation():
    torch.manual_seed(0)
    head = ActionHead(dim=16, num_classes=5, hidden=32, roi_size=7, stride=8).eval()
    fmap = torch.randn(3, 16, 4, 6, 8)
    xy = torch.rand(10, 2) * torch.tensor([48., 40.])
    wh = torch.rand(10, 2) * 24 + 4
    rois = torch.cat([torch.randint(0, 3, (10, 1)).float(), xy, xy + wh], 1)
    out = head(fmap, rois)
    for k, (b, *box) in enumerate(rois.tolist()):
        pooled = roi_align(fmap[int(b)].mean(1)[None], [torch.tensor([box])], 7, 1 / 8, 2, True).amax((2, 3))[0]
        z = torch.relu(pooled @ head.fc1.weight.T + head.fc1.bias) @ head.fc2.weight.T + head.fc2.bias
        assert torch.allclose(out[k], z, atol=1e-5)

def test_detector_map_is_the_token_grid_and_loads_backbones():
    torch.manual_seed(0)
    pre = VideoMAE(get_config('tiny', patch_size=8, depth=2))
    det = ActionDetector(get_config('tiny', patch_size=8, depth=2), num_classes=4).eval()
    official = {f'module.backbone.{k}': v for k, v in pre.encoder.state_dict().items()}
    official['module.roi_heads.action.fc.weight'] = torch.zeros(4, 4)
    load_backbone(det, official, verbose=False)
    assert all(torch.equal(det.state_dict()[k], v) for k, v in pre.encoder.state_dict().items())
    x = torch.randn(1, 3, 4, 32, 48)
    fm, tokens = det.feature_map(x), pre.encoder(x)
    assert fm.shape == (1, 192, 2, 4, 6) and torch.allclose(fm[0, :, 1, 3, 5], tokens[0, -1], atol=1e-6)

def test_loss_on_an_empty_batch_is_zero_with_a_graph():
    z = torch.zeros(0, 4, requires_grad=True)
    loss = detection_loss(z, torch.zeros(0, 4))
    loss.backward()
    assert loss.item() == 0 and z.grad is not None

# ---------------------------------------------------------------- the script
FAST = dict(preset='tiny', frames=8, size=128, batch_size=8, warmup_steps=10, blr=1e-2, layer_decay=1.,
            drop_path=0., num_workers=2, quiet=True, cpu=True)

@pytest.fixture(scope='module')
def synthetic(tmp_path_factory):
    d = tmp_path_factory.mktemp('ava')
    make_ava_like(d/'data', videos=19, val_videos=3, seconds=10, size=64, seed=0)
    return d

@pytest.fixture(scope='module')
def trained(synthetic):
    "The tiny model trained on the synthetic AVA, 200 steps (about two minutes on 2 cores)."
    return main(data_path=str(synthetic/'data'), steps=200, eval_every=100, out=str(synthetic/'run'), **FAST)

def test_the_synthetic_ava_is_learned_well_above_chance(synthetic, trained):
    a = synthetic/'data'/'annotations'
    mean, std = chance_map(read_ava_csv(a/'ava_val_v2.2.csv'),
                           read_proposals(a/'ava_dense_proposals_val.FAIR.recall_93.9.pkl', 0.8),
                           list(SYNTHETIC_CLASSES), read_exclusions(a/'ava_val_excluded_timestamps_v2.2.csv'))
    got = trained['detection']['mAP']
    print(f"synthetic AVA frame-mAP {got:.1f}% (chance {mean:.1f} ± {std:.1f}); per class "
          f"{trained['detection']['ap']}")
    assert got > mean + 12, (got, mean, std)
    run = synthetic/'run'
    for f in ('detections.csv', 'ap_per_class.csv', 'detection.json', 'detections.png', 'val.csv', 'metrics.csv'):
        assert (run/f).is_file(), f
    rows = list(csv.reader(open(run/'ap_per_class.csv')))
    assert rows[-1][1] == 'mAP' and float(rows[-1][2]) == pytest.approx(got, abs=1e-4)
    det = read_ava_csv(run/'detections.csv')
    excluded = read_exclusions(a/'ava_val_excluded_timestamps_v2.2.csv')
    assert max(len(v) for v in det.values()) <= 50 and len(excluded) == 1 and not excluded & set(det)
    r = evaluate_files(a/'ava_val_v2.2.csv', run/'detections.csv',
                       a/'ava_action_list_v2.2_for_activitynet_2019.pbtxt', a/'ava_val_excluded_timestamps_v2.2.csv')
    assert 100 * r['mAP'] == pytest.approx(got)

def test_two_processes_evaluate_as_one(synthetic, trained, tmp_path):
    env = {**os.environ, 'PYTHONPATH': str(ROOT), 'OMP_NUM_THREADS': '1'}
    flags = ['--cpu', '--eval', '--pretrained', str(synthetic/'run'), '--data_path', str(synthetic/'data'),
             '--num_workers', '0', '--batch_size', '3']
    def run(n, out):
        r = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', str(n),
                            'videomae_nb/detect.py', *flags, '--out', str(out)], cwd=ROOT, capture_output=True,
                           text=True, env=env, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        return [row for row in csv.reader(open(out/'ap_per_class.csv'))], read_ava_csv(out/'detections.csv')
    one, two = run(1, tmp_path/'one'), run(2, tmp_path/'two')
    assert one[0] == two[0]                                                # per-class AP, written with 4 decimals
    assert float(one[0][-1][2]) == pytest.approx(trained['detection']['mAP'], abs=1e-4)
    assert one[1].keys() == two[1].keys()
    for k in one[1]:
        assert [(b, a) for b, a, _ in one[1][k]] == [(b, a) for b, a, _ in two[1][k]]
        assert np.allclose([s for *_, s in one[1][k]], [s for *_, s in two[1][k]], atol=1e-5)

def test_a_resumed_run_ends_as_an_uninterrupted_one(synthetic, tmp_path):
    small = dict(FAST, frames=4, size=64, batch_size=4, warmup_steps=1, num_workers=0, eval_every=100)
    data = str(synthetic/'data')
    main(data_path=data, steps=6, out=str(tmp_path/'whole'), **small)
    main(data_path=data, steps=6, save_every=3, out=str(tmp_path/'cut'), **small)
    part = tmp_path/'part'
    main(data_path=data, steps=6, save_every=3, out=str(part), **small)
    shutil.rmtree(part/'checkpoints'/'checkpoint-0000006')                   # as if stopped after step 3
    r = main(data_path=data, steps=6, save_every=3, out=str(part), resume='auto', **small)
    a = load_file(str(tmp_path/'cut'/'checkpoints'/'checkpoint-0000006'/'model.safetensors'))
    b = load_file(str(part/'checkpoints'/'checkpoint-0000006'/'model.safetensors'))
    assert all(torch.equal(a[k], b[k]) for k in a)
    w = load_file(str(tmp_path/'whole'/'checkpoints'/'checkpoint-0000006'/'model.safetensors'))
    assert all(torch.equal(a[k], w[k]) for k in a)                           # saving midway changes nothing
    assert [m['loss'] for m in read_metrics(part)] == [m['loss'] for m in read_metrics(tmp_path/'cut')]
    assert r['detection']['mAP'] == pytest.approx(main(data_path=data, eval=True, pretrained=str(tmp_path/'cut'),
                                                       out=str(tmp_path/'ev'), **small)['detection']['mAP'])

@pytest.mark.parametrize('flags, message', [
    (dict(num_sample=2), 'one clip per keyframe'),
    (dict(label_iou=1.5), r'--label_iou must be in \[0, 1\]'),
    (dict(eval=True), '--eval needs the detector'),
    (dict(width=100), '--width 100 is not divisible by the patch size 16'),
    (dict(train_csv='nope.csv'), "--train_csv 'nope.csv' does not exist"),
])
def test_refusals_name_the_flag(synthetic, flags, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        main(data_path=str(synthetic/'data'), **{**FAST, **flags})

def test_eval_of_weights_that_are_no_detector_is_refused(synthetic, tmp_path):
    torch.save({'model': {'backbone.patch_embed.proj.weight': torch.zeros(1)}}, tmp_path/'their.pth')
    with pytest.raises(ValueError, match='is not a videomae-detect run or checkpoint'):
        main(eval=True, pretrained=str(tmp_path/'their.pth'), data_path=str(synthetic/'data'), **FAST)

def test_validation_without_proposals_is_refused(synthetic, tmp_path):
    a = synthetic/'data'/'annotations'
    with pytest.raises(FileNotFoundError, match='--val_proposals'):
        main(frames_root=str(synthetic/'data'/'frames'), train_csv=str(a/'ava_train_v2.2.csv'),
             val_csv=str(a/'ava_val_v2.2.csv'), label_map=str(a/'ava_action_list_v2.2_for_activitynet_2019.pbtxt'),
             steps=1, out=str(tmp_path/'r'), **FAST)

def test_the_script_runs_as_a_file_and_lists_its_flags():
    r = subprocess.run([sys.executable, 'videomae_nb/detect.py', '--help'], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0 and '--proposal_threshold' in r.stdout and '--label_iou' in r.stdout, r.stderr[-1500:]
