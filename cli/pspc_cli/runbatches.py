"""Run a command's work in resumable batches and write its final .npy only when all of it is done."""

from __future__ import annotations

from pathlib import Path

import typer

WORKDIR = ".pspc-work"


def run_in_batches(outdir: Path, stem: str, key: dict, n: int, batch: int, compute, quiet: bool):
    """Compute [0, n) in batches under outdir/.pspc-work, then write outdir/stem.npy atomically.

    Returns the gathered array. After Ctrl-C the finished batches stay for a rerun to resume (exit 130).
    """
    from pspc_core.atomic import save_npy
    from pspc_core.progress import Progress
    from pspc_core.resumable import BatchJob

    job = BatchJob(Path(outdir) / WORKDIR / stem, key, n, batch)
    todo = job.ranges
    done = len(job.done())
    if done:
        typer.echo(f"resuming: {done} of {len(todo)} batches already done", err=True)
    bar = Progress(len(todo), stem, enable=not quiet)
    try:
        job.run(compute, on_batch=lambda *_: bar.advance())
    except KeyboardInterrupt:
        kept = len(job.done())
        typer.echo(f"interrupted: {kept} of {len(todo)} batches kept; rerun the same command to resume", err=True)
        raise typer.Exit(130)
    outputs = job.gather()
    save_npy(Path(outdir) / f"{stem}.npy", outputs)
    job.cleanup()
    return outputs
