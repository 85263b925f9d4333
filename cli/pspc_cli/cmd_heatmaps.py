"""`pspc heatmaps`: PSPC-Flex gradient-sensitivity heatmaps of a denoiser (normally `network`), paper eq. 8."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .app import app
from .options import (Batch, Data, DenoiserOpt, Device, NetworkPkl, NSteps, Params, PresetOpt, Quiet, RegistryOpt,
                      Rho, Seed, TMax, TMin, XFlip, flag)
from .runbatches import WORKDIR


@app.command()
def heatmaps(
    out: Annotated[Path, typer.Option("--out", "-o", help="output .safetensors (tensor 'heatmaps' [L,R,R,R,R], grid 't') or compact .npz (8-bit log codes)")] = Path("out/heatmaps.safetensors"),
    npy: Annotated[bool, typer.Option("--npy", help="also write the paper's .npy [L,R,R,R,R] beside it")] = False,
    data: Data = None,
    denoiser: DenoiserOpt = None,
    preset: PresetOpt = None,
    param: Params = None,
    network_pkl: NetworkPkl = None,
    n_latents: Annotated[int, typer.Option(*flag("--n_latents"), min=1, help="forward-process latents averaged per grid point (the paper: 1000)")] = 1000,
    n_steps: NSteps = 18,
    batch: Batch = 8,
    pixel_chunk: Annotated[int, typer.Option(*flag("--pixel_chunk"), min=1, help="output pixels per batched vector-Jacobian product (bounds memory)")] = 256,
    per_channel: Annotated[bool, typer.Option(*flag("--per_channel"), help="absolute value per output channel before summing (C times the work)")] = False,
    float16: Annotated[bool, typer.Option("--float16", help="store float16 maps, each scaled to a maximum of 1 (half the size)")] = False,
    device: Device = None,
    seed: Seed = 0,
    t_max: TMax = 80.0,
    t_min: TMin = 0.002,
    rho: Rho = 7.0,
    xflip: XFlip = True,
    registry: RegistryOpt = None,
    quiet: Quiet = False,
) -> None:
    """Gradient-sensitivity heatmaps for PSPC-Flex, at every point of an EDM grid (default: `-d network`, on the
    built-in data the shipped network).

    For output pixel (y, x): h[y, x, i, j] = mean over latents z of Σ_c' |∂(Σ_c D(z,t)[c,y,x]) / ∂z[c',i,j]|,
    the absolute gradient of the pixel's channel sum, summed over input channels (--per_channel: Σ_c Σ_c' |∂D[c,y,x]/∂z[c',i,j]|).
    Latents come from the forward process (training image n_i + t·ε, latent i from seed + i, the same at every
    t). Finished grid points are kept: rerun the same command after an interruption to resume.
    """
    import torch

    from pspc_core import distributed, edm_schedule
    from pspc_core.atomic import save_npy
    from pspc_core.heatmaps import compute_heatmaps, save_heatmaps
    from pspc_core.latents import forward_process
    from pspc_core.resumable import BatchJob

    from .runsetup import build

    if out.suffix not in (".safetensors", ".npz"):
        from pspc_core.errors import ParameterError

        raise ParameterError(f"--out {out} must end in .safetensors or .npz (--npy adds the .npy beside it)")
    if denoiser is None and preset is None and network_pkl is None:
        denoiser = "network"
    if denoiser == "network" and network_pkl is None and not any(p.startswith("checkpoint=") for p in param or []):
        from pspc_core import load_registry
        from pspc_core.builtin_assets import default_checkpoint, is_builtin_data

        if is_builtin_data(data or load_registry(registry).defaults.get("data", "builtin:shapes")):
            network_pkl = str(default_checkpoint())  # the shipped network belongs to the built-in data
    setup = build(denoiser, preset, param, network_pkl, data, xflip, device, need_data=True, registry=registry)
    grid = edm_schedule(n_steps, t_min, t_max, rho)

    def latents(start: int, stop: int, t: float) -> torch.Tensor:
        return forward_process(setup.dataset, range(seed + start, seed + stop), t)

    key = dict(cmd="heatmaps", name=setup.name, params=setup.params, data=setup.dataset.source, xflip=xflip,
               n=n_latents, seed=seed, t=grid.tolist(), per_channel=per_channel)
    job = BatchJob(out.parent / WORKDIR / out.stem, key, len(grid), 1)
    if job.done():
        typer.echo(f"resuming: {len(job.done())} of {len(grid)} grid points already done", err=True)
    try:
        maps = compute_heatmaps(setup.denoiser, latents, grid, n_latents, batch, pixel_chunk, per_channel, job=job,
                                progress=not quiet, device=setup.device)
    except KeyboardInterrupt:
        typer.echo(f"interrupted: {len(job.done())} of {len(grid)} grid points kept; rerun the same command to resume", err=True)
        raise typer.Exit(130)
    if maps is None:  # not rank 0 of a torchrun job
        distributed.barrier()
        return
    meta = dict(key, definition="per_channel" if per_channel else "pixel_sum", layout="[t index, y, x, i, j]",
                t_min=t_min, t_max=t_max, rho=rho, n_steps=n_steps)
    save_heatmaps(out, maps, grid, meta, float16=float16)
    if npy:
        save_npy(out.with_suffix(".npy"), maps.numpy())
    distributed.barrier()
    job.cleanup()
    typer.echo(f"heatmaps {tuple(maps.shape)} from {setup.name} over {n_latents} latents: {out}")
