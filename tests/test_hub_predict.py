"""Use a model (issue 18): `videomae-predict`, loading by hub repo id offline, sharing a run, trackers.

Everything runs offline: the hub repositories are laid into a local cache as `huggingface_hub` lays it, from models
this project writes, and read back in a subprocess with `HF_HUB_OFFLINE=1`."""
import csv, hashlib, json, os, shutil, subprocess, sys
from pathlib import Path
import numpy as np, pytest, torch, transformers
from torch import nn
from safetensors.torch import save_file
from videomae_nb.encoder import get_config
from videomae_nb.classifier import VideoClassifier
from videomae_nb.videomae import VideoMAE
from videomae_nb.data import as_model_input
from videomae_nb.datasets import write_video
from videomae_nb.checkpoints import (hf_config, match_hf_eps, to_hf, from_checkpoint, convert, CheckpointError,
                                     main as convert_main)
from videomae_nb.hub import hub_ref, HubError, push_folder
from videomae_nb.predict import Predictor, predict_videos, make_colour_videos, colour_clip, COLOURS
from videomae_nb.train import check_trackers, main as pretrain
from videomae_nb.finetune import main as finetune

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT/'data_samples'                                 # the clips the project ships
CFG = get_config('tiny', depth=2, decoder_depth=1)
COMMIT = 'a' * 40

def _perturbed(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters(): p.add_(torch.randn(p.shape, generator=g) * 0.02)
    return model.eval()

def cache_copy(folder, repo, cache, commit=COMMIT, ref='main'):
    "Lay `folder` into a hub cache as `huggingface_hub` does: blobs named by hash, a snapshot of links, refs/main."
    base = Path(cache)/f"models--{repo.replace('/', '--')}"
    for f in Path(folder).rglob('*'):
        if not f.is_file(): continue
        blob = base/'blobs'/hashlib.sha256(f.read_bytes()).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True); shutil.copyfile(f, blob)
        link = base/'snapshots'/commit/f.relative_to(folder); link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (base/'refs').mkdir(exist_ok=True); (base/'refs'/ref).write_text(commit)

def offline(code, cache, tmp):
    "Run `code` in a fresh interpreter with the hub offline and `cache` as its cache; no token anywhere."
    env = {k: v for k, v in os.environ.items() if not k.startswith('HF_')}
    env.update(HF_HUB_OFFLINE='1', HF_HUB_CACHE=str(cache), HF_HOME=str(tmp/'hf_home'), PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True, timeout=300)

def script(module, *args, env=None):
    return subprocess.run([sys.executable, '-m', f'videomae_nb.{module}', *map(str, args)], capture_output=True,
                          text=True, timeout=600, env={**os.environ, 'PYTHONPATH': str(ROOT), **(env or {})})

# --- a fine-tuned tiny checkpoint: five colours, learned in 20 steps, with TensorBoard on -------------------------

@pytest.fixture(scope='module')
def colour_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('colours')
    make_colour_videos(tmp/'colours', n_per_class=8)
    res = finetune(data_path=str(tmp/'colours'), preset='tiny', frames=4, stride=4, size=32, batch_size=8, steps=20,
                   warmup_steps=2, blr=0.008, layer_decay=1.0, init_scale=1.0, smoothing=0., mixup=0., cutmix=0.,
                   randaug='none', reprob=0., crop_scale=1.0, no_flip=True, eval_every=10, no_test=True,
                   num_workers=0, quiet=True, out=str(tmp/'run'), log_with='tensorboard')
    assert res['val']['acc1'] == 100.0, res['val']      # the colours are learned: the names below mean something
    return Path(res['run_dir'])

def test_predict_every_sample_clip_prints_top5_names(colour_run, tmp_path):
    r = script('predict', SAMPLES, '--checkpoint', colour_run, '--out', tmp_path/'out')
    assert r.returncode == 0, r.stderr
    assert 'of 4 frames, 32px' in r.stdout.splitlines()[0]     # the run's clips, not the official 16x224 default
    clips = sorted(SAMPLES.glob('*.mp4'))
    for clip in clips:
        line = next(l for l in r.stdout.splitlines() if l.startswith(str(clip)))
        assert '(15 views)' in line                             # the official 5 clips x 3 crops
        names = [w for w in line.split() if w in COLOURS]
        assert sorted(names) == sorted(COLOURS), line          # top-5 of five classes: every name, once
        pred = json.loads((tmp_path/'out'/f'{clip.stem}.json').read_text())
        assert [t['label'] for t in pred['top']] == [names[i] for i in range(5)]
        assert abs(sum(t['score'] for t in pred['top']) - 1) < 1e-4
    rows = list(csv.DictReader(open(tmp_path/'out'/'predictions.csv')))
    assert [Path(row['path']).name for row in rows] == [c.name for c in clips] and set(rows[0]) >= {'label1', 'score5'}

def test_the_colours_are_recognized_on_a_60_second_video_with_a_timeline(colour_run, tmp_path):
    rng, fps = np.random.default_rng(3), 8
    order = ['red', 'green', 'blue']                             # 20 s each
    write_video(tmp_path/'long.mp4', np.concatenate([colour_clip(c, 20 * fps, 64, rng) for c in order]), fps=fps)
    res = predict_videos(tmp_path/'long.mp4', colour_run, out=tmp_path/'out', step=8, fast=True, quiet=True)
    assert res['videos'][0]['top'][0]['label'] in order
    out = tmp_path/'out'
    rows = list(csv.DictReader(open(out/'long_timeline.csv')))
    pred = json.loads((out/'long.json').read_text())
    assert len(rows) == len(pred['timeline']) == (480 - 16) // 8 + 1 and float(rows[-1]['end_s']) == 60.0
    for row in rows:                                             # windows inside one colour get that colour
        a, b = float(row['start_s']), float(row['end_s'])
        if int(a // 20) == int((b - 1e-9) // 20): assert row['label1'] == order[int(a // 20)], row
    from PIL import Image
    with Image.open(out/'long_timeline.png') as im: assert im.width > 300 and im.height > 200

@pytest.mark.parametrize('eps', [1e-12, 1e-6])      # as transformers' hub configs say, and as the official code
def test_transformers_classifier_probabilities_equal_transformers(tmp_path, eps):
    hf = transformers.VideoMAEForVideoClassification(hf_config(get_config('tiny', depth=2, norm_eps=eps), img_size=32,
                                                              num_frames=8, pretrain=False, num_labels=6))
    if eps == 1e-6: match_hf_eps(hf)
    hf = _perturbed(hf)
    hf.config.id2label = {i: f'action {i}' for i in range(6)}
    hf.config.label2id = {v: k for k, v in hf.config.id2label.items()}
    hf.save_pretrained(tmp_path/'hf')
    rng = np.random.default_rng(0)
    write_video(tmp_path/'v.mp4', (rng.random((40, 48, 64, 3)) * 255).astype(np.uint8))
    for fast in (True, False):
        pipe = Predictor(tmp_path/'hf', fast=fast, device='cpu', top_k=6)
        assert pipe.names == [f'action {i}' for i in range(6)] and pipe.spec.frames == 8 and pipe.spec.size == 32
        pred = pipe.predict(tmp_path/'v.mp4')
        x = as_model_input(pipe.views(tmp_path/'v.mp4'))            # the same frames, the same preprocessing
        with torch.no_grad(): theirs = hf(pixel_values=x.transpose(1, 2)).logits.softmax(-1).mean(0)
        assert pred['views'] == (1 if fast else 15)
        torch.testing.assert_close(pred['probs'], theirs, atol=1e-5, rtol=0)
        assert [t['label'] for t in pipe(tmp_path/'v.mp4')] == [f'action {i}' for i in theirs.argsort(descending=True)]

# --- bad input: each one a clear error, a folder goes on -----------------------------------------------------------

def test_bad_inputs_have_clear_errors(colour_run, tmp_path):
    def fails(args, words):
        r = script('predict', *args, '--checkpoint', colour_run, '--out', tmp_path/'out')
        assert r.returncode == 2 and words in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    fails([tmp_path/'nothing.mp4'], 'no such video file or folder')
    (tmp_path/'notes.txt').write_text('not a video')
    fails([tmp_path/'notes.txt'], 'is not a video')
    (tmp_path/'broken.mp4').write_bytes(b'\x00' * 1000)
    fails([tmp_path/'broken.mp4'], 'broken.mp4')
    write_video(tmp_path/'short.mp4', colour_clip('red', 3, 32))
    fails([tmp_path/'short.mp4'], 'is too short: 3 frames, a clip has 4')
    (tmp_path/'empty').mkdir()
    fails([tmp_path/'empty'], 'no video files')
    r = script('predict', tmp_path/'short.mp4')
    assert r.returncode == 2 and '--checkpoint is required' in r.stderr

def test_a_pretraining_checkpoint_has_no_head(tmp_path):
    to_hf(_perturbed(VideoMAE(CFG)), tmp_path/'pre', num_frames=8, img_size=32)
    write_video(tmp_path/'v.mp4', colour_clip('red', 16, 32))
    r = script('predict', tmp_path/'v.mp4', '--checkpoint', tmp_path/'pre')
    assert r.returncode == 2 and 'no classification head' in r.stderr and 'fine-tune it first' in r.stderr

def test_a_folder_reports_per_file_and_goes_on(colour_run, tmp_path):
    (tmp_path/'v').mkdir()
    write_video(tmp_path/'v'/'a_good.mp4', colour_clip('blue', 16, 64))
    (tmp_path/'v'/'b_broken.mp4').write_bytes(b'\x00' * 1000)
    write_video(tmp_path/'v'/'c_short.mp4', colour_clip('red', 2, 64))
    res = predict_videos(tmp_path/'v', colour_run, out=tmp_path/'out', fast=True, quiet=True)
    assert [Path(v['path']).name for v in res['videos']] == ['a_good.mp4']
    assert res['videos'][0]['top'][0]['label'] == 'blue'
    assert [Path(p).name for p, _ in res['failed']] == ['b_broken.mp4', 'c_short.mp4']
    assert 'too short' in res['failed'][1][1]
    assert len(list(csv.DictReader(open(tmp_path/'out'/'predictions.csv')))) == 1

# --- hub by repo id, offline ----------------------------------------------------------------------------------------

def test_hub_repos_load_offline_and_match(tmp_path):
    torch.manual_seed(0)
    video = torch.randn(2, 3, 8, 32, 32); torch.save(video, tmp_path/'video.pt')
    hf_model = _perturbed(VideoClassifier(CFG, num_classes=5))                       # a transformers repo we write
    to_hf(hf_model, tmp_path/'tf', num_frames=8, img_size=32, id2label={i: f'c{i}' for i in range(5)})
    cache_copy(tmp_path/'tf', 'someone/videomae-tiny-colours', tmp_path/'cache')
    v2 = _perturbed(VideoClassifier(CFG, num_classes=710), 1)                           # a VideoMAE V2 remote-code repo
    (tmp_path/'v2').mkdir()
    save_file({f'model.{k}': v.contiguous() for k, v in v2.state_dict().items() if not k.startswith('head.')},
              str(tmp_path/'v2'/'model.safetensors'))
    marker = tmp_path/'remote_code_ran'
    (tmp_path/'v2'/'modeling_videomaev2.py').write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    (tmp_path/'v2'/'config.json').write_text(json.dumps({
        'model_type': 'VideoMAEv2_Base', 'auto_map': {'AutoModel': 'modeling_videomaev2.VideoMAEv2'},
        'model_config': {'img_size': 32, 'patch_size': 16, 'embed_dim': 192, 'depth': 2, 'num_heads': 3,
                         'num_frames': 8, 'tubelet_size': 2, 'use_mean_pooling': True}}))
    cache_copy(tmp_path/'v2', 'someorg/VideoMAEv2-Tiny', tmp_path/'cache')
    code = f"""
import torch
from videomae_nb.checkpoints import from_hf, load_weights, from_checkpoint
from videomae_nb.classifier import VideoClassifier
from videomae_nb.encoder import get_config
video = torch.load({str(tmp_path/'video.pt')!r})
with torch.no_grad():
    a = from_hf('someone/videomae-tiny-colours', verbose=False)(video)
    m = VideoClassifier(get_config('tiny', depth=2), num_classes=5)
    rep = load_weights(m, 'hf://someone/videomae-tiny-colours@{COMMIT}', verbose=False)
    b = m.eval()(video)
    c = from_hf('someorg/VideoMAEv2-Tiny', verbose=False)(video)
    d = from_checkpoint('hf://someorg/VideoMAEv2-Tiny', kind='classifier', verbose=False)(video)
torch.save(dict(a=a, b=b, c=c, d=d, missing=rep.missing), {str(tmp_path/'out.pt')!r})
"""
    r = offline(code, tmp_path/'cache', tmp_path)
    assert r.returncode == 0, r.stderr
    out = torch.load(tmp_path/'out.pt')
    with torch.no_grad():
        want = hf_model(video)
        v2.head = nn.Identity(); want_v2 = v2(video)          # V2's hub repos hold the encoder and fc_norm, no head
    assert out['missing'] == []
    for k in 'ab': torch.testing.assert_close(out[k], want, atol=1e-5, rtol=0)
    for k in 'cd': torch.testing.assert_close(out[k], want_v2, atol=1e-5, rtol=0)
    assert not marker.exists()                                # their code was never run

def test_hub_errors_offline_are_one_clear_line(tmp_path):
    (tmp_path/'cache').mkdir()
    code = """
from videomae_nb.checkpoints import from_hf
try: from_hf('someone/not-cached', verbose=False)
except ValueError as e: print(e)
"""
    r = offline(code, tmp_path/'cache', tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ("hf://someone/not-cached is not in the hub cache, and HF_HUB_OFFLINE=1 forbids "
                                "downloading it: fetch it where there is network (`hf download someone/not-cached`) "
                                "or pass a local folder")
    assert hub_ref('MCG-NJU/videomae-base').repo == 'MCG-NJU/videomae-base'
    assert hub_ref('hf://OpenGVLab/VideoMAEv2-Base@main/model.safetensors').filename == 'model.safetensors'
    assert hub_ref(str(tmp_path)) is None and hub_ref('./runs/x') is None         # a path, existing or not
    assert hub_ref('runs/x').repo == 'runs/x'                                   # OWNER/REPO that is no folder here

def test_finetune_starts_from_a_hub_repo_offline(tmp_path):
    to_hf(_perturbed(VideoMAE(get_config('tiny'))), tmp_path/'pre', num_frames=4, img_size=32)   # the preset's depth
    cache_copy(tmp_path/'pre', 'someone/videomae-tiny-pretrained', tmp_path/'cache')
    make_colour_videos(tmp_path/'colours', n_per_class=2)
    code = f"""
from videomae_nb.finetune import main
res = main(data_path={str(tmp_path/'colours')!r}, pretrained='someone/videomae-tiny-pretrained', preset='tiny',
           frames=4, size=32, batch_size=2, steps=1, warmup_steps=0, no_test=True, num_workers=0, quiet=False,
           out={str(tmp_path/'run')!r})
print(res['pretrained'] if 'pretrained' in res else 'ok')
"""
    r = offline(code, tmp_path/'cache', tmp_path)
    assert r.returncode == 0, r.stderr
    settings = json.loads((tmp_path/'run'/'config.json').read_text())['settings']
    assert settings['pretrained'] == 'someone/videomae-tiny-pretrained'
    assert '80 tensors from someone/videomae-tiny-pretrained' in r.stdout, r.stdout  # patch embed + 6 blocks of 13

# --- sharing a run ----------------------------------------------------------------------------------------------------

def test_a_converted_run_loads_in_transformers_with_a_model_card(colour_run, tmp_path):
    out = convert(colour_run, tmp_path/'hf', to='hf')
    cfg = json.loads((out/'config.json').read_text())
    assert cfg['layer_norm_eps'] == 1e-6 and cfg['use_mean_pooling'] is True and cfg['num_frames'] == 4
    assert cfg['image_size'] == 32 and [cfg['id2label'][str(i)] for i in range(5)] == sorted(COLOURS)
    hf = transformers.AutoModelForVideoClassification.from_pretrained(out).eval()
    ours = from_checkpoint(colour_run, kind='classifier', verbose=False).eval()
    video = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        plain = hf(pixel_values=video.transpose(1, 2)).logits       # as loaded: transformers' fc_norm eps is 1e-5
        torch.testing.assert_close(plain, ours(video), atol=1e-4, rtol=0)
        hf.fc_norm.eps = 1e-6                                       # what the model card tells a user to set
        torch.testing.assert_close(hf(pixel_values=video.transpose(1, 2)).logits, ours(video), atol=1e-5, rtol=0)
    card = (out/'README.md').read_text()
    val = list(csv.DictReader(open(colour_run/'val.csv')))[-1]
    for words in ('videomae-finetune', 'library_name: transformers', 'video-classification', '20 optimizer steps',
                  'colours', f"top-1 {float(val['acc1']):.2f}%", 'red', 'AutoModelForVideoClassification',
                  'fc_norm.eps = 1e-6'):
        assert words in card, words
    assert 'CC-BY-NC' not in card                              # trained from scratch here: no official weights in it

def test_push_without_a_token_is_a_clear_error(colour_run, tmp_path):
    env = {'HF_HOME': str(tmp_path/'home'), 'HF_TOKEN': '', 'HF_HUB_OFFLINE': '0'}
    r = script('checkpoints', colour_run, tmp_path/'hf', '--to', 'hf', '--push', 'me/my-model', env=env)
    assert r.returncode == 2 and "--push me/my-model needs a Hugging Face token: run `hf auth login` or set HF_TOKEN" \
        in r.stderr, r.stderr
    assert (tmp_path/'hf'/'model.safetensors').is_file()        # the folder is written before the upload is tried
    r = script('checkpoints', colour_run, tmp_path/'x.pth', '--to', 'pth', '--push', 'me/my-model', env=env)
    assert r.returncode == 2 and '--push' in r.stderr

def test_push_uploads_the_folder(colour_run, tmp_path, monkeypatch):
    import huggingface_hub
    calls = []
    class FakeApi:
        def create_repo(self, repo, **kw): calls.append(('create', repo, kw))
        def upload_folder(self, **kw):
            calls.append(('upload', kw['repo_id'], sorted(p.name for p in Path(kw['folder_path']).iterdir())))
    monkeypatch.setattr(huggingface_hub, 'HfApi', FakeApi)
    monkeypatch.setattr(huggingface_hub, 'get_token', lambda: 'hf_fake')
    url = convert_main(str(colour_run), str(tmp_path/'hf'), to='hf', push='me/colours', private=True)
    assert calls == [('create', 'me/colours', dict(private=True, exist_ok=True)),
                     ('upload', 'me/colours', ['README.md', 'config.json', 'model.safetensors'])]
    with pytest.raises(ValueError, match='is not a repository id'): push_folder(tmp_path/'hf', 'no-owner')

# --- trackers -------------------------------------------------------------------------------------------------------

def _events(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    (logs,) = [p for p in (run/'logs').iterdir() if p.is_dir()]
    ea = EventAccumulator(str(logs), size_guidance={'images': 0, 'scalars': 0}); ea.Reload()
    return ea

def test_tensorboard_events_hold_loss_and_lr_per_step(tmp_path):
    run = pretrain(data=str(SAMPLES), preset='tiny', frames=4, size=32, steps=6, batch_size=2, save_every=3,
                   num_workers=0, quiet=True, out=str(tmp_path/'r'), log_with='tensorboard')
    rows = list(csv.DictReader(open(tmp_path/'r'/'metrics.csv')))
    ea = _events(tmp_path/'r')
    for key in ('loss', 'lr'):
        ev = ea.Scalars(key)
        assert [e.step for e in ev] == list(range(6))
        np.testing.assert_allclose([e.value for e in ev], [float(r[key]) for r in rows], rtol=1e-5)
    assert [e.step for e in ea.Images('reconstruction')] == [3, 6]

def test_finetune_events_hold_validation_and_curves(colour_run):
    ea = _events(colour_run)
    assert [e.step for e in ea.Scalars('loss')] == list(range(20))
    assert [e.step for e in ea.Scalars('val/acc1')] == [9, 19] and ea.Scalars('val/acc1')[-1].value == 100.0
    assert ea.Images('curves')

def test_unknown_or_missing_trackers_are_refused():
    with pytest.raises(ValueError, match='log_with'): check_trackers('comet')
    check_trackers('tensorboard'); check_trackers(None)
    import importlib.util
    if importlib.util.find_spec('wandb') is None:
        with pytest.raises(ValueError, match=r'--log_with wandb needs the wandb package: pip install wandb'):
            check_trackers('wandb')
