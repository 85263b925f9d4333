"""The run options every command shares, declared once, and `run_options`, which gives them to a command.

    @app.command()
    @run_options("data", "denoisers", "grid", "device", outdir=Path("out/mine"))
    def mine(opts: RunOptions, extra: int = 3):
        data = opts.load_data()
        ...

An option means the same in every command: `-o/--outdir` is always a folder, `-d/--denoiser` always one or
more denoiser names (comma-separated or repeated), `-p/--param` always `[LABEL.]KEY=VALUE`. `--help` shows the
dashed spelling; the paper's underscore spellings (`--n_steps`) are accepted too (`main.normalise_argv`).
Groups: outdir, data (--data, --xflip, --registry), denoisers (-d, --preset, -p, --network-pkl), grid
(--n-steps, --t-min, --t-max, --rho), latents (--n-samples, --batch, --seed), device, quiet.
"""

from __future__ import annotations

import functools
import inspect
import typing
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from pspc_core.params import MAX_SEED


def complete_denoiser(incomplete: str) -> list[str]:
    from pspc_core import list_denoisers

    head, _, last = incomplete.rpartition(",")
    prefix = f"{head}," if head else ""
    return [prefix + s.name for s in list_denoisers() if s.name.startswith(last)]


def complete_preset(incomplete: str) -> list[str]:
    from pspc_core import load_registry

    return [n for n in load_registry().presets if n.startswith(incomplete)]


def _opt(*names: str, **kw) -> Any:
    return typer.Option(*names, **kw)


# name -> (type, default, typer.Option): the single declaration of each shared option.
OPTIONS: dict[str, tuple[Any, Any, Any]] = {
    "outdir": (Path, Path("out"), _opt("--outdir", "-o", metavar="DIR", help="folder for the outputs")),
    "data": (Optional[str], None, _opt("--data", metavar="DATA", help="training set: EDM zip, image folder, .npy/.npz or "
                                                      "builtin:shapes[:N[:SEED]] [default: registry]")),
    "xflip": (bool, True, _opt("--xflip/--no-xflip", help="append x-flipped training images")),
    "registry": (Optional[Path], None, _opt("--registry", metavar="FILE", help="extra registry.toml (or $PSPC_REGISTRY)")),
    "denoiser": (Optional[list[str]], None, _opt("--denoiser", "-d", metavar="NAME", autocompletion=complete_denoiser,
                                                 help="denoiser(s): NAME[,NAME...], repeatable (see `pspc list`)")),
    "preset": (Optional[list[str]], None, _opt("--preset", metavar="NAME", autocompletion=complete_preset,
                                               help="named preset (denoiser + parameters), repeatable")),
    "param": (Optional[list[str]], None, _opt("--param", "-p", metavar="KEY=VALUE", help="[LABEL.]KEY=VALUE denoiser parameter, "
                                                                    "repeatable")),
    "network_pkl": (Optional[str], None, _opt("--network-pkl", metavar="PATH", help="network checkpoint: -d network -p "
                                                                    "checkpoint=PATH")),
    "n_steps": (int, 18, _opt("--n-steps", metavar="N", min=1, help="points of the EDM noise grid")),
    "t_min": (float, 0.002, _opt("--t-min", metavar="T", help="smallest noise level of the grid")),
    "t_max": (float, 80.0, _opt("--t-max", metavar="T", help="largest noise level of the grid")),
    "rho": (float, 7.0, _opt("--rho", metavar="RHO", help="EDM grid exponent")),
    "n_samples": (int, 64, _opt("--n-samples", metavar="N", min=1, help="number of latents")),
    "batch": (int, 64, _opt("--batch", metavar="N", min=1, help="latents per denoiser call")),
    "seed": (int, 0, _opt("--seed", metavar="SEED", min=0, max=MAX_SEED,
                          help="base seed: latent i uses seed + i, whatever --batch")),
    "device": (Optional[str], None, _opt("--device", metavar="DEVICE", help="torch device [default: cuda if present, else cpu]")),
    "quiet": (bool, False, _opt("--quiet", "-q", help="no progress display")),
}
GROUPS = {
    "data": ("data", "xflip", "registry"),
    "denoisers": ("denoiser", "preset", "param", "network_pkl"),
    "grid": ("n_steps", "t_min", "t_max", "rho"),
    "latents": ("n_samples", "batch", "seed"),
}


class RunOptions:
    """The shared option values of one command call, with the steps every command takes from them. `given`: the
    names of the options (shared or the command's own) set on the command line, not left at their defaults."""

    def __init__(self, given: frozenset = frozenset(), **values):
        self.given = given
        self.__dict__.update(values)

    def refuse_beside(self, source: str, *names: str) -> None:
        """Refuse options among `names` that were given although `source` (an option that was) overrides them."""
        from pspc_core.errors import ParameterError

        for name in names:
            if name in self.given:
                raise ParameterError(f"--{name.replace('_', '-')} has no effect together with {source}, which sets "
                                     f"the latents; drop one of them")

    def choices(self, default: list[str] | None = None):
        """The chosen denoisers (`pspc_core.runtime.setup.choose`)."""
        from pspc_core.runtime.setup import choose

        return choose(self.denoiser, self.preset, self.param, self.network_pkl, self.registry, default)

    def data_source(self) -> str:
        from pspc_core.runtime.setup import data_source

        return data_source(self.data, self.registry)

    def load_data(self):
        from pspc_core import load_dataset

        return load_dataset(self.data_source(), xflip=self.xflip)

    def data_for(self, choices, needed: bool = False):
        """The run's data, loaded when the command `needed` it, a chosen denoiser takes it, or --data was given;
        else None (a network alone needs none, and its size need not match the default data)."""
        from pspc_core import get_denoiser_spec

        if needed or self.data or any(get_denoiser_spec(c.denoiser).takes_data for c in choices):
            return self.load_data()
        return None

    def grid(self, dtype=None):
        """The EDM grid of --n-steps, --t-min, --t-max, --rho (float32 unless `dtype`)."""
        import torch

        from pspc_core import edm_schedule

        return edm_schedule(self.n_steps, self.t_min, self.t_max, self.rho, dtype=dtype or torch.float32)

    def pick_device(self) -> str:
        from pspc_core.runtime.setup import pick_device

        return pick_device(self.device)


CONTEXT = "pspc_context"  # the typer context a command receives, to tell given options from defaults


def run_options(*names: str, **defaults):
    """Decorator: add the named shared options (or groups) to a command, passed as `opts: RunOptions`.

    Keyword arguments override an option's default for this command (e.g. `outdir=Path("out/compare")`).
    """
    wanted = [n for name in names for n in GROUPS.get(name, (name,))]
    unknown = [n for n in [*wanted, *defaults] if n not in OPTIONS]
    if unknown:
        raise ValueError(f"unknown shared option(s) {unknown}")

    def decorate(fn):
        hints = typing.get_type_hints(fn, include_extras=True)
        own = [p.replace(annotation=hints.get(p.name, p.annotation))
               for p in inspect.signature(fn).parameters.values() if p.name != "opts"]
        shared = []
        for n in wanted:
            kind, default, option = OPTIONS[n]
            shared.append(inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=defaults.get(n, default),
                                            annotation=Annotated[kind, option]))

        @functools.wraps(fn)
        def command(**kwargs):
            ctx = kwargs.pop(CONTEXT)
            given = frozenset(n for n in ctx.params
                              if getattr(ctx.get_parameter_source(n), "name", "") == "COMMANDLINE")
            opts = RunOptions(given, **{n: kwargs.pop(n) for n in wanted})
            return fn(opts, **kwargs)

        context = inspect.Parameter(CONTEXT, inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)
        params = [context] + [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + shared
        command.__signature__ = inspect.Signature(params)
        command.__annotations__ = {p.name: p.annotation for p in params}
        del command.__wrapped__  # typer must read the new signature, not fn's
        return command

    return decorate
