"""`pspc calibrate`: fit each local denoiser's scale per noise level to a reference (normally the network)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from pspc_cli.options import RunOptions, run_options

from .compare_command import DEFAULT_REFERENCE, Latents, Solver

CALIBRATION_SEED = 100_000  # calibration latents: seeds far from those `pspc compare` evaluates on (0, 1, ...)


class Metric(str, Enum):
    mse = "mse"
    cosine = "cosine"


@run_options("outdir", "data", "denoisers", "grid", "latents", "device", "quiet",
             outdir=Path("out/calibrate"), n_samples=32, batch=16, seed=CALIBRATION_SEED)
def calibrate(
    opts: RunOptions,
    reference: Annotated[str, typer.Option("--reference", "-r", help="reference denoiser or preset")] = DEFAULT_REFERENCE,
    latents: Annotated[Latents, typer.Option("--latents", help="forward process from the data, or the reference's own sampling trajectory")] = Latents.forward,
    solver: Annotated[Solver, typer.Option("--solver", help="PF-ODE solver of --latents trajectory")] = Solver.euler,
    metric: Annotated[Metric, typer.Option("--metric", help="mse (lower is better) or cosine of the scores D - z (higher is better)")] = Metric.mse,
    candidates: Annotated[Optional[str], typer.Option("--candidates", metavar="V1,V2,...", help="scale values to try (one denoiser only) [default: the plugin's]")] = None,
) -> None:
    """Fit each chosen denoiser's locality scale (patch size, Flex mass, ...) at every point of an EDM grid to the
    reference, on calibration latents; write OUTDIR/calibrated.toml (presets: `--registry FILE --preset NAME`),
    calibration.csv (every candidate's score) and calibration_LABEL.png.

    Calibration latents start at seed 100000 (--seed), apart from those `pspc compare` evaluates on; the
    presets record them, and `pspc compare` refuses to evaluate a preset on its own calibration latents.
    Finished work is kept: rerun the same command after an interruption to resume.
    """
    import shutil

    from pspc_core import get_denoiser_spec, list_denoisers
    from pspc_core.errors import ParameterError
    from pspc_core.plugins import load_object
    from pspc_core.runtime.atomic import atomic_path
    from pspc_core.runtime.batches import WORKDIR, remove_if_empty
    from pspc_core.runtime.lock import output_lock
    from pspc_core.runtime.setup import build, choose

    from .calibrate import best_indices, calibrate as run_calibration
    from .plot import score_map
    from .report import preset_toml, write_scores_csv
    from .study import LatentSource, Study

    if not opts.denoiser and not opts.preset:
        scaled = ", ".join(s.name for s in list_denoisers() if s.scale) or "none installed"
        raise ParameterError(f"name the denoisers to calibrate with -d (those with a scale: {scaled})")
    ref_choice, *choices = choose(opts.denoiser, opts.preset, opts.param, opts.network_pkl, opts.registry,
                                  reference=reference)
    for c in choices:
        if get_denoiser_spec(c.denoiser).scale is None:
            raise ParameterError(f"{c.label!r} declares no scale to calibrate; calibrate one of: "
                                 f"{', '.join(s.name for s in list_denoisers() if s.scale)}")
    if candidates is not None and len(choices) != 1:
        raise ParameterError("--candidates applies to one denoiser; calibrate the others in another run")
    grid = opts.grid()
    device = opts.pick_device()
    data = opts.load_data()
    ref = build(ref_choice, data, device, opts.data_source())
    shape = (ref.channels, ref.resolution, ref.resolution)
    if latents is Latents.trajectory:
        source = LatentSource("trajectory", opts.n_samples, opts.seed, shape=shape, solver=solver.value)
    else:
        source = LatentSource("forward", opts.n_samples, opts.seed, dataset=data)
    plans = []  # (choice, scale parameter, candidates, the denoiser with all of them): checked before any work
    for choice in choices:
        spec = get_denoiser_spec(choice.denoiser)
        param = spec.scale.param
        values = _candidates(candidates, spec, param, data, load_object)
        every = _with(choice, param, values, t_grid=[float(i) for i in range(len(values))])
        plans.append((choice, param, values, build(every, data, device, opts.data_source())))  # all valid
    workdir = opts.outdir / WORKDIR / "calibrate"
    tables, presets = {}, []
    with output_lock(opts.outdir):
        study = Study(source, grid, opts.batch, workdir, dict(cmd="calibrate", reference=ref.key), device,
                      not opts.quiet)
        study.run_reference(ref.denoiser)
        for choice, param, values, base in plans:

            def make(v, choice=choice, param=param):
                return build(_with(choice, param, [v]), data, device, opts.data_source()).denoiser

            sweep = getattr(base.denoiser, "scale_sweep", None)
            scores = run_calibration(study, choice.label, base.key, values, make, sweep, metric.value)
            if scores is None:  # not rank 0 of a torchrun job
                continue
            best = best_indices(scores, metric.value)
            tables[choice.label] = (values, scores, best)
            fitted = {k: v for k, v in choice.params.items() if k not in (param, "t_grid", "t_min", "t_max", "rho")}
            fitted.update({param: [values[i] for i in best], "t_grid": [float(t) for t in grid]})
            record = dict(reference=ref.label, metric=metric.value, latents=source.kind, n=source.n,
                          seeds=[source.seed, source.seed + source.n], data=opts.data_source())
            presets.append(preset_toml(
                f"{choice.label}_calibrated", choice.denoiser,
                f"{choice.label} with {param} fitted per noise level to {ref.label} ({metric.value}, {source.n} "
                f"{source.kind} latents, {opts.data_source()})", _plain(fitted), record,
                f"pspc calibrate: {choice.label} against {ref.label}"))
        shutil.rmtree(workdir, ignore_errors=True)
    remove_if_empty(opts.outdir / WORKDIR)
    if not tables:
        return
    with atomic_path(opts.outdir / "calibrated.toml") as tmp:
        tmp.write_text("\n".join(presets))
    write_scores_csv(opts.outdir / "calibration.csv", grid, tables, metric.value)
    for label, (values, scores, best) in tables.items():
        score_map(opts.outdir / f"calibration_{label}.png", grid.tolist(), values, scores, best,
                  title=f"{label}: {metric.value} to {ref.label} per candidate and noise level")
    typer.echo(_schedule_table(grid, tables))
    names = ", ".join(f"{label}_calibrated" for label in tables)
    typer.echo(f"wrote {opts.outdir / 'calibrated.toml'} (presets {names}), calibration.csv and the plots; use "
               f"--registry {opts.outdir / 'calibrated.toml'} --preset NAME")


def _candidates(text, spec, param: str, data, load_object) -> list:
    """The values to try: --candidates parsed as the scale parameter's items, else the plugin's for this data."""
    if text is None:
        return list(load_object(spec.scale.candidates, f"candidates of {spec.name}")(data))
    from pspc_core.errors import ParameterError

    values = spec.param(param).coerce(text)
    if not values:
        raise ParameterError("--candidates is empty; give values such as 3,5,7")
    return values


def _with(choice, param: str, values: list, t_grid: list | None = None):
    """`choice` with its scale parameter set to `values` on `t_grid` (none: one value is that scale at every t,
    as `scale_sweep` evaluates each candidate)."""
    from dataclasses import replace

    params = {k: v for k, v in choice.params.items() if k != "t_grid"}
    return replace(choice, params={**params, param: values, **({"t_grid": t_grid} if t_grid else {})})


def _plain(params: dict) -> dict:
    """Parameter values as TOML can hold them (strings from -p stay strings; the registry parses them)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in params.items() if v is not None}


def _schedule_table(grid, tables) -> str:
    labels = list(tables)
    lines = [f"{'t_idx':>5} {'t':>9} " + "".join(f"{label:>16}" for label in labels)]
    for k, t in enumerate(grid.tolist()):
        cells = "".join(f"{str(tables[l][0][tables[l][2][k]]):>16}" for l in labels)
        lines.append(f"{k:>5} {t:>9.4g} {cells}")
    return "calibrated scale per noise level:\n" + "\n".join(lines)
