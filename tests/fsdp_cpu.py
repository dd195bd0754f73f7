"""Run a script under `torchrun` with Accelerate's FSDP on CPU processes (gloo), for tests/test_distributed.py.

Accelerate turns FSDP on for accelerators only: on the CPU it ignores `ACCELERATE_USE_FSDP` and falls back to DDP. The
sharding itself (`torch.distributed.fsdp.fully_shard`, DTensor parameters, the collective state-dict calls) works on
the CPU, so this wrapper flips the state Accelerate has just set up from multi-CPU to FSDP, with the FSDP plugin read
from the same `FSDP_*` environment variables `accelerate launch --config_file configs/accelerate/8gpu_fsdp.yaml` sets.
Then it runs the script as `__main__`. Usage: `torchrun --nproc_per_node 2 tests/fsdp_cpu.py SCRIPT.py ARGS...`."""
import os, runpy, sys
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

_init = Accelerator.__init__

def _init_with_cpu_fsdp(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    state = AcceleratorState()
    if os.environ.get('ACCELERATE_USE_FSDP', '').lower() == 'true' and state.distributed_type == DistributedType.MULTI_CPU:
        state.distributed_type, state.fsdp_plugin = DistributedType.FSDP, FullyShardedDataParallelPlugin()
        PartialState._shared_state['distributed_type'] = DistributedType.FSDP     # as Accelerate does on GPUs

_prepare = Accelerator.prepare

def _prepare_and_report(self, *args, **kwargs):
    "Prepare, then print how much of each prepared model this process holds (the test checks it is sharded)."
    out = _prepare(self, *args, **kwargs)
    from torch.distributed.tensor import DTensor
    for m in (o for o in (out if isinstance(out, (tuple, list)) else (out,)) if isinstance(o, torch.nn.Module)):
        ps = list(m.parameters())
        local = sum(p.to_local().numel() if isinstance(p, DTensor) else p.numel() for p in ps)
        print(f"fsdp_cpu: rank {self.process_index}: {sum(isinstance(p, DTensor) for p in ps)} of {len(ps)} parameters "
              f"sharded, holds {local} of {sum(p.numel() for p in ps)} elements", flush=True)
    return out

if __name__ == '__main__':
    Accelerator.__init__, Accelerator.prepare = _init_with_cpu_fsdp, _prepare_and_report
    script, sys.argv = sys.argv[1], sys.argv[1:]
    runpy.run_path(script, run_name='__main__')
