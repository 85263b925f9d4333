"""Named presets and defaults from ``registry.toml`` (the project's own, plus a user's file).

Format::

    [defaults]                     # CLI defaults when an option is not given
    denoiser = "empirical"
    data = "builtin:shapes"

    [presets.NAME]                 # `--preset NAME`: a denoiser plus parameter values
    denoiser = "pspc_sq"
    summary = "one line"
    params = { patch_sizes = [32, 32, 23] }

A user's file (``--registry PATH`` or ``PSPC_REGISTRY``) has the same form; its entries override the project's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from .errors import PspcError, UnknownDenoiserError

ENV_REGISTRY = "PSPC_REGISTRY"
PROJECT_REGISTRY = Path(__file__).resolve().parent.parent / "registry.toml"


@dataclass(frozen=True)
class Preset:
    name: str
    denoiser: str
    params: dict = field(default_factory=dict)
    summary: str = ""


@dataclass
class RegistryFile:
    defaults: dict = field(default_factory=dict)
    presets: dict[str, Preset] = field(default_factory=dict)


def _read(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise PspcError(f"registry file {path} does not exist; pass an existing TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise PspcError(f"registry file {path} is not valid TOML ({exc}); fix the file") from None


def load_registry(extra: str | os.PathLike | None = None) -> RegistryFile:
    """Merge the project's ``registry.toml`` with `extra` (or ``$PSPC_REGISTRY``); later files win."""
    out = RegistryFile()
    paths = [PROJECT_REGISTRY] if PROJECT_REGISTRY.exists() else []
    extra = extra or os.environ.get(ENV_REGISTRY)
    if extra:
        paths.append(Path(extra))
    for path in paths:
        data = _read(path)
        out.defaults.update(data.get("defaults", {}))
        for name, entry in data.get("presets", {}).items():
            if "denoiser" not in entry:
                raise PspcError(f"preset {name!r} in {path} has no 'denoiser' key; add one")
            out.presets[name] = Preset(name, entry["denoiser"], dict(entry.get("params", {})), entry.get("summary", ""))
    return out


def get_preset(name: str, extra: str | os.PathLike | None = None) -> Preset:
    presets = load_registry(extra).presets
    if name not in presets:
        raise UnknownDenoiserError(f"unknown preset {name!r}; known: {', '.join(sorted(presets)) or 'none'}")
    return presets[name]
