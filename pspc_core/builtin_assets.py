"""The network and heatmaps shipped for the built-in data set (`builtin:shapes`), so that the paper's
experiment runs with no download: `pspc compare` with no options.

- `assets/shapes-ddpmpp.safetensors`: a small DDPM++ network (EDMPrecond + SongUNet) trained with `pspc train`
  on builtin:shapes, float16 storage. The default `checkpoint` of `network` on the built-in data.
- `assets/shapes-ddpmpp-heatmaps.npz`: its PSPC-Flex heatmaps [18, 32, 32, 32, 32] from `pspc heatmaps`, stored
  as 8-bit logarithmic codes (see `pspc_core.heatmaps.encode_log8`). The default `heatmaps` of `pspc_flex` on
  the built-in data.

The commands that reproduce both are in README.md, "How the shipped network and heatmaps were made".
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

ASSETS = Path(__file__).resolve().parent / "assets"
CHECKPOINT = ASSETS / "shapes-ddpmpp.safetensors"
HEATMAPS = ASSETS / "shapes-ddpmpp-heatmaps.npz"
BUILTIN_DATA = "builtin:shapes"


def is_builtin_data(dataset) -> bool:
    """Whether `dataset` (a Dataset, path or name) is the built-in set the shipped assets belong to."""
    source = getattr(dataset, "source", dataset)
    return isinstance(source, str) and (source == BUILTIN_DATA or source == "shapes")


def default_checkpoint() -> Path:
    """Path of the shipped network checkpoint (a `.safetensors` the `network` plugin loads)."""
    _check(CHECKPOINT)
    return CHECKPOINT


def default_heatmaps_path() -> Path:
    """Path of the shipped heatmaps (`.npz`; read it with `pspc_core.heatmaps.load_heatmaps`)."""
    _check(HEATMAPS)
    return HEATMAPS


def default_heatmaps() -> torch.Tensor:
    """The shipped heatmaps as float32 [18, 32, 32, 32, 32] (decoded; about 75 MB in memory)."""
    from .heatmaps import load_heatmaps

    return load_heatmaps(default_heatmaps_path())[0]


def default_heatmaps_file() -> Path:
    """The shipped heatmaps as a plain `.safetensors` (float16, tensor `heatmaps`) that any heatmap reader
    accepts: decoded once into the cache folder ($PSPC_CACHE, default ~/.cache/pspc) and reused."""
    from .heatmaps import load_heatmaps, save_heatmaps

    src = default_heatmaps_path()
    cache = Path(os.environ.get("PSPC_CACHE") or Path.home() / ".cache" / "pspc")
    target = cache / f"{src.stem}-{src.stat().st_size}.safetensors"
    if not target.exists():
        maps, meta = load_heatmaps(src)
        save_heatmaps(target, maps, torch.tensor(meta.get("t", [])), meta, float16=True)
    return target


def _check(path: Path) -> None:
    if not path.exists():
        from .errors import PspcError

        raise PspcError(f"the built-in asset {path.name} is missing from {ASSETS}; reinstall pspc or pass a file")
