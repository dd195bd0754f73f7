"""Second stage of the teaching checkpoint: continue a first-stage model (train.py) with a wider decoder.

    python tools/teaching/continue.py --init runs/teaching-stage1 --data ~/teaching-data/train.txt \\
        --out runs/teaching-wide --minutes 25

The first stage's 96-wide decoder passes each hidden patch's prediction through 96 numbers per token; a 90% tube mask
at 64² leaves about six visible patches per frame, and the detail of their borders, which a local inpainting copies,
does not fit through it. This stage keeps the first stage's encoder, gives the model a fresh decoder `--decoder_dim`
wide (same depth and heads), and trains both on the same videos, objective and colour augmentation as train.py, the
encoder at a lower learning rate than the new decoder. `--minutes` sizes the schedule from the speed of steps 50-250;
`--steps` fixes the count instead (the shipped run's count is in its args.json and the model card).
"""
from __future__ import annotations
import argparse, csv, importlib.util, json, time
from types import SimpleNamespace
from pathlib import Path
import torch
from videomae_nb.encoder import ViTConfig
from videomae_nb.videomae import VideoMAE, pixel_targets, reconstruction_loss
from videomae_nb.patching import token_grid
from videomae_nb.train import param_groups, lr_at, MaskSpec, picture_clip
from videomae_nb.viz import load_model
from videomae_nb.data import video_paths
from videomae_nb.ops import set_cpu_matmul

_spec = importlib.util.spec_from_file_location('teaching_train', Path(__file__).with_name('train.py'))
stage1 = importlib.util.module_from_spec(_spec); _spec.loader.exec_module(stage1)       # Clips, HELD_OUT, save


def build(init:str, decoder_dim:int, seed:int) -> tuple[VideoMAE, ViTConfig, dict]:
    "The first stage's encoder under a fresh decoder `decoder_dim` wide (all of it when the widths agree)."
    first, info = load_model(init)                               # any form load_model takes: a folder, a file
    cfg = ViTConfig(**dict(first.cfg.to_dict(), decoder_dim=decoder_dim))
    torch.manual_seed(seed); model = VideoMAE(cfg, normalize_target=False)
    sd = {k: v.float() for k, v in first.state_dict().items()}
    same = decoder_dim == first.cfg.decoder_dim
    if not same: sd = {k: v for k, v in sd.items() if k.startswith('encoder.')}
    missing, unexpected = model.load_state_dict(sd, strict=same)
    assert not unexpected and all(not k.startswith('encoder.') for k in missing), (missing, unexpected)
    return model, cfg, info


def optimizer(model:VideoMAE, encoder_lr:float, lr:float) -> torch.optim.AdamW:
    "AdamW as train.py's (β 0.9/0.95, weight decay 0.05 off norms and biases), each group split encoder / the rest."
    names, groups = {id(p): n for n, p in model.named_parameters()}, []
    for g in param_groups(model, 0.05):
        for enc in (True, False):
            ps = [p for p in g['params'] if names[id(p)].startswith('encoder.') == enc]
            if ps: groups.append(dict(g, params=ps, peak=encoder_lr if enc else lr))
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--init', required=True, help="the first stage: a folder or weights file (load_model's forms)")
    ap.add_argument('--data', required=True); ap.add_argument('--out', required=True)
    ap.add_argument('--minutes', type=float, default=25); ap.add_argument('--steps', type=int, default=None)
    ap.add_argument('--decoder_dim', type=int, default=192)
    ap.add_argument('--lr', type=float, default=1.5e-3, help='peak learning rate of the decoder')
    ap.add_argument('--encoder_lr', type=float, default=3e-4, help='peak learning rate of the encoder')
    ap.add_argument('--warmup', type=float, default=0.03, help='fraction of the steps')
    ap.add_argument('--batch', type=int, default=4); ap.add_argument('--real_weight', type=float, default=3.0)
    ap.add_argument('--seed', type=int, default=7); ap.add_argument('--eval_every', type=int, default=1500)
    ap.add_argument('--threads', type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads); set_cpu_matmul('auto')
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    model, cfg, first = build(a.init, a.decoder_dim, a.seed)
    clip = SimpleNamespace(frames=first['frames'], stride=first['stride'], size=first['size'])   # the first stage's
    opt = optimizer(model, a.encoder_lr, a.lr)
    data = stage1.Clips(video_paths(a.data), clip.frames, clip.stride, clip.size, a.real_weight, a.seed)
    held = {p.stem: picture_clip([p], clip.frames, clip.stride, clip.size) for p in stage1.HELD_OUT}
    masks, gen = MaskSpec(0.9, 'tube', 0.0), torch.Generator().manual_seed(a.seed)
    log = csv.writer(open(out / 'metrics.csv', 'w', newline='')); log.writerow(['step', 'loss', 'lr', 'sec'])
    evals = open(out / 'evals.jsonl', 'w')
    steps = a.steps or int(a.minutes * 60 / 0.25)
    (out / 'args.json').write_text(json.dumps(dict(vars(a), steps=steps), indent=1))
    step, start, ema = 0, time.time(), None
    while step < steps:
        if step == 50: t50 = time.time()
        if step == 250 and not a.steps:                          # the schedule from the measured speed
            steps = 250 + int((a.minutes * 60 - (time.time() - start)) / ((time.time() - t50) / 200))
            print(f"{steps} steps at the speed of steps 50-250", flush=True)
        for g in opt.param_groups: g['lr'] = lr_at(step, steps, int(a.warmup * steps), g['peak'], 1e-7)
        ts = time.perf_counter(); video = data.batch(a.batch)
        mask, dmask = masks(a.batch, token_grid(*video.shape[-3:], cfg.tubelet_size, cfg.patch_size), gen)
        target = pixel_targets(video, cfg.tubelet_size, cfg.patch_size, False)
        loss = reconstruction_loss(model(video, mask, dmask), target, mask, dmask)
        loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        step += 1
        lr = opt.param_groups[-1]['lr']
        log.writerow([step, f'{loss.item():.6f}', f'{lr:.4g}', f'{time.perf_counter() - ts:.3f}'])
        if step % a.eval_every == 0 or step == steps:
            stage1.checkpoint(model, held, clip, out, step, (time.time() - start) / 60, ema, evals)
    (out / 'args.json').write_text(json.dumps(dict(vars(a), steps=steps), indent=1))
    print(f"done: {steps} steps in {(time.time() - start) / 60:.1f} min", flush=True)


if __name__ == '__main__':
    main()
