"""The denoiser registry: plugins found through the ``pspc`` entry-point group, loaded lazily and once.

Set ``PSPC_PLUGINS`` to a comma-separated list of entry-point names to load only those (empty: none), so that
a broken plugin can never lock the user out.
"""

from __future__ import annotations

import difflib
import importlib
import os
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable

import pluggy

from . import hookspecs
from .errors import ParameterError, PluginError, UnknownDenoiserError
from .params import Param

ENV_PLUGINS = "PSPC_PLUGINS"


@dataclass(frozen=True)
class DenoiserSpec:
    """What a plugin declared about one denoiser."""

    name: str
    summary: str
    params: tuple[Param, ...]
    factory: str | Callable
    plugin: str = ""

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        accepted = ", ".join(p.name for p in self.params) or "none"
        raise ParameterError(f"denoiser {self.name!r} has no parameter {name!r}; accepted: {accepted}")

    def load_factory(self) -> Callable:
        if callable(self.factory):
            return self.factory
        module, _, attr = self.factory.partition(":")
        return getattr(importlib.import_module(module), attr)


@dataclass
class PluginInfo:
    """An installed plugin: entry-point name, distribution, version, hooks, and any load error."""

    name: str
    distribution: str = ""
    version: str = ""
    hooks: list[str] = field(default_factory=list)
    error: str = ""


class Registry:
    """Plugin manager plus the denoiser specs its plugins registered."""

    def __init__(self):
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self._specs: dict[str, DenoiserSpec] | None = None

    def load_entry_points(self) -> None:
        wanted = os.environ.get(ENV_PLUGINS)
        allowed = None if wanted is None else {w.strip() for w in wanted.split(",") if w.strip()}
        for ep in metadata.entry_points(group=hookspecs.PROJECT):
            if allowed is not None and ep.name not in allowed:
                continue
            if ep.name in self.plugins:
                continue
            info = PluginInfo(ep.name, getattr(ep.dist, "name", ""), getattr(ep.dist, "version", ""))
            self.plugins[ep.name] = info
            try:
                self.pm.register(ep.load(), name=ep.name)
            except Exception as exc:  # a broken plugin must not break the others
                info.error = f"{type(exc).__name__}: {exc}"
        self._specs = None

    def register_plugin(self, plugin: Any, name: str) -> None:
        """Register an in-process plugin object (tests, notebooks) beside the installed ones."""
        self.pm.register(plugin, name=name)
        self.plugins[name] = PluginInfo(name, "(in process)")
        self._specs = None

    def unregister_plugin(self, name: str) -> None:
        self.pm.unregister(name=name)
        self.plugins.pop(name, None)
        self._specs = None

    @property
    def specs(self) -> dict[str, DenoiserSpec]:
        if self._specs is None:
            self._specs = self._collect()
        return self._specs

    def _collect(self) -> dict[str, DenoiserSpec]:
        specs: dict[str, DenoiserSpec] = {}
        for impl in self.pm.hook.register_denoisers.get_hookimpls():
            plugin = impl.plugin_name

            def register(name, *, summary, params=(), factory, _plugin=plugin):
                if name in specs:
                    raise PluginError(
                        f"denoiser {name!r} is registered by both plugin {specs[name].plugin!r} and plugin "
                        f"{_plugin!r}; uninstall one or limit plugins with {ENV_PLUGINS}"
                    )
                specs[name] = DenoiserSpec(name, summary, tuple(params), factory, _plugin)

            info = self.plugins.setdefault(plugin, PluginInfo(plugin))
            if "register_denoisers" not in info.hooks:
                info.hooks.append("register_denoisers")
            try:
                impl.function(register=register)
            except PluginError:
                raise
            except Exception as exc:
                info.error = f"{type(exc).__name__}: {exc}"
        return specs


_REGISTRY: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, with installed plugins loaded on first use."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = Registry()
        _REGISTRY.load_entry_points()
    return _REGISTRY


def reset_registry() -> None:
    """Forget loaded plugins (tests, or after changing ``PSPC_PLUGINS``)."""
    global _REGISTRY
    _REGISTRY = None


def list_denoisers() -> list[DenoiserSpec]:
    """Every registered denoiser, sorted by name. Imports no plugin implementation code."""
    return sorted(get_registry().specs.values(), key=lambda s: s.name)


def get_denoiser_spec(name: str) -> DenoiserSpec:
    specs = get_registry().specs
    if name in specs:
        return specs[name]
    known = sorted(specs)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise UnknownDenoiserError(
        f"unknown denoiser {name!r}{hint}; known: {', '.join(known) or 'none, no plugin loaded'} (see `pspc list`)"
    )


def resolve_params(spec: DenoiserSpec, params: dict[str, Any]) -> dict[str, Any]:
    """Check names, convert types and fill defaults; the result is what the factory receives."""
    out = {}
    for key, value in params.items():
        out[key] = spec.param(key).coerce(value)
    for p in spec.params:
        if p.name not in out:
            if p.required:
                raise ParameterError(f"denoiser {spec.name!r} needs parameter {p.name!r}: {p.help}")
            out[p.name] = p.default
    for p in spec.params:
        if p.type == "dataset" and out.get(p.name) is not None:
            from .dataset import as_dataset

            out[p.name] = as_dataset(out[p.name])
    return out


def create_denoiser(name: str, **params):
    """Build the denoiser `name` with `params` (strings are parsed as on the command line)."""
    spec = get_denoiser_spec(name)
    return spec.load_factory()(**resolve_params(spec, params))
