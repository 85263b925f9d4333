"""`pspc denoise`: each chosen denoiser at one noise level of the EDM grid, as the paper's denoise.py."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import app
from .options import RunOptions, run_options


@app.command()
@run_options("outdir", "data", "denoisers", "grid", "latents", "device", "quiet")
def denoise(
    opts: RunOptions,
    t_idx: Annotated[int, typer.Option("--t-idx", help="index into the EDM grid (0 = t_max)")] = 9,
    z: Annotated[Optional[Path], typer.Option("--z", help=".npy latents [n_steps, N, C, R, R]; row t_idx is used")] = None,
) -> None:
    """Denoise latents at noise level t_idx: LABEL_outputs_t_XX_of_YY.npy and a PNG grid per denoiser.

    Latents come from --z, or from the forward process (a random training image plus t·noise, latent i from
    seed + i). Finished batches are kept: rerun the same command after an interruption to resume.
    """
    import numpy as np
    import torch

    from pspc_core.errors import ParameterError, ShapeError
    from pspc_core.latents import forward_process, load_z
    from pspc_core.runtime.atomic import ensure_space
    from pspc_core.runtime.batches import run_in_batches
    from pspc_core.runtime.fingerprint import dataset_fingerprint, file_fingerprint
    from pspc_core.runtime.images import save_grid
    from pspc_core.runtime.lock import output_lock
    from pspc_core.runtime.setup import build

    if z is not None:
        opts.refuse_beside("--z", "n_samples", "seed")
    choices = opts.choices()
    if not 0 <= t_idx < opts.n_steps:
        raise ParameterError(f"--t-idx {t_idx} is outside the {opts.n_steps}-point grid; use 0..{opts.n_steps - 1}")
    t = float(opts.grid()[t_idx])
    zs = load_z(z, opts.n_steps) if z is not None else None
    device = opts.pick_device()
    data = opts.data_for(choices, needed=zs is None)
    with output_lock(opts.outdir):
        for choice in choices:
            built = build(choice, data, device, opts.data_source())
            shape = (built.channels, built.resolution, built.resolution)
            if zs is not None and tuple(zs.shape[2:]) != shape:
                raise ShapeError(f"--z latents are {tuple(zs.shape[2:])} but {built.label} works on {shape}; "
                                 "use matching latents")
            n = zs.shape[1] if zs is not None else opts.n_samples
            ensure_space(opts.outdir, 2 * n * 4 * int(np.prod(shape)), f"{n} outputs")

            def compute(start: int, stop: int) -> np.ndarray:
                latents = (torch.from_numpy(np.array(zs[t_idx, start:stop], dtype=np.float32)) if zs is not None
                           else forward_process(data, range(opts.seed + start, opts.seed + stop), t))
                with torch.no_grad():
                    out = built.denoiser(latents.to(device), torch.full((stop - start,), t))
                return out.float().cpu().numpy()

            stem = f"{built.label}_outputs_t_{t_idx:02d}_of_{opts.n_steps:02d}"
            key = dict(cmd="denoise", denoiser=built.key, t=t, n=n, seed=opts.seed,
                       latents=file_fingerprint(z) if z is not None else dataset_fingerprint(data))
            outputs = run_in_batches(opts.outdir, stem, key, n, opts.batch, compute, not opts.quiet)
            if outputs is None:  # not rank 0 of a torchrun job
                continue
            save_grid(outputs[:64], opts.outdir / f"{stem}.png")
            typer.echo(f"denoised {n} latents at t = {t:.6g} with {built.label}: {opts.outdir / (stem + '.npy')}")
