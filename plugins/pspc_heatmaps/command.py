"""`pspc heatmaps`: PSPC-Flex gradient-sensitivity heatmaps of a denoiser (normally `network`), paper eq. 8."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from pspc_cli.options import RunOptions, run_options


class Format(str, Enum):
    safetensors = "safetensors"
    npz = "npz"


@run_options("outdir", "data", "denoisers", "grid", "seed", "device", "quiet", outdir=Path("out/heatmaps"))
def heatmaps(
    opts: RunOptions,
    n_latents: Annotated[int, typer.Option("--n-latents", min=1, help="forward-process latents averaged per grid point (the paper: 1000)")] = 1000,
    batch: Annotated[int, typer.Option("--batch", min=1, help="latents per denoiser call")] = 8,
    pixel_chunk: Annotated[int, typer.Option("--pixel-chunk", min=1, help="output pixels per batched vector-Jacobian product (bounds memory)")] = 256,
    per_channel: Annotated[bool, typer.Option("--per-channel", help="absolute value per output channel before summing (C times the work)")] = False,
    file_format: Annotated[Format, typer.Option("--format", help="safetensors (float32 'heatmaps' [L,R,R,R,R] and grid 't') or npz (8-bit log codes)")] = Format.safetensors,
    float16: Annotated[bool, typer.Option("--float16", help="safetensors: float16 maps, each scaled to a maximum of 1")] = False,
    npy: Annotated[bool, typer.Option("--npy", help="also write the paper's .npy [L,R,R,R,R]")] = False,
) -> None:
    """Gradient-sensitivity heatmaps for PSPC-Flex at every point of an EDM grid: OUTDIR/LABEL_heatmaps.FORMAT
    (default: `-d network`, on the built-in data the shipped network).

    For output pixel (y, x): h[y, x, i, j] = mean over latents z of Σ_c' |∂(Σ_c D(z,t)[c,y,x]) / ∂z[c',i,j]|,
    the absolute gradient of the pixel's channel sum, summed over input channels (--per-channel: Σ_c Σ_c'
    |∂D[c,y,x]/∂z[c',i,j]|). Latents come from the forward process (training image n_i + t·ε, latent i from
    seed + i, the same at every t). Finished grid points are kept: rerun the same command to resume.
    """
    import torch

    from pspc_core.errors import ParameterError
    from pspc_core.latents import forward_process
    from pspc_core.runtime import distributed
    from pspc_core.runtime.atomic import save_npy
    from pspc_core.runtime.batches import WORKDIR, BatchJob
    from pspc_core.runtime.fingerprint import dataset_fingerprint
    from pspc_core.runtime.lock import output_lock
    from pspc_core.runtime.setup import build
    from pspc_patch.heatmap_files import save_heatmaps

    from .compute import compute_heatmaps

    if float16 and file_format is not Format.safetensors:
        raise ParameterError("--float16 applies to --format safetensors only (npz holds 8-bit codes); drop one")
    choices = opts.choices(default=["network"])
    if len(choices) != 1:
        raise ParameterError(f"pspc heatmaps takes one denoiser, got {len(choices)}; run it once per denoiser")
    grid = opts.grid()
    device = opts.pick_device()
    data = opts.load_data()
    built = build(choices[0], data, device, opts.data_source())
    out = opts.outdir / f"{built.label}_heatmaps.{file_format.value}"

    def latents(start: int, stop: int, t: float) -> torch.Tensor:
        return forward_process(data, range(opts.seed + start, opts.seed + stop), t)

    key = dict(cmd="heatmaps", denoiser=built.key, data=dataset_fingerprint(data), n=n_latents, seed=opts.seed,
               t=grid.tolist(), per_channel=per_channel)
    with output_lock(opts.outdir):
        job = BatchJob(opts.outdir / WORKDIR / out.stem, key, len(grid), 1)
        maps = compute_heatmaps(built.denoiser, latents, grid, n_latents, batch, pixel_chunk, per_channel, job=job,
                                progress=not opts.quiet, device=device)
        if maps is None:  # not rank 0 of a torchrun job
            distributed.barrier()
            return
        meta = dict(key, definition="per_channel" if per_channel else "pixel_sum", layout="[t index, y, x, i, j]",
                    t_min=opts.t_min, t_max=opts.t_max, rho=opts.rho, n_steps=opts.n_steps)
        save_heatmaps(out, maps, grid, meta, float16=float16)
        if npy:
            save_npy(out.with_suffix(".npy"), maps.numpy())
        distributed.barrier()
        job.cleanup()
    typer.echo(f"heatmaps {tuple(maps.shape)} from {built.label} over {n_latents} latents: {out}")
