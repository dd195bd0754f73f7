"""Pretrain the teaching checkpoint: VideoMAE (pixel target) on the CPU, on the videos of make_data.py, held out from
the five clips of data_samples/.

    python tools/teaching/train.py --data ~/teaching-data/train.txt --out runs/teaching --minutes 100

The model, masks, loss, AdamW and schedule are the package's (`videomae_nb.train`); two things differ from
`videomae-train`, because the set is small (93 videos, most of them camera motion over 14 photos):
- the videos are decoded once into memory, and each step draws clips with replacement (real videos weighted up);
- each clip gets a random colour augmentation (same for all its frames): flip, channel order, hue rotation,
  saturation, contrast, per-channel gain and offset, brightness. A model that has seen 14 photos' colours would
  otherwise paint them onto clips it never saw; with the augmentation it has to read colour from the visible patches.
Every `--eval_every` steps it measures `reconstruction_quality` on the held-out clips and saves the weights.
"""
from __future__ import annotations
import argparse, csv, json, math, time
from pathlib import Path
import numpy as np, torch
from videomae_nb.data import (open_video, video_paths, sample_frame_indices, multiscale_crop_box, clip_transform,
                              normalize)
from videomae_nb.encoder import get_config
from videomae_nb.videomae import VideoMAE, pixel_targets, reconstruction_loss
from videomae_nb.patching import token_grid
from videomae_nb.train import make_optimizer, lr_at, MaskSpec, picture_clip
from videomae_nb.viz import reconstruction_quality
from videomae_nb.checkpoints import save_ours
from videomae_nb.ops import set_cpu_matmul

HELD_OUT = sorted((Path(__file__).resolve().parents[2] / 'data_samples').glob('*.mp4'))


def uniform(g, a, b): return a + (b - a) * float(torch.rand((), generator=g))

def hue_rotation(theta:float) -> torch.Tensor:
    "3x3 rotation by theta about the grey axis (Rodrigues' formula)."
    k = torch.ones(3) / math.sqrt(3)
    K = torch.tensor([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return torch.eye(3) + math.sin(theta) * K + (1 - math.cos(theta)) * K @ K

def colour_augment(x:torch.Tensor, g:torch.Generator) -> torch.Tensor:
    "x: (3, T, S, S) in [0, 1]; one random draw of every transform for the whole clip."
    if float(torch.rand((), generator=g)) < 0.5: x = x.flip(-1)
    x = x[torch.randperm(3, generator=g)]
    x = torch.einsum('ij,jthw->ithw', hue_rotation(uniform(g, -math.pi, math.pi)), x)
    grey = x.mean(0, keepdim=True); x = grey + uniform(g, 0.4, 1.4) * (x - grey)
    if float(torch.rand((), generator=g)) < 0.1: x = x.mean(0, keepdim=True).expand_as(x)
    mu = x.mean((0, 1, 2, 3), keepdim=True); x = mu + math.exp(uniform(g, -0.4, 0.4)) * (x - mu)
    x = x * torch.exp((torch.rand(3, generator=g) * 2 - 1) * 0.25).view(3, 1, 1, 1)
    x = x + ((torch.rand(3, generator=g) * 2 - 1) * 0.1).view(3, 1, 1, 1) + uniform(g, -0.15, 0.15)
    return x.clamp(0, 1)


class Clips:
    "Decoded videos in memory; `batch(B)` draws B clips (weighted, with replacement), cropped, augmented, normalized."
    def __init__(self, paths, frames, stride, size, real_weight, seed):
        self.videos = [self.decode(p) for p in paths]
        self.weights = torch.tensor([1.0 if Path(p).name.startswith('cam_') else real_weight for p in paths])
        self.frames, self.stride, self.size = frames, stride, size
        self.g = torch.Generator().manual_seed(seed + 1)
    @staticmethod
    def decode(path) -> np.ndarray:
        "Every frame of a video, `(T, H, W, 3)` uint8 (each file opened once)."
        vr = open_video(path)
        return vr.get_batch(np.arange(len(vr)))
    def batch(self, B:int) -> torch.Tensor:
        out = []
        for i in torch.multinomial(self.weights, B, replacement=True, generator=self.g).tolist():
            fr = self.videos[i][sample_frame_indices(len(self.videos[i]), self.frames, self.stride, self.g)]
            box = multiscale_crop_box(*fr.shape[1:3], self.size, (1.0, 0.875, 0.75, 0.66), generator=self.g)
            x = clip_transform(fr, self.size, box, normalize=False).float() / 255
            out.append(normalize(colour_augment(x, self.g)))
        return torch.stack(out)


def save(model, a, out:Path, step:int, quality):
    "The run folder as `load_model` and `videomae-vis` read it (fp32, pixel target), and the held-out quality."
    save_ours(model, out, trained=dict(step=step, frames=a.frames, stride=a.stride, size=a.size, preset='tiny'))
    (out / 'quality.json').write_text(json.dumps(dict(step=step, sigma=quality.sigma, clips=quality.clips), indent=1))


def checkpoint(model, held:dict, a, out:Path, step:int, minutes:float, loss_ema:float, evals):
    "Measure the held-out clips, log a row to `evals` (and stdout), save the run folder."
    model.eval(); q = reconstruction_quality(model, held); model.train()
    row = dict(step=step, minutes=round(minutes, 1), loss_ema=loss_ema, x_mean=q.vs('mean'), x_gauss=q.vs('gauss'),
               per_clip={n: q.vs('gauss', n) for n in q.clips})
    evals.write(json.dumps(row) + '\n'); evals.flush(); save(model, a, out, step, q)
    print(json.dumps(row), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--data', required=True); ap.add_argument('--out', required=True)
    ap.add_argument('--minutes', type=float, default=100, help='training time; the schedule is set from it')
    ap.add_argument('--s_per_step', type=float, default=0.15, help='expected seconds per step, to size the schedule')
    ap.add_argument('--frames', type=int, default=16); ap.add_argument('--stride', type=int, default=4)
    ap.add_argument('--size', type=int, default=64); ap.add_argument('--patch_size', type=int, default=8)
    ap.add_argument('--batch', type=int, default=4); ap.add_argument('--lr', type=float, default=2e-3)
    ap.add_argument('--real_weight', type=float, default=3.0); ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--eval_every', type=int, default=2500); ap.add_argument('--threads', type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads); set_cpu_matmul('auto')
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    steps = int(a.minutes * 60 / a.s_per_step); warm = int(0.05 * steps)
    (out / 'args.json').write_text(json.dumps(dict(vars(a), steps=steps), indent=1))
    t0 = time.perf_counter(); data = Clips(video_paths(a.data), a.frames, a.stride, a.size, a.real_weight, a.seed)
    print(f"{len(data.videos)} videos decoded in {time.perf_counter() - t0:.0f}s; {steps} steps", flush=True)
    held = {p.stem: picture_clip([p], a.frames, a.stride, a.size) for p in HELD_OUT}
    cfg = get_config('tiny', patch_size=a.patch_size)
    torch.manual_seed(a.seed); model = VideoMAE(cfg, normalize_target=False)
    opt, masks = make_optimizer(model, a.lr, 0.05), MaskSpec(0.9, 'tube', 0.0)
    gen = torch.Generator().manual_seed(a.seed * 1000)
    log = csv.writer(open(out / 'metrics.csv', 'w', newline='')); log.writerow(['step', 'loss', 'lr', 'sec'])
    evals = open(out / 'evals.jsonl', 'w'); start = time.time(); ema = None
    for step in range(steps):
        lr = lr_at(step, steps, warm, a.lr, 1e-5 * a.batch / 256)
        for group in opt.param_groups: group['lr'] = lr
        ts = time.perf_counter(); video = data.batch(a.batch)
        mask, dmask = masks(video.shape[0], token_grid(*video.shape[-3:], cfg.tubelet_size, cfg.patch_size), gen)
        target = pixel_targets(video, cfg.tubelet_size, cfg.patch_size, False)
        loss = reconstruction_loss(model(video, mask, dmask), target, mask, dmask)
        loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        log.writerow([step + 1, f'{loss.item():.6f}', f'{lr:.4g}', f'{time.perf_counter() - ts:.3f}'])
        if (step + 1) % a.eval_every == 0 or step + 1 == steps:
            checkpoint(model, held, a, out, step + 1, (time.time() - start) / 60, ema, evals)
    print(f"done: {steps} steps in {(time.time() - start) / 60:.1f} min", flush=True)


if __name__ == '__main__':
    main()
