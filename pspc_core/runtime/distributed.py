"""Running under `torchrun`: one process per device, latents sharded by batch, results gathered on rank 0.

Nothing here is needed for a single process: every function then reports rank 0 of 1 and does nothing.
"""

from __future__ import annotations

import os
import sys


def _launched() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def exit_worker(code: int) -> None:
    """End a torchrun worker with `code` once its command is over, skipping the interpreter's teardown: there the
    C++ destructors of gloo's and the thread pools' threads can abort the process (SIGABRT, rarely), and torchrun
    then fails the whole run although every file is written. A single process returns and exits as usual."""
    if not _launched():
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:  # a reader that left: nothing more to say
            pass
    os._exit(code)


def init() -> None:
    """Join the process group torchrun set up (gloo on CPU, NCCL on CUDA); a no-op for one process."""
    if not _launched():
        return
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")


def shutdown() -> None:
    """After a successful command: wait for every rank, then leave the process group in order (a group left to
    the interpreter's teardown can abort the process). After an error, ranks just exit and torchrun stops them."""
    if "torch.distributed" not in sys.modules:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def rank_world() -> tuple[int, int]:
    if not _launched():
        return 0, 1
    import torch.distributed as dist

    init()
    return dist.get_rank(), dist.get_world_size()


def local_device() -> str:
    """This process's device: its own GPU under torchrun, else the only GPU, else the CPU."""
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if _launched() else "cuda"


def gather_to_rank0(obj):
    """The list of every rank's `obj` on rank 0 (None elsewhere); `[obj]` for one process."""
    rank, world = rank_world()
    if world == 1:
        return [obj]
    import torch.distributed as dist

    out = [None] * world if rank == 0 else None
    dist.gather_object(obj, out, dst=0)
    return out


def barrier() -> None:
    if rank_world()[1] > 1:
        import torch.distributed as dist

        dist.barrier()


def gather_merged(part: dict):
    """Every rank's dict merged on rank 0 (None elsewhere); `part` itself for one process."""
    parts = gather_to_rank0(part)
    return None if parts is None else {k: v for p in parts for k, v in p.items()}
