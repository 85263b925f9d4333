"""`pspc sample`: draw samples by integrating the PF-ODE with each chosen denoiser, as the paper's sample.py, and
check how far each sample is from its nearest training image."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import app
from .options import RunOptions, run_options


class Solver(str, Enum):
    euler = "euler"
    heun = "heun"


@app.command()
@run_options("outdir", "data", "denoisers", "grid", "latents", "device", "quiet")
def sample(
    opts: RunOptions,
    solver: Annotated[Solver, typer.Option("--solver", "--sampler", help="PF-ODE solver")] = Solver.euler,
    z_init: Annotated[Optional[Path], typer.Option("--z-init", help=".npy initial states [N, C, R, R] at t_max")] = None,
    float64: Annotated[bool, typer.Option("--float64", help="integrate the ODE in float64 (as EDM's sampler)")] = False,
    save_nearest: Annotated[bool, typer.Option("--save-nearest", help="also write each sample's nearest training image")] = False,
) -> None:
    """Sample with the PF-ODE: LABEL_samples.npy, a PNG grid and the nearest-training-image report per denoiser.

    Latent i starts from seed + i (or --z-init). Finished batches are kept: rerun after an interruption to resume.
    """
    import numpy as np
    import torch

    from pspc_core import sample as pf_ode_sample
    from pspc_core.sampler import schedule_for
    from pspc_core.latents import gaussian_latents, load_z_init
    from pspc_core.runtime.atomic import ensure_space
    from pspc_core.runtime.batches import run_in_batches
    from pspc_core.runtime.fingerprint import file_fingerprint
    from pspc_core.runtime.images import save_grid
    from pspc_core.runtime.lock import output_lock
    from pspc_core.runtime.setup import build

    if z_init is not None:
        opts.refuse_beside("--z-init", "n_samples", "seed")
    choices = opts.choices()
    opts.grid()  # a bad grid fails before any data is loaded
    device = opts.pick_device()
    data = opts.data_for(choices)
    dtype = torch.float64 if float64 else torch.float32
    with output_lock(opts.outdir):
        for choice in choices:
            built = build(choice, data, device, opts.data_source())
            shape = (built.channels, built.resolution, built.resolution)
            z0 = load_z_init(z_init, shape) if z_init is not None else None
            n = len(z0) if z0 is not None else opts.n_samples
            ensure_space(opts.outdir, 2 * n * 4 * int(np.prod(shape)), f"{n} samples")
            t_steps = schedule_for(built.denoiser, opts.n_steps, opts.t_min, opts.t_max, opts.rho, dtype)

            def compute(start: int, stop: int) -> np.ndarray:
                z = (z0[start:stop] if z0 is not None else
                     gaussian_latents(range(opts.seed + start, opts.seed + stop), shape).to(dtype) * t_steps[0])
                with torch.no_grad():
                    out = pf_ode_sample(built.denoiser, z.to(device), solver=solver.value, t_steps=t_steps,
                                        dtype=dtype, progress=not opts.quiet)
                return out.float().cpu().numpy()

            stem = f"{built.label}_samples"
            key = dict(cmd="sample", denoiser=built.key, n=n, seed=opts.seed, solver=solver.value,
                       t=t_steps.tolist(), float64=float64, z_init=file_fingerprint(z_init) if z_init else None)
            samples = run_in_batches(opts.outdir, stem, key, n, opts.batch, compute, not opts.quiet)
            if samples is None:  # not rank 0 of a torchrun job
                continue
            save_grid(samples[:64], opts.outdir / f"{stem}.png")
            typer.echo(f"{n} samples from {built.label} ({solver.value}, {opts.n_steps} steps): "
                       f"{opts.outdir / (stem + '.npy')}")
            if built.dataset is not None:  # the denoiser's own training set (-p dataset=... may differ from --data)
                _report_nearest(samples, built.dataset, built.label, opts.outdir, save_nearest)


def _report_nearest(samples, data, label: str, outdir: Path, save_images: bool) -> None:
    import numpy as np

    from pspc_core.nearest import nearest_training_images
    from pspc_core.runtime.atomic import atomic_path, save_npy
    from pspc_core.runtime.images import save_grid

    dist, idx = nearest_training_images(samples, data)
    d = dist.numpy()
    memorized = int((d < 1e-3).sum())
    typer.echo(
        f"nearest training image (L2, data units): min {d.min():.4g}, median {np.median(d):.4g}, max {d.max():.4g}; "
        f"{memorized} of {len(d)} samples are copies of training images (distance < 1e-3)"
    )
    with atomic_path(outdir / f"{label}_nearest.csv") as tmp:
        rows = [f"{i},{int(j)},{float(v):.6g}" for i, (j, v) in enumerate(zip(idx, dist))]
        tmp.write_text("sample,nearest_index,distance\n" + "\n".join(rows) + "\n")
    if save_images:
        nearest = data.images[idx].float().numpy() / 127.5 - 1
        save_npy(outdir / f"{label}_nearest.npy", nearest)
        save_grid(nearest[:64], outdir / f"{label}_nearest.png")
