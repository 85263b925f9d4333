"""`pspc convert IN OUT`: an official EDM network pickle to a pspc `.safetensors` file, read without running it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def convert(
    src: Annotated[Path, typer.Argument(metavar="IN", help="EDM network .pkl (e.g. edm-cifar10-32x32-uncond-vp.pkl)")],
    dst: Annotated[Path, typer.Argument(metavar="OUT", help="output .safetensors file")],
    allow_modified_source: Annotated[bool, typer.Option("--allow-modified-source", help="convert a network saved from an edited EDM source anyway (read as official EDM; the file records it)")] = False,
) -> None:
    """Convert an EDM network pickle to .safetensors (weights + `pspc_config` metadata), once.

    The pickle is read with a restricted unpickler: the Python source it embeds is never run, and a file that
    refers to anything a plain EDM checkpoint does not contain is refused, as is a network saved from an edited
    EDM source (unless --allow-modified-source). The network is rebuilt and its weights checked before OUT is
    written (atomically).
    """
    from pspc_core.runtime.atomic import atomic_path
    from pspc_core.errors import ParameterError
    from .checkpoint import convert as convert_checkpoint

    if not dst.name or dst.is_dir():
        raise ParameterError(f"OUT ({dst}) is a folder; give a file path such as network.safetensors")
    if src.resolve() == dst.resolve():
        raise ParameterError(f"IN and OUT are the same file ({src}); choose another output path")
    with atomic_path(dst) as tmp:
        net = convert_checkpoint(src, tmp, allow_modified_source=allow_modified_source)
    labels = f", {net.label_dim} classes" if net.label_dim else ""
    typer.echo(f"wrote {dst}: {type(net).__name__} + {type(net.model).__name__}, "
               f"{net.img_channels}x{net.img_resolution}x{net.img_resolution}{labels}")
