"""Write the teaching checkpoint into the package from a run of train.py, and measure it as it ships.

    python tools/teaching/export.py runs/teaching-wide  # -> videomae_nb/assets/teaching/{model.safetensors,config.json}

A run of continue.py (a second stage) records both stages: their steps, minutes and decoder widths, and the sums of
their steps and minutes.

The weights are stored in fp16 (half the file); the held-out quality printed here is measured on the fp16 weights
read back through `load_model('teaching')`, the way every user loads them, next to the fp32 run's own numbers.
"""
import json, sys
from pathlib import Path
import torch
from videomae_nb.checkpoints import save_ours
from videomae_nb.viz import TEACHING, load_model, read_clip, reconstruction_quality


def main(run:Path):
    model, _ = load_model(run)                                 # the folder train.py's `save` writes; refuses others
    if model.normalize_target: raise SystemExit(f"{run}: not a pixel-target run of train.py or continue.py")
    cfg, info = model.cfg, json.loads((run/'config.json').read_text())['videomae_nb']['trained']
    args = json.loads((run/'args.json').read_text())
    minutes = json.loads((run/'evals.jsonl').read_text().splitlines()[-1])['minutes']
    trained = dict(info, minutes=minutes, batch=args['batch'], held_out='data_samples/*.mp4')
    if args.get('init'):                                       # a second stage: the first one's record comes first
        init = TEACHING if args['init'] == 'teaching' else Path(args['init'])
        rec = json.loads((init/'config.json').read_text())['videomae_nb']
        first = rec['trained']
        trained.update(step=first['step'] + info['step'], minutes=first['minutes'] + minutes, stages=[
            dict(script='train.py', steps=first['step'], minutes=first['minutes'],
                 decoder_dim=rec['config']['decoder_dim']),
            dict(script='continue.py', steps=info['step'], minutes=minutes, decoder_dim=cfg.decoder_dim)])
    save_ours(model, TEACHING, trained=trained, dtype=torch.float16)
    shipped, got = load_model('teaching')
    held = {p.stem: read_clip(p, got['frames'], got['stride'], got['size'])       # centred windows, as 08_visualize
            for p in sorted((Path(__file__).resolve().parents[2]/'data_samples').glob('*.mp4'))}
    q32, q16 = reconstruction_quality(model.eval(), held), reconstruction_quality(shipped, held)
    print(f"fp32 run: {q32.line()}\nshipped fp16:\n{q16.table()}\n{q16.line()}\n\nfor the model card:")
    print('| clip | model | mean colour | Gaussian | model / mean colour | model / Gaussian |\n' + '|---' * 6 + '|')
    for name, c in {**q16.clips, 'average': {k: q16.average(k) for k in ('model', 'mean', 'gauss')}}.items():
        print(f"| {name} | {c['model']:.5f} | {c['mean']:.5f} | {c['gauss']:.5f} | {c['model'] / c['mean']:.3f} | "
              f"{c['model'] / c['gauss']:.3f} |")
    print(f"{TEACHING/'model.safetensors'}: {(TEACHING/'model.safetensors').stat().st_size / 2**20:.2f} MiB; {trained}")


if __name__ == '__main__':
    main(Path(sys.argv[1]))
