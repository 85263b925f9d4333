"""`pspc compare`: MSE of denoisers against a reference (normally a trained network) at every noise level,
the paper's experiment: is PSPC closer to the network than the empirical and Gaussian denoisers?"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import app
from .options import Batch, Data, Device, NetworkPkl, NSamples, NSteps, Outdir, Quiet, RegistryOpt, Rho, Seed, TMax, TMin, XFlip
from .latent_files import load_z
from .runbatches import WORKDIR

DEFAULT_DENOISERS = "empirical,gaussian,pspc_sq,pspc_flex"


class Latents(str, Enum):
    forward = "forward"
    trajectory = "trajectory"


@app.command()
def compare(
    outdir: Outdir = Path("out/compare"),
    data: Data = None,
    reference: Annotated[str, typer.Option("--reference", "-r", help="reference denoiser")] = "network",
    denoisers: Annotated[str, typer.Option("--denoisers", "-d", help="comma-separated denoisers to compare")] = DEFAULT_DENOISERS,
    param: Annotated[Optional[list[str]], typer.Option("--param", "-p", help="NAME.KEY=VALUE for one denoiser (or the reference), repeatable")] = None,
    network_pkl: NetworkPkl = None,
    latents: Annotated[Latents, typer.Option("--latents", help="forward process from the data, or the reference's own sampling trajectory")] = Latents.forward,
    z: Annotated[Optional[Path], typer.Option("--z", help=".npy latents [n_steps, N, C, R, R] (row k at t_k), as the paper ships")] = None,
    solver: Annotated[str, typer.Option("--solver", help="PF-ODE solver of --latents trajectory: euler or heun")] = "euler",
    n_samples: NSamples = 32,
    n_steps: NSteps = 18,
    batch: Batch = 16,
    device: Device = None,
    seed: Seed = 0,
    t_max: TMax = 80.0,
    t_min: TMin = 0.002,
    rho: Rho = 7.0,
    xflip: XFlip = True,
    registry: RegistryOpt = None,
    quiet: Quiet = False,
) -> None:
    """MSE of each denoiser against the reference at every point of an EDM grid, on the same latents.

    Prints a table (smallest MSE per row marked *), writes compare.csv and compare.png (MSE against t, log
    axes). On the built-in data the reference defaults to the shipped network and pspc_flex to its shipped
    heatmaps. Finished work is kept: rerun the same command after an interruption to resume.
    """
    from pspc_core import create_denoiser, edm_schedule, get_denoiser_spec, load_dataset, load_registry
    from pspc_core.compare import LatentSource, check_file_latents, compare as run_compare, format_table, write_csv
    from pspc_core.errors import ParameterError, ShapeError
    from pspc_core.params import parse_assignments
    from pspc_core.plot import line_plot

    from .runsetup import default_device

    names = [n.strip() for n in denoisers.split(",") if n.strip()]
    if not names:
        raise ParameterError("--denoisers is empty; name at least one denoiser (see `pspc list`)")
    if len(set(names)) != len(names):
        raise ParameterError(f"--denoisers names a denoiser twice: {denoisers}")
    if solver not in ("euler", "heun"):
        raise ParameterError(f"--solver must be euler or heun, got {solver!r}")
    params = _split_params(param or [], [reference, *names], parse_assignments)
    if network_pkl:
        params.setdefault(reference, {})["checkpoint"] = network_pkl
    for name in [reference, *names]:
        spec = get_denoiser_spec(name)
        for k in params.get(name, {}):
            spec.param(k)
    data = data or load_registry(registry).defaults.get("data", "builtin:shapes")
    dataset = load_dataset(data, xflip=xflip)
    _builtin_defaults(data, reference, names, params)
    dev = default_device(device)

    def make(name: str):
        spec = get_denoiser_spec(name)
        kwargs = dict(params.get(name, {}))
        if any(p.type == "dataset" for p in spec.params) and "dataset" not in kwargs:
            kwargs["dataset"] = dataset
        return create_denoiser(name, **kwargs).to(dev)

    ref = make(reference)
    shape = (dataset.channels, dataset.resolution, dataset.resolution)
    if getattr(ref, "resolution", None) and (ref.channels, ref.resolution) != (shape[0], shape[1]):
        raise ShapeError(f"reference {reference!r} works on {ref.channels}x{ref.resolution}x{ref.resolution} images "
                         f"but the data is {'x'.join(map(str, shape))}; use matching data (--data)")
    grid = edm_schedule(n_steps, t_min, t_max, rho)
    if z is not None:
        array = load_z(z, n_steps)
        check_file_latents(array, n_steps, shape)
        source = LatentSource("file", int(array.shape[1]), seed, array=array)
    elif latents is Latents.trajectory:
        source = LatentSource("trajectory", n_samples, seed, shape=shape, solver=solver)
    else:
        source = LatentSource("forward", n_samples, seed, dataset=dataset)
    dens = {name: make(name) for name in names}
    key = dict(cmd="compare", reference=reference, ref_params=params.get(reference, {}), data=data, xflip=xflip,
               z=str(z) if z else None, denoisers={n: [n, params.get(n, {})] for n in names})
    workdir = outdir / WORKDIR / "compare"
    try:
        results = run_compare(ref, dens, source, grid, batch, workdir, key, device=dev, progress=not quiet)
    except KeyboardInterrupt:
        typer.echo("interrupted: finished units are kept; rerun the same command to resume", err=True)
        raise typer.Exit(130)
    import shutil

    from pspc_core.resumable import remove_if_empty

    shutil.rmtree(outdir / WORKDIR / "compare", ignore_errors=True)
    remove_if_empty(outdir / WORKDIR)
    if results is None:  # not rank 0 of a torchrun job
        return
    where = "z file" if z else latents.value
    typer.echo(f"MSE against {reference} ({source.n} latents, {where}, data {data}):")
    typer.echo(format_table(grid, results))
    write_csv(outdir / "compare.csv", grid, results)
    line_plot(outdir / "compare.png", grid.numpy(), results, title=f"MSE to {reference} ({where} latents)",
              xlabel="t (noise level)", ylabel="MSE")
    typer.echo(f"wrote {outdir / 'compare.csv'} and {outdir / 'compare.png'}")


def _split_params(items: list[str], names: list[str], parse) -> dict[str, dict]:
    from pspc_core.errors import ParameterError

    out: dict[str, dict] = {}
    for key, value in parse(items).items():
        name, dot, pkey = key.partition(".")
        if not dot or not pkey:
            raise ParameterError(f"-p expects NAME.KEY=VALUE (e.g. pspc_flex.thresholds=...), got {key!r}")
        if name not in names:
            raise ParameterError(f"-p {key}: {name!r} is neither the reference nor in --denoisers ({', '.join(names)})")
        out.setdefault(name, {})[pkey] = value
    return out


def _builtin_defaults(data: str, reference: str, names: list[str], params: dict) -> None:
    """On the built-in data, the shipped network and heatmaps fill `checkpoint` and `heatmaps` when not given."""
    from pspc_core import get_denoiser_spec
    from pspc_core.builtin_assets import default_checkpoint, default_heatmaps_file, is_builtin_data

    if not is_builtin_data(data):
        return
    for name in [reference, *names]:
        accepted = {p.name for p in get_denoiser_spec(name).params}
        mine = params.setdefault(name, {})
        if name == "network" and "checkpoint" in accepted and "checkpoint" not in mine:
            mine["checkpoint"] = str(default_checkpoint())
        if name == "pspc_flex" and "heatmaps" in accepted and "heatmaps" not in mine:
            mine["heatmaps"] = str(default_heatmaps_file())

