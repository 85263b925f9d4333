"""`pspc list`, `pspc show NAME`, `pspc plugins`: what is installed, from static metadata only."""

from __future__ import annotations

from typing import Annotated

import typer

from pspc_core import get_denoiser_spec, list_denoisers, load_registry
from pspc_core.plugins import plugin_manager

from .app import app
from .options import OPTIONS, complete_denoiser

Registry = Annotated[OPTIONS["registry"][0], OPTIONS["registry"][2]]


@app.command("list")
def list_cmd(registry: Registry = None) -> None:
    """List the denoisers (name, plugin, summary) and the presets."""
    specs = list_denoisers()
    width = max((len(s.name) for s in specs), default=4)
    pwidth = max((len(s.plugin) for s in specs), default=6)
    for s in specs:
        typer.echo(f"{s.name:<{width}}  {s.plugin:<{pwidth}}  {s.summary}")
    presets = load_registry(registry).presets
    if presets:
        typer.echo("\npresets (--preset NAME):")
        pw = max(len(n) for n in presets)
        names = {s.name for s in specs}
        for p in presets.values():
            unusable = "" if p.denoiser in names else "  (unusable: no installed plugin has this denoiser)"
            typer.echo(f"{p.name:<{pw}}  {p.denoiser:<{width}}  {p.summary}{unusable}")


@app.command()
def show(name: Annotated[str, typer.Argument(help="denoiser name", autocompletion=complete_denoiser)]) -> None:
    """Show a denoiser's parameters with their types, defaults and help."""
    spec = get_denoiser_spec(name)
    typer.echo(f"{spec.name} ({spec.plugin}): {spec.summary}")
    if not spec.params:
        typer.echo("  no parameters")
    width = max((len(p.name) for p in spec.params), default=0)
    for p in spec.params:
        choices = f" [{'|'.join(map(str, p.choices))}]" if p.choices else ""
        default = "(--data)" if p.type == "dataset" else p.describe_default()
        if p.data_default:
            default += ", or one for the data"
        typer.echo(f"  {p.name:<{width}}  {p.type}{choices} = {default}  {p.help}")
    if spec.scale:
        typer.echo(f"  calibrate: `pspc calibrate -d {spec.name}` fits {spec.scale.param} per noise level")


@app.command()
def plugins() -> None:
    """List installed plugin distributions, their versions and hooks (and any that failed to load)."""
    manager = plugin_manager()
    manager.specs  # run the hooks so that each plugin's hooks and errors are known
    for info in sorted(manager.plugins.values(), key=lambda i: i.name):
        dist = f"{info.distribution} {info.version}".strip()
        hooks = ", ".join(sorted(info.hooks)) or "-"
        status = f"  FAILED: {info.error}" if info.error else ""
        typer.echo(f"{info.name:<12} {dist:<20} hooks: {hooks}{status}")
