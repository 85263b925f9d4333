"""Run a command's work in resumable batches and write its final .npy only when all of it is done."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer

WORKDIR = ".pspc-work"


def run_in_batches(outdir: Path, stem: str, key: dict, n: int, batch: int, compute, quiet: bool):
    """Compute [0, n) in batches under outdir/.pspc-work, then write outdir/stem.npy atomically.

    Under torchrun, rank r computes batches r, r + world, ...; rank 0 gathers them in order and writes the file
    (the same bytes one process writes). Returns the gathered array on rank 0, None on the other ranks.
    After Ctrl-C the finished batches stay for a rerun to resume (exit 130).
    """
    from pspc_core import distributed
    from pspc_core.atomic import save_npy
    from pspc_core.progress import Progress
    from pspc_core.resumable import BatchJob

    rank, world = distributed.rank_world()
    job = BatchJob(Path(outdir) / WORKDIR / stem, key, n, batch)
    mine = job.ranges[rank::world]
    done = len([r for r in job.done() if r in mine])
    if done and rank == 0:
        typer.echo(f"resuming: {done} of {len(mine)} batches already done", err=True)
    bar = Progress(len(mine), stem if world == 1 else f"{stem} (rank 0 of {world})", enable=not quiet and rank == 0)
    try:
        job.run(compute, ranges=mine, on_batch=lambda *_: bar.advance())
    except KeyboardInterrupt:
        kept = len([r for r in job.done() if r in mine])
        typer.echo(f"interrupted: {kept} of {len(mine)} batches kept; rerun the same command to resume", err=True)
        raise typer.Exit(130)
    parts = distributed.gather_to_rank0({r: job.load(r) for r in mine} if world > 1 else None)
    outputs = None
    if rank == 0:
        outputs = job.gather() if world == 1 else np.concatenate([_merge(parts)[r] for r in job.ranges])
        save_npy(Path(outdir) / f"{stem}.npy", outputs)
    distributed.barrier()
    job.cleanup()
    return outputs


def _merge(parts: list[dict]) -> dict:
    return {r: a for part in parts for r, a in part.items()}
