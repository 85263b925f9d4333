"""pspc core: the denoiser contract, datasets, noise schedules, PF-ODE samplers, parameters, presets, the plugin
manager, errors, and (in `pspc_core.runtime`) the small runtime every command shares.

Light names (plugins, parameters, presets, errors) import eagerly; torch-backed ones load on first use so that
`pspc --help` and `pspc list` stay fast.
"""

from .errors import (DatasetError, ParameterError, PluginError, PspcError, PspcWarning, RunError, ShapeError,
                     UnknownDenoiserError, UnknownPresetError, UnsafeCheckpointError)
from .hookspecs import hookimpl
from .params import REQUIRED, Param, Scale
from .plugins import create_denoiser, get_denoiser_spec, list_denoisers, plugin_manager, reset_plugins
from .presets import get_preset, load_registry

_LAZY = {
    "Dataset": "dataset",
    "load_dataset": "dataset",
    "edm_schedule": "schedule",
    "GridSchedule": "schedule",
    "sample": "sampler",
    "Denoiser": "denoiser",
    "split_by_t": "denoiser",
}

__all__ = sorted([
    "DatasetError", "ParameterError", "PluginError", "PspcError", "PspcWarning", "RunError", "ShapeError",
    "UnknownDenoiserError", "UnknownPresetError", "UnsafeCheckpointError", "hookimpl", "REQUIRED", "Param", "Scale",
    "get_preset", "load_registry", "create_denoiser", "get_denoiser_spec", "list_denoisers", "plugin_manager",
    "reset_plugins", *_LAZY,
])


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'pspc_core' has no attribute {name!r}")
