"""Wall-clock timing of one benchmark call, synchronising CUDA so that queued kernels are counted."""

from __future__ import annotations

import time

import torch


def timed(fn, device: torch.device, repeats: int = 1):
    """(output of the last call, median seconds over `repeats` calls of `fn`)."""
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return out, sorted(times)[len(times) // 2]
