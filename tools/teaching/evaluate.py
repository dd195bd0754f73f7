"""The model card's checks of a teaching checkpoint beyond its per-clip table: more masks, more windows, and where
on the hidden pixels it wins or loses against the Gaussian inpainting.

    python tools/teaching/evaluate.py                     # the shipped checkpoint (about 20 s on 2 cores)
    python tools/teaching/evaluate.py runs/r100w6e6 teaching --skip masks,ring   # several runs, the windows only

Every measure is on the five held-out clips of data_samples/, 90% tube masks, the honest pixel prediction:
- masks:   centred windows, twelve masks (seeds 0-11) instead of the table's three;
- windows: the first, centred and last 16 x 4 frames of each clip (15 windows), masks 0-2, and each kind of window;
- ring:    the hidden pixels within `width` px of a visible pixel (the ring whose border pixels the Gaussian copies)
           and the rest, six masks, model / Gaussian at sigma 1 on each part.
"""
import argparse
from pathlib import Path
import numpy as np
import torch
import torch.nn.functional as F
from videomae_nb.masking import tube_mask, mask_to_pixels
from videomae_nb.viz import load_model, read_clip, reconstruct, reconstruction_quality, gaussian_inpaint, _grid

HELD_OUT = sorted((Path(__file__).resolve().parents[2]/'data_samples').glob('*.mp4'))
WINDOWS = ('first', 'centre', 'last')


def held_out(info:dict, where=('centre',)) -> dict:
    "The held-out clips at the checkpoint's settings: `name@where` → `(1, 3, T, S, S)` (just `name` for one window)."
    key = (lambda p, w: p.stem) if len(where) == 1 else (lambda p, w: f'{p.stem}@{w}')
    return {key(p, w): read_clip(p, info['frames'], info['stride'], info['size'], where=w)
            for p in HELD_OUT for w in where}


def by_window(model, info:dict) -> dict:
    "Model / mean colour and model / Gaussian over the 15 windows, and model / Gaussian for each kind of window."
    q = reconstruction_quality(model, held_out(info, WINDOWS))
    ratio = lambda w: (np.mean([c['model'] for n, c in q.clips.items() if n.endswith('@' + w)]) /
                       np.mean([c['gauss'] for n, c in q.clips.items() if n.endswith('@' + w)]))
    return dict(mean=q.vs('mean'), gauss=q.vs('gauss'), sigma=q.sigma, **{w: float(ratio(w)) for w in WINDOWS})


def ring_split(model, clips:dict, seeds=range(6), width:int=2, sigma:float=1.) -> dict:
    "Model / Gaussian on the hidden pixels within `width` px of a visible one (same frame) and on the rest."
    err = dict(model_ring=0., gauss_ring=0., model_rest=0., gauss_rest=0., ring=0, rest=0)
    for clip in clips.values():
        grid = _grid(clip, model.cfg)
        for seed in seeds:
            mask = tube_mask(1, grid, 0.9, torch.Generator().manual_seed(seed))
            rec = reconstruct(model, clip, mask, 'pixel')
            x, guess = rec.rows['original'], rec.rows['pasted']                     # (3, T, H, W) in [0, 1]
            hid = mask_to_pixels(mask, grid, model.cfg.tubelet_size, model.cfg.patch_size)[0, 0].bool()
            near = F.max_pool2d((~hid).float()[:, None], 2 * width + 1, 1, width)[:, 0].bool()
            parts = dict(ring=hid & near, rest=hid & ~near)
            for who, y in (('model', guess), ('gauss', gaussian_inpaint(x, ~hid, sigma))):
                e = (y - x).pow(2).mean(0)
                for part, where in parts.items(): err[f'{who}_{part}'] += e[where].sum().item()
            for part, where in parts.items(): err[part] += int(where.sum())
    return dict(share=err['ring'] / (err['ring'] + err['rest']), ring=err['model_ring'] / err['gauss_ring'],
                rest=err['model_rest'] / err['gauss_rest'],
                all=(err['model_ring'] + err['model_rest']) / (err['gauss_ring'] + err['gauss_rest']))


def main(runs:list[str], skip:set):
    torch.set_num_threads(min(2, torch.get_num_threads()))
    for run in runs:
        model, info = load_model(run if run == 'teaching' else Path(run))
        if model.normalize_target: raise SystemExit(f"{run}: not a pixel-target checkpoint")
        print(f"{run}:")
        centred = held_out(info)
        q = reconstruction_quality(model, centred)
        print(f"  centred windows, masks 0-2: x{q.vs('mean'):.3f} the mean colour, x{q.vs('gauss'):.3f} the Gaussian")
        if 'masks' not in skip:
            q = reconstruction_quality(model, centred, seeds=range(12))
            print(f"  centred windows, masks 0-11: x{q.vs('mean'):.3f} the mean colour, x{q.vs('gauss'):.3f} "
                  "the Gaussian")
        if 'windows' not in skip:
            w = by_window(model, info)
            print(f"  15 windows, masks 0-2: x{w['mean']:.3f} the mean colour, x{w['gauss']:.3f} the Gaussian "
                  f"(first windows x{w['first']:.3f}, centred x{w['centre']:.3f}, last x{w['last']:.3f})")
        if 'ring' not in skip:
            r = ring_split(model, centred)
            print(f"  ring split, masks 0-5: the 2-px ring is {r['share']:.0%} of the hidden pixels; model / Gaussian "
                  f"x{r['ring']:.2f} on it, x{r['rest']:.2f} on the rest, x{r['all']:.3f} on all")


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('runs', nargs='*', default=['teaching'], help="'teaching' or run folders of train.py/continue.py")
    ap.add_argument('--skip', default='', help='comma-separated measures to leave out: masks, windows, ring')
    a = ap.parse_args()
    skip = {s for s in a.skip.split(',') if s}
    if skip - {'masks', 'windows', 'ring'}: ap.error(f"--skip takes masks, windows, ring; got {a.skip!r}")
    main(a.runs, skip)
