"""Options shared by several commands, declared once (the paper's underscore spellings and dashes alike)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def complete_denoiser(incomplete: str) -> list[str]:
    from pspc_core import list_denoisers

    return [s.name for s in list_denoisers() if s.name.startswith(incomplete)]


def complete_preset(incomplete: str) -> list[str]:
    from pspc_core import load_registry

    return [n for n in load_registry().presets if n.startswith(incomplete)]


def flag(*names: str) -> list[str]:
    """`--t_idx` also as `--t-idx`."""
    out = []
    for n in names:
        out.append(n)
        if "_" in n:
            out.append(n.replace("_", "-"))
    return out


RegistryOpt = Annotated[Optional[Path], typer.Option("--registry", help="extra registry.toml with presets (or $PSPC_REGISTRY)")]
Outdir = Annotated[Path, typer.Option("--outdir", "-o", help="folder for the outputs")]
Data = Annotated[Optional[str], typer.Option("--data", help="training set: EDM zip, image folder, .npy/.npz, or builtin:shapes [default: registry]")]
DenoiserOpt = Annotated[Optional[str], typer.Option("--denoiser", "-d", help="denoiser name (see `pspc list`) [default: registry]", autocompletion=complete_denoiser)]
PresetOpt = Annotated[Optional[str], typer.Option("--preset", help="named preset from registry.toml (denoiser + parameters)", autocompletion=complete_preset)]
Params = Annotated[Optional[list[str]], typer.Option("--param", "-p", help="denoiser parameter KEY=VALUE (repeatable)")]
NetworkPkl = Annotated[Optional[str], typer.Option(*flag("--network_pkl"), help="network checkpoint (same as -d network -p checkpoint=PATH)")]
NSteps = Annotated[int, typer.Option(*flag("--n_steps"), min=1, help="points of the EDM noise grid")]
TMin = Annotated[float, typer.Option(*flag("--t_min"), min=0.0, help="smallest noise level")]
TMax = Annotated[float, typer.Option(*flag("--t_max"), min=0.0, help="largest noise level")]
Rho = Annotated[float, typer.Option("--rho", help="EDM schedule exponent")]
Batch = Annotated[int, typer.Option("--batch", min=1, help="latents per denoiser call")]
Device = Annotated[Optional[str], typer.Option("--device", help="torch device [default: cuda if available, else cpu]")]
Seed = Annotated[int, typer.Option("--seed", help="base seed: latent i uses seed + i, whatever the batch size")]
XFlip = Annotated[bool, typer.Option("--xflip/--no-xflip", help="append horizontally flipped training images")]
NSamples = Annotated[int, typer.Option(*flag("--n_samples"), min=1, help="number of latents")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="no progress display")]
