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
    solver: Annotated[Solver, typer.Option("--solver", help="PF-ODE solver of --latents trajectory and --samples")] = Solver.euler,
    samples: Annotated[bool, typer.Option("--samples", help="compare the samples each denoiser draws from the same initial latents instead")] = False,
) -> None:
    """MSE of each denoiser against the reference at every point of an EDM grid, on the same latents.

    Denoisers: -d (default empirical,gaussian,pspc_sq,pspc_flex) and --preset; -p LABEL.KEY=VALUE sets one's
    parameter (the reference's too). Prints a table (smallest MSE per row marked *), writes compare.csv and
    compare.png (MSE against t, log axes). On the built-in data the reference defaults to the shipped network and
    pspc_flex to its shipped heatmaps. A calibrated preset is never evaluated on its own calibration latents.

    --samples: every denoiser samples from the same initial latents (--solver, the grid) as the reference;
    prints per denoiser the MSE and r² of its samples against the reference's and their distance to the nearest
    training image; writes samples.csv, samples.png (one row per denoiser, the reference on top) and the samples.
    Finished work is kept: rerun the same command after an interruption.
    """
    import shutil

    from pspc_core.latents import load_z
    from pspc_core.runtime.batches import WORKDIR, remove_if_empty
    from pspc_core.runtime.fingerprint import file_fingerprint
    from pspc_core.runtime.lock import output_lock
    from pspc_core.runtime.setup import build, choose

    from .report import format_table, write_csv
    from .study import LatentSource, compare as run_compare
    from .plot import line_plot

    if z is not None:
        opts.refuse_beside("--z", "n_samples", "seed", "latents", "samples")
    default = None if opts.denoiser or opts.preset else DEFAULT_DENOISERS
    ref_choice, *choices = choose(opts.denoiser, opts.preset, opts.param, opts.network_pkl, opts.registry,
                                  default=default, reference=reference)
    grid = opts.grid()
    device = opts.pick_device()
    data = opts.load_data()
    ref = build(ref_choice, data, device, opts.data_source())
    shape = (ref.channels, ref.resolution, ref.resolution)
    if z is None:
        _check_disjoint(choices, range(opts.seed, opts.seed + opts.n_samples))
    if samples:
        dens = [build(c, data, device, opts.data_source()) for c in choices]
        with output_lock(opts.outdir):
            _compare_samples(ref, dens, data, shape, opts, solver.value, device)
        return
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


def _check_disjoint(choices, seeds: range) -> None:
    """Refuse to evaluate a calibrated preset on the latents it was calibrated on (same seeds)."""
    from pspc_core.errors import ParameterError

    for c in choices:
        fitted = c.calibration.get("seeds")
        if fitted and max(seeds.start, fitted[0]) < min(seeds.stop, fitted[1]):
            raise ParameterError(f"preset {c.label!r} was calibrated on the latents of seeds {fitted[0]}.."
                                 f"{fitted[1] - 1}, which this comparison would evaluate it on; choose --seed "
                                 f"outside them (calibration and evaluation latents must differ)")


def _compare_samples(ref, dens, data, shape, opts: RunOptions, solver: str, device) -> None:
    import warnings

    import numpy as np

    from pspc_core.errors import PspcWarning
    from pspc_core.nearest import nearest_training_images
    from pspc_core.runtime.atomic import atomic_path
    from pspc_core.sampler import schedule_for

    from .samples import draw, scores, side_by_side

    seeds = range(opts.seed, opts.seed + opts.n_samples)
    t_steps = schedule_for(ref.denoiser, opts.n_steps, opts.t_min, opts.t_max, opts.rho)
    key = dict(cmd="compare-samples")
    drawn = {f"{ref.label} (reference)": draw(ref, "reference", shape, seeds, t_steps, solver, opts.outdir,
                                               opts.batch, key, device, not opts.quiet)}
    drawn.update({b.label: draw(b, b.label, shape, seeds, t_steps, solver, opts.outdir, opts.batch, key, device,
                                not opts.quiet) for b in dens})
    reference = next(iter(drawn.values()))
    if reference is None:  # not rank 0 of a torchrun job
        return
    rows, table, w = ["denoiser,sample,mse,r2,nearest_distance"], [], max(20, *map(len, drawn))
    for label, x in drawn.items():
        dist = nearest_training_images(x, data)[0].numpy()
        mse, r2 = scores(x, reference)
        rows += [f"{label},{i},{mse[i]:.9g},{r2[i]:.9g},{dist[i]:.9g}" for i in range(len(x))]
        table.append(f"{label:>{w}} {mse.mean():>10.3e} {np.median(r2):>9.4f} {np.median(dist):>12.4g} "
                     f"{int((dist < 1e-3).sum()):>7}")
    with atomic_path(opts.outdir / "samples.csv") as tmp:
        tmp.write_text("\n".join(rows) + "\n")
    side_by_side(opts.outdir / "samples.png", drawn)
    typer.echo(f"samples against {ref.label} ({len(seeds)} latents, seeds {seeds.start}..{seeds.stop - 1}, "
               f"{solver}, {opts.n_steps} steps, data {opts.data_source()}):")
    typer.echo(f"{'denoiser':>{w}} {'mean MSE':>10} {'median r2':>9} {'nearest med':>12} {'copies':>7}")
    typer.echo("\n".join(table))
    files = ", ".join(["reference_samples.npy", *(f"{b.label}_samples.npy" for b in dens)])
    typer.echo(f"wrote {opts.outdir / 'samples.csv'}, {opts.outdir / 'samples.png'} and the samples: {files}")
    ours = {"reference_samples.npy", *(f"{b.label}_samples.npy" for b in dens)}
    others = sorted(p.name for p in opts.outdir.glob("*_samples.npy") if p.name not in ours)
    if others:
        warnings.warn(f"{opts.outdir} also holds {', '.join(others)} from another run, not part of samples.csv; "
                      "remove them or use another --outdir", PspcWarning)
