"""Turn the CLI's denoiser options (--denoiser/--preset/-p/--network_pkl, --data, --xflip, --device) into a
ready denoiser, so that `denoise`, `sample` and later commands resolve them the same way."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pspc_core import get_denoiser_spec, get_preset, load_registry
from pspc_core.errors import ParameterError, ShapeError
from pspc_core.params import parse_assignments


@dataclass
class RunSetup:
    name: str
    params: dict[str, Any]  # as given (strings from -p), for job keys and messages
    denoiser: Any
    dataset: Any  # may be None when neither the denoiser nor the command needs data
    device: str
    channels: int
    resolution: int


def default_device(device: str | None) -> str:
    """--device as given, else this process's GPU (its own one under torchrun), else the CPU."""
    from pspc_core.distributed import local_device

    return device or local_device()


def resolve_denoiser(denoiser: str | None, preset: str | None, params: list[str] | None,
                     network_pkl: str | None, registry=None) -> tuple[str, dict[str, Any]]:
    """The denoiser name and raw parameters from the options, the preset and the registry's defaults."""
    reg = load_registry(registry)
    values: dict[str, Any] = {}
    name = denoiser
    if preset:
        p = get_preset(preset, registry)
        if denoiser and denoiser != p.denoiser:
            raise ParameterError(f"--preset {preset} is for denoiser {p.denoiser!r}, not {denoiser!r}; drop one of them")
        name, values = p.denoiser, dict(p.params)
    if network_pkl:
        name = name or "network"
        values["checkpoint"] = network_pkl
    name = name or reg.defaults.get("denoiser", "empirical")
    values.update(parse_assignments(params or []))
    return name, values


def build(denoiser: str | None, preset: str | None, params: list[str] | None, network_pkl: str | None,
          data: str | None, xflip: bool, device: str | None, need_data: bool, registry=None) -> RunSetup:
    """Resolve, load the data if anyone needs it, create the denoiser and move it to the device."""
    from pspc_core import create_denoiser, distributed, load_dataset

    distributed.init()
    name, values = resolve_denoiser(denoiser, preset, params, network_pkl, registry)
    spec = get_denoiser_spec(name)
    takes_data = any(p.type == "dataset" for p in spec.params)
    for key in values:
        spec.param(key)  # unknown parameters fail before any data is loaded
    dataset = None
    if takes_data or need_data or data:
        dataset = load_dataset(data or load_registry(registry).defaults.get("data", "builtin:shapes"), xflip=xflip)
    kwargs = dict(values)
    if takes_data and "dataset" not in kwargs:
        kwargs["dataset"] = dataset
    dev = default_device(device)
    den = create_denoiser(name, **kwargs).to(dev)
    channels = getattr(den, "channels", None) or (dataset.channels if dataset else None)
    resolution = getattr(den, "resolution", None) or (dataset.resolution if dataset else None)
    if dataset is not None and (channels, resolution) != (dataset.channels, dataset.resolution):
        raise ShapeError(
            f"denoiser {name!r} works on {channels}x{resolution}x{resolution} images but the data is "
            f"{dataset.channels}x{dataset.resolution}x{dataset.resolution}; use matching data (--data)"
        )
    if channels is None:
        raise ShapeError(f"denoiser {name!r} does not say its image size; pass --data")
    return RunSetup(name, values, den, dataset, dev, channels, resolution)
