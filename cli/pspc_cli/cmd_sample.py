"""`pspc sample`: draw samples by integrating the PF-ODE with a denoiser, as the paper's sample.py, and check
how far each sample is from its nearest training image."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import app
from .options import (Batch, Data, DenoiserOpt, Device, NetworkPkl, NSamples, NSteps, Outdir, Params, PresetOpt,
                      Quiet, RegistryOpt, Rho, Seed, TMax, TMin, XFlip, flag)
from .latent_files import load_z_init
from .runbatches import run_in_batches


class Solver(str, Enum):
    euler = "euler"
    heun = "heun"


@app.command()
def sample(
    outdir: Outdir = Path("out"),
    data: Data = None,
    denoiser: DenoiserOpt = None,
    preset: PresetOpt = None,
    param: Params = None,
    network_pkl: NetworkPkl = None,
    n_steps: NSteps = 18,
    solver: Annotated[Solver, typer.Option("--solver", "--sampler", help="PF-ODE solver")] = Solver.euler,
    z_init: Annotated[Optional[Path], typer.Option(*flag("--z_init"), help=".npy initial states [N, C, R, R] at t_max (already scaled)")] = None,
    n_samples: NSamples = 64,
    batch: Batch = 64,
    device: Device = None,
    seed: Seed = 0,
    t_max: TMax = 80.0,
    t_min: TMin = 0.002,
    rho: Rho = 7.0,
    xflip: XFlip = True,
    float64: Annotated[bool, typer.Option("--float64", help="integrate the ODE in float64 (as EDM's sampler)")] = False,
    save_nearest: Annotated[bool, typer.Option(*flag("--save_nearest"), help="also write each sample's nearest training image")] = False,
    registry: RegistryOpt = None,
    quiet: Quiet = False,
) -> None:
    """Sample with the PF-ODE; writes {denoiser}_samples.npy, a PNG grid and the nearest-training-image report.

    Latent i starts from seed + i (or --z_init). Finished batches are kept: rerun after an interruption to resume.
    """
    import numpy as np
    import torch

    from pspc_core import sample as pf_ode_sample
    from pspc_core.imagegrid import save_grid
    from pspc_core.latents import gaussian_latents

    from .runsetup import build

    setup = build(denoiser, preset, param, network_pkl, data, xflip, device, need_data=False, registry=registry)
    shape = (setup.channels, setup.resolution, setup.resolution)
    z0 = load_z_init(z_init, shape) if z_init is not None else None
    n = len(z0) if z0 is not None else n_samples
    dtype = torch.float64 if float64 else torch.float32
    t_steps = _schedule_for(setup.denoiser, n_steps, t_min, t_max, rho, dtype)

    def compute(start: int, stop: int) -> np.ndarray:
        z = z0[start:stop] if z0 is not None else gaussian_latents(range(seed + start, seed + stop), shape).to(dtype) * t_steps[0]
        with torch.no_grad():
            out = pf_ode_sample(setup.denoiser, z.to(setup.device), solver=solver.value, t_steps=t_steps,
                                dtype=dtype, progress=not quiet)
        return out.float().cpu().numpy()

    stem = f"{setup.name}_samples"
    key = dict(cmd="sample", name=setup.name, params=setup.params, data=data, xflip=xflip, n=n, seed=seed,
               solver=solver.value, t=t_steps.tolist(), float64=float64, z_init=str(z_init) if z_init else None)
    samples = run_in_batches(outdir, stem, key, n, batch, compute, quiet)
    if samples is None:  # not rank 0 of a torchrun job
        return
    save_grid(samples[:64], outdir / f"{stem}.png")
    typer.echo(f"{n} samples from {setup.name} ({solver.value}, {n_steps} steps): {outdir / (stem + '.npy')}")
    if setup.dataset is not None:
        _report_nearest(samples, setup, outdir, save_nearest)


def _schedule_for(den, n_steps, t_min, t_max, rho, dtype):
    """The EDM grid, limited to the noise levels a network supports and rounded as it rounds σ (EDM's generate.py)."""
    from pspc_core import edm_schedule

    t_min = max(t_min, getattr(den, "sigma_min", 0.0))
    t_max = min(t_max, getattr(den, "sigma_max", float("inf")))
    t_steps = edm_schedule(n_steps, t_min, t_max, rho, dtype=dtype)
    return den.round_sigma(t_steps) if hasattr(den, "round_sigma") else t_steps


def _report_nearest(samples, setup, outdir: Path, save_images: bool) -> None:
    import numpy as np
    import torch

    from pspc_core.atomic import atomic_path, save_npy
    from pspc_core.imagegrid import save_grid
    from pspc_core.nearest import nearest_training_images

    dist, idx = nearest_training_images(torch.from_numpy(samples), setup.dataset)
    d = dist.numpy()
    memorized = int((d < 1e-3).sum())
    typer.echo(
        f"nearest training image (L2, data units): min {d.min():.4g}, median {np.median(d):.4g}, max {d.max():.4g}; "
        f"{memorized} of {len(d)} samples are copies of training images (distance < 1e-3)"
    )
    with atomic_path(outdir / f"{setup.name}_nearest.csv") as tmp:
        rows = [f"{i},{int(j)},{float(v):.6g}" for i, (j, v) in enumerate(zip(idx, dist))]
        tmp.write_text("sample,nearest_index,distance\n" + "\n".join(rows) + "\n")
    if save_images:
        nearest = setup.dataset.images[idx].float().numpy() / 127.5 - 1
        save_npy(outdir / f"{setup.name}_nearest.npy", nearest)
        save_grid(nearest[:64], outdir / f"{setup.name}_nearest.png")

