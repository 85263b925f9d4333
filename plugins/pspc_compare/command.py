"""`pspc compare`: MSE of denoisers against a reference (normally a trained network) at every noise level,
the paper's experiment: is PSPC closer to the network than the empirical and Gaussian denoisers?"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from pspc_cli.options import RunOptions, run_options

DEFAULT_DENOISERS = ["empirical", "gaussian", "pspc_sq", "pspc_flex"]
DEFAULT_REFERENCE = "network"


class Latents(str, Enum):
    forward = "forward"
    trajectory = "trajectory"


class Solver(str, Enum):
    euler = "euler"
    heun = "heun"


@run_options("outdir", "data", "denoisers", "grid", "latents", "device", "quiet",
             outdir=Path("out/compare"), n_samples=32, batch=16)
def compare(
    opts: RunOptions,
    reference: Annotated[str, typer.Option("--reference", "-r", help="reference denoiser or preset")] = DEFAULT_REFERENCE,
    latents: Annotated[Latents, typer.Option("--latents", help="forward process from the data, or the reference's own sampling trajectory")] = Latents.forward,
    z: Annotated[Optional[Path], typer.Option("--z", help=".npy latents [n_steps, N, C, R, R] (row k at t_k), as the paper ships")] = None,
    solver: Annotated[Solver, typer.Option("--solver", help="PF-ODE solver of --latents trajectory")] = Solver.euler,
) -> None:
    """MSE of each denoiser against the reference at every point of an EDM grid, on the same latents.

    Denoisers: -d (default empirical,gaussian,pspc_sq,pspc_flex) and --preset; -p LABEL.KEY=VALUE sets one's
    parameter (the reference's too). Prints a table (smallest MSE per row marked *), writes compare.csv and
    compare.png (MSE against t, log axes). On the built-in data the reference defaults to the shipped network and
    pspc_flex to its shipped heatmaps. Finished work is kept: rerun the same command after an interruption.
    """
    import shutil

    from pspc_core.latents import load_z
    from pspc_core.runtime.batches import WORKDIR, remove_if_empty
    from pspc_core.runtime.fingerprint import file_fingerprint
    from pspc_core.runtime.lock import output_lock
    from pspc_core.runtime.setup import build, choose

    from .compare import LatentSource, compare as run_compare, format_table, write_csv
    from .plot import line_plot

    default = None if opts.denoiser or opts.preset else DEFAULT_DENOISERS
    ref_choice, *choices = choose(opts.denoiser, opts.preset, opts.param, opts.network_pkl, opts.registry,
                                  default=default, reference=reference)
    grid = opts.grid()
    device = opts.pick_device()
    data = opts.load_data()
    ref = build(ref_choice, data, device, opts.data_source())
    shape = (ref.channels, ref.resolution, ref.resolution)
    if z is not None:
        array = load_z(z, opts.n_steps, shape)
        source = LatentSource("file", int(array.shape[1]), opts.seed, array=array)
    elif latents is Latents.trajectory:
        source = LatentSource("trajectory", opts.n_samples, opts.seed, shape=shape, solver=solver.value)
    else:
        source = LatentSource("forward", opts.n_samples, opts.seed, dataset=data)
    dens = {c.label: build(c, data, device, opts.data_source()) for c in choices}
    key = dict(cmd="compare", reference=ref.key, z=file_fingerprint(z) if z else None,
               denoisers={label: b.key for label, b in dens.items()})
    workdir = opts.outdir / WORKDIR / "compare"
    with output_lock(opts.outdir):
        results = run_compare(ref.denoiser, {label: b.denoiser for label, b in dens.items()}, source, grid,
                              opts.batch, workdir, key, device=device, progress=not opts.quiet)
        shutil.rmtree(workdir, ignore_errors=True)
    remove_if_empty(opts.outdir / WORKDIR)
    if results is None:  # not rank 0 of a torchrun job
        return
    where = "z file" if z else latents.value
    typer.echo(f"MSE against {ref.label} ({source.n} latents, {where}, data {opts.data_source()}):")
    typer.echo(format_table(grid, results))
    write_csv(opts.outdir / "compare.csv", grid, results)
    line_plot(opts.outdir / "compare.png", grid.numpy(), results, title=f"MSE to {ref.label} ({where} latents)",
              xlabel="t (noise level)", ylabel="MSE")
    typer.echo(f"wrote {opts.outdir / 'compare.csv'} and {opts.outdir / 'compare.png'}")
