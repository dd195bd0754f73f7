"""Run by tests/test_distributed.py under `torchrun --nproc_per_node N` (or alone, N = 1): a few training steps of the
tiny model with our loader, `train_step` and Accelerate. Every rank draws the masks of the *global* batch from one
shared generator and keeps its own rows, so that a one-process run with the same global batch sees identical
clips and masks. Writes, per rank, the sample keys it saw, its loss and a checksum of its weights after each step."""
import json, sys
from pathlib import Path
import torch
from accelerate import Accelerator
from videomae_nb.data import pretrain_loader
from videomae_nb.encoder import get_config
from videomae_nb.videomae import VideoMAE
from videomae_nb.masking import MaskSpec
from videomae_nb.train import make_optimizer, train_step, PixelObjective

def main(out:str, data:str, global_batch:int=4, n_shards:int=2, steps:int=3):
    acc = Accelerator(cpu=True)
    world, rank = acc.num_processes, acc.process_index
    per = global_batch // world                          # rows of the global batch this process trains on
    torch.manual_seed(0)
    model = VideoMAE(get_config('tiny', depth=2, decoder_depth=1))
    opt = make_optimizer(model, lr=1e-3)
    model, opt = acc.prepare(model, opt)
    # the global batch = the shards' batches, shard by shard; one process reads every shard itself
    shards = range(rank, rank + 1) if world == n_shards else range(n_shards)
    assert world in (1, n_shards), 'run with 1 process or n_shards processes'
    iters = [iter(pretrain_loader(data, global_batch // n_shards, num_frames=4, size=32, seed=0, rank=r, world=n_shards,
                                  num_workers=0)) for r in shards]
    def next_batch():
        bs = [next(it) for it in iters]
        return dict(video=torch.cat([b['video'] for b in bs]), index=torch.cat([b['index'] for b in bs]),
                    path=[p for b in bs for p in b['path']])
    spec, gen = MaskSpec(0.75), torch.Generator().manual_seed(1)

    class RowsOfGlobal(MaskSpec):                       # masks of the global batch, this rank's rows
        def __call__(self, batch, grid, generator=None):
            m, _ = spec(global_batch, grid, generator)
            return m[rank * batch:(rank + 1) * batch], None
    log = []
    for step in range(steps):
        batch = next_batch()
        objective = PixelObjective(acc.unwrap_model(model).cfg, RowsOfGlobal(0.75))
        out_ = train_step(acc, model, opt, [dict(video=batch['video'])], objective, gen)
        flat = torch.cat([p.detach().flatten() for p in acc.unwrap_model(model).parameters()])
        log.append(dict(step=step, keys=batch['index'].tolist(), paths=batch['path'],
                        loss=acc.reduce(out_['loss'], 'mean').item(), checksum=flat.double().sum().item(),
                        weights_head=flat[:64].tolist()))
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out)/f'rank{rank}-of{world}.json').write_text(json.dumps(log))
    acc.end_training()            # shut the process group down (gloo aborts at exit otherwise)

if __name__ == '__main__':
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
