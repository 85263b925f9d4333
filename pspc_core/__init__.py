"""pspc core: datasets, noise schedules, PF-ODE samplers, and the denoiser plugin registry.

Light names (registry, parameters, errors) import eagerly; torch-backed ones load on first use so that
`pspc --help` and `pspc list` stay fast.
"""

from .errors import (DatasetError, ParameterError, PluginError, PspcError, ShapeError, UnknownDenoiserError,
                     UnsafeCheckpointError)
from .hookspecs import hookimpl
from .params import REQUIRED, Param
from .presets import get_preset, load_registry
from .registry import create_denoiser, get_denoiser_spec, get_registry, list_denoisers, reset_registry

_LAZY = {
    "Dataset": "dataset",
    "load_dataset": "dataset",
    "edm_schedule": "schedule",
    "sample": "sampler",
    "Denoiser": "denoiser",
    "split_by_t": "denoiser",
}

__all__ = sorted([
    "DatasetError", "ParameterError", "PluginError", "PspcError", "ShapeError", "UnknownDenoiserError",
    "UnsafeCheckpointError", "hookimpl", "REQUIRED", "Param", "get_preset", "load_registry", "create_denoiser",
    "get_denoiser_spec", "get_registry", "list_denoisers", "reset_registry", *_LAZY,
])


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'pspc_core' has no attribute {name!r}")
