"""`pspc denoise`: one denoiser at one noise level of the EDM grid, as the paper's denoise.py."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import app
from .options import (Batch, Data, DenoiserOpt, Device, NetworkPkl, NSamples, NSteps, Outdir, Params, PresetOpt,
                      Quiet, RegistryOpt, Rho, Seed, TMax, TMin, XFlip, flag)
from .latent_files import load_z
from .runbatches import run_in_batches


@app.command()
def denoise(
    outdir: Outdir = Path("out"),
    data: Data = None,
    denoiser: DenoiserOpt = None,
    preset: PresetOpt = None,
    param: Params = None,
    network_pkl: NetworkPkl = None,
    t_idx: Annotated[int, typer.Option(*flag("--t_idx"), help="index into the EDM grid (0 = t_max)")] = 9,
    n_steps: NSteps = 18,
    z: Annotated[Optional[Path], typer.Option("--z", help=".npy latents [n_steps, N, C, R, R]; row t_idx is used")] = None,
    n_samples: NSamples = 64,
    batch: Batch = 64,
    device: Device = None,
    seed: Seed = 0,
    t_max: TMax = 80.0,
    t_min: TMin = 0.002,
    rho: Rho = 7.0,
    xflip: XFlip = True,
    registry: RegistryOpt = None,
    quiet: Quiet = False,
) -> None:
    """Denoise latents at noise level t_idx; writes {denoiser}_outputs_t_XX_of_YY.npy and a PNG grid.

    Latents come from --z, or from the forward process (a random training image plus t·noise, latent i from
    seed + i). Finished batches are kept: rerun the same command after an interruption to resume.
    """
    import numpy as np
    import torch

    from pspc_core import edm_schedule
    from pspc_core.errors import ShapeError
    from pspc_core.imagegrid import save_grid
    from pspc_core.latents import forward_process

    from .runsetup import build

    if not 0 <= t_idx < n_steps:
        raise ShapeError(f"--t_idx {t_idx} is outside the {n_steps}-point grid; use 0..{n_steps - 1}")
    t = float(edm_schedule(n_steps, t_min, t_max, rho)[t_idx])
    zs = torch.from_numpy(np.array(load_z(z, n_steps)[t_idx], dtype=np.float32)) if z is not None else None
    setup = build(denoiser, preset, param, network_pkl, data, xflip, device, need_data=zs is None, registry=registry)
    if zs is not None and tuple(zs.shape[1:]) != (setup.channels, setup.resolution, setup.resolution):
        raise ShapeError(f"--z latents are {tuple(zs.shape[1:])} but the denoiser works on "
                         f"{(setup.channels, setup.resolution, setup.resolution)}; use matching latents")
    n = len(zs) if zs is not None else n_samples

    def compute(start: int, stop: int) -> np.ndarray:
        latents = zs[start:stop] if zs is not None else forward_process(setup.dataset, range(seed + start, seed + stop), t)
        with torch.no_grad():
            out = setup.denoiser(latents.to(setup.device), torch.full((stop - start,), t))
        return out.float().cpu().numpy()

    stem = f"{setup.name}_outputs_t_{t_idx:02d}_of_{n_steps:02d}"
    key = dict(cmd="denoise", name=setup.name, params=setup.params, data=data, xflip=xflip, t=t, n=n, seed=seed,
               z=str(z) if z else None)
    outputs = run_in_batches(outdir, stem, key, n, batch, compute, quiet)
    if outputs is None:  # not rank 0 of a torchrun job
        return
    save_grid(outputs[:64], outdir / f"{stem}.png")
    typer.echo(f"denoised {n} latents at t = {t:.6g} with {setup.name}: {outdir / (stem + '.npy')}")

