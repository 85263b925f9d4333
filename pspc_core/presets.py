"""Named presets and defaults from ``registry.toml`` (the project's own, plus a user's file).

Format::

    [defaults]                     # CLI defaults when an option is not given
    denoiser = "empirical"
    data = "builtin:shapes"

    [aliases]                      # an option that stands for one denoiser parameter
    network_pkl = "network.checkpoint"

    [presets.NAME]                 # `--preset NAME`: a denoiser plus parameter values
    denoiser = "pspc_sq"
    summary = "one line"
    params = { patch_sizes = [32, 32, 23] }
    calibration = { seeds = [100000, 100032], ... }   # written by `pspc calibrate`: what it was fitted on

A user's file (``--registry PATH`` or ``PSPC_REGISTRY``) has the same form; its entries override the project's.
The project's file is the repository's top-level ``registry.toml``, installed inside this package (a wheel
carries it), so presets work the same for editable and non-editable installs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from .errors import PspcError, UnknownPresetError

ENV_REGISTRY = "PSPC_REGISTRY"
PROJECT_REGISTRY = Path(__file__).resolve().parent / "registry.toml"  # a link to the top-level file


@dataclass(frozen=True)
class Preset:
    name: str
    denoiser: str
    params: dict = field(default_factory=dict)
    summary: str = ""
    calibration: dict = field(default_factory=dict)  # how `pspc calibrate` fitted it (its latents' seeds, ...)


@dataclass
class RegistryFile:
    defaults: dict = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    presets: dict[str, Preset] = field(default_factory=dict)


MAX_BYTES = 4 << 20  # a registry file is a few kB; a larger one is a wrong path


def _read(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise PspcError(f"registry file {path} does not exist; pass an existing TOML file") from None
    except OSError as exc:
        raise PspcError(f"registry file {path} cannot be read ({exc.strerror or exc}); pass a readable TOML file") from None
    if len(data) > MAX_BYTES:
        raise PspcError(f"registry file {path} is over {MAX_BYTES >> 20} MB; pass the registry TOML file, not another file")
    try:
        return tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PspcError(f"registry file {path} is not valid TOML ({exc}); fix the file") from None


def load_registry(extra: str | os.PathLike | None = None) -> RegistryFile:
    """Merge the project's ``registry.toml`` with `extra` (or ``$PSPC_REGISTRY``); later files win."""
    out = RegistryFile()
    if not PROJECT_REGISTRY.exists():
        raise PspcError(f"the project's registry.toml is missing from {PROJECT_REGISTRY.parent}; reinstall pspc")
    paths = [PROJECT_REGISTRY]
    extra = extra or os.environ.get(ENV_REGISTRY)
    if extra:
        paths.append(Path(extra))
    for path in paths:
        data = _read(path)
        defaults, aliases, presets = data.get("defaults", {}), data.get("aliases", {}), data.get("presets", {})
        if not all(isinstance(t, dict) for t in (defaults, aliases, presets)):
            raise PspcError(f"registry file {path}: [defaults], [aliases] and [presets.NAME] must be tables; "
                            "see README, registry.toml")
        out.defaults.update(defaults)
        out.aliases.update(aliases)
        for name, entry in presets.items():
            if not isinstance(entry, dict) or not isinstance(entry.get("denoiser"), str):
                raise PspcError(f"preset {name!r} in {path} has no 'denoiser' name; add one")
            if not isinstance(entry.get("params", {}), dict):
                raise PspcError(f"preset {name!r} in {path}: params must be a table, e.g. params = {{ rank = 64 }}")
            out.presets[name] = Preset(name, entry["denoiser"], dict(entry.get("params", {})), entry.get("summary", ""),
                                       dict(entry.get("calibration", {})))
    return out


def get_preset(name: str, extra: str | os.PathLike | None = None) -> Preset:
    presets = load_registry(extra).presets
    if name not in presets:
        import difflib

        close = difflib.get_close_matches(name, sorted(presets), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UnknownPresetError(f"unknown preset {name!r}{hint}; known: {', '.join(sorted(presets)) or 'none'} "
                                 "(see `pspc list`)")
    return presets[name]
