"""The plugin manager: plugins found through the ``pspc`` entry-point group, loaded lazily and once, and the
denoisers and commands they register.

Set ``PSPC_PLUGINS`` to a comma-separated list of entry-point names to load only those (empty: none), so that a
broken plugin can never lock the user out. A plugin that fails to load, or registers a denoiser name another
plugin already took, is kept out and shown as failed by ``pspc plugins``; the built-in plugins (this
distribution's) load first, so their names always win.
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
from .params import Param, Scale

ENV_PLUGINS = "PSPC_PLUGINS"
BUILTIN_DISTRIBUTION = "pspc"


@dataclass(frozen=True)
class DenoiserSpec:
    """What a plugin declared about one denoiser."""

    name: str
    summary: str
    params: tuple[Param, ...]
    factory: str | Callable
    plugin: str = ""
    scale: Scale | None = None

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        accepted = ", ".join(p.name for p in self.params) or "none"
        raise ParameterError(f"denoiser {self.name!r} has no parameter {name!r}; accepted: {accepted}")

    @property
    def takes_data(self) -> bool:
        return any(p.type == "dataset" for p in self.params)

    def load_factory(self) -> Callable:
        if callable(self.factory):
            return self.factory
        return load_object(self.factory, f"denoiser {self.name!r} of plugin {self.plugin!r}")


def load_object(path: str, what: str) -> Any:
    """The object named by "module:attr"; a one-line PluginError naming `what` if it cannot be imported."""
    module, _, attr = path.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise PluginError(f"{what} cannot be loaded: {path} ({type(exc).__name__}: {exc}); reinstall the plugin "
                          f"or leave it out with {ENV_PLUGINS}") from None


@dataclass
class PluginInfo:
    """An installed plugin: entry-point name, distribution, version, hooks, and any load error."""

    name: str
    distribution: str = ""
    version: str = ""
    hooks: list[str] = field(default_factory=list)
    error: str = ""


class PluginManager:
    """The pluggy manager plus what its plugins registered: denoiser specs, and commands on demand."""

    def __init__(self):
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self.notices: list[str] = []  # one-line warnings for the user (unknown PSPC_PLUGINS names, clashes)
        self._specs: dict[str, DenoiserSpec] | None = None

    def load_entry_points(self) -> None:
        wanted = os.environ.get(ENV_PLUGINS)
        allowed = None if wanted is None else {w.strip() for w in wanted.split(",") if w.strip()}
        points = sorted(metadata.entry_points(group=hookspecs.PROJECT),
                        key=lambda ep: getattr(ep.dist, "name", "") != BUILTIN_DISTRIBUTION)  # built-ins first
        for ep in points:
            if (allowed is not None and ep.name not in allowed) or ep.name in self.plugins:
                continue
            info = PluginInfo(ep.name, getattr(ep.dist, "name", ""), getattr(ep.dist, "version", ""))
            self.plugins[ep.name] = info
            try:
                self.pm.register(ep.load(), name=ep.name)
            except Exception as exc:  # a broken plugin must not break the others
                info.error = f"{type(exc).__name__}: {exc}"
                self.notices.append(f"plugin {ep.name!r} failed to load ({info.error}); see `pspc plugins`")
        unknown = sorted((allowed or set()) - {ep.name for ep in points})
        if unknown:
            installed = ", ".join(sorted({ep.name for ep in points})) or "none"
            self.notices.append(f"{ENV_PLUGINS} names {', '.join(unknown)}, which no installed plugin provides "
                                f"(installed: {installed})")
        self._specs = None

    def take_notices(self) -> list[str]:
        """The one-line warnings gathered so far (each returned once), after running the registration hooks."""
        self.specs
        notices, self.notices = self.notices, []
        return notices

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

    def _implementations(self, hook: str):
        """(plugin name, hook function) in load order: built-ins first, then as installed."""
        order = list(self.plugins)
        impls = getattr(self.pm.hook, hook).get_hookimpls()
        return sorted(((i.plugin_name, i.function) for i in impls),
                      key=lambda pair: order.index(pair[0]) if pair[0] in order else len(order))

    def _note(self, plugin: str, hook: str) -> PluginInfo:
        info = self.plugins.setdefault(plugin, PluginInfo(plugin))
        if hook not in info.hooks:
            info.hooks.append(hook)
        return info

    def _collect(self) -> dict[str, DenoiserSpec]:
        specs: dict[str, DenoiserSpec] = {}
        for plugin, function in self._implementations("register_denoisers"):
            info = self._note(plugin, "register_denoisers")
            mine: dict[str, DenoiserSpec] = {}

            def register(name, *, summary, params=(), factory, scale=None, _plugin=plugin):
                mine[name] = DenoiserSpec(name, summary, tuple(params), factory, _plugin, scale)

            try:
                function(register=register)
            except Exception as exc:
                info.error = f"{type(exc).__name__}: {exc}"
                continue
            taken = sorted(n for n in mine if n in specs)
            if taken:  # the first registration stands; the later plugin is kept out whole
                info.error = (f"registers {', '.join(taken)}, already registered by plugin "
                              f"{specs[taken[0]].plugin!r}; uninstall one or choose with {ENV_PLUGINS}")
                self.notices.append(f"plugin {plugin!r} is not loaded: it {info.error}")
                continue
            specs.update(mine)
        return specs

    def add_commands(self, app) -> None:
        """Let every plugin add its commands to the typer `app`; a plugin whose hook fails is marked failed."""
        for plugin, function in self._implementations("register_commands"):
            info = self._note(plugin, "register_commands")
            if info.error:
                continue
            try:
                function(app=app)
            except Exception as exc:
                info.error = f"{type(exc).__name__}: {exc}"


_MANAGER: PluginManager | None = None


def plugin_manager() -> PluginManager:
    """The process-wide plugin manager, with installed plugins loaded on first use."""
    global _MANAGER
    if _MANAGER is None:
        _MANAGER = PluginManager()
        _MANAGER.load_entry_points()
    return _MANAGER


def reset_plugins() -> None:
    """Forget loaded plugins (tests, or after changing ``PSPC_PLUGINS``)."""
    global _MANAGER
    _MANAGER = None


def list_denoisers() -> list[DenoiserSpec]:
    """Every registered denoiser, sorted by name. Imports no plugin implementation code."""
    return sorted(plugin_manager().specs.values(), key=lambda s: s.name)


def get_denoiser_spec(name: str) -> DenoiserSpec:
    specs = plugin_manager().specs
    if name in specs:
        return specs[name]
    known = sorted(specs)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise UnknownDenoiserError(
        f"unknown denoiser {name!r}{hint}; known: {', '.join(known) or 'none, no plugin loaded'} (see `pspc list`)"
    )


def resolve_params(spec: DenoiserSpec, params: dict[str, Any], data=None) -> dict[str, Any]:
    """Check names, convert types and fill defaults; the result is what the factory receives.

    `data` is the run's data (Dataset, path or built-in name): it fills a `dataset` parameter that was not
    given, and is what data-dependent defaults (`Param.data_default`) are computed from.
    """
    out = {key: spec.param(key).coerce(value) for key, value in params.items()}
    for p in spec.params:
        if p.type == "dataset" and out.get(p.name) is None and data is not None:
            out[p.name] = data
    context = next((out[p.name] for p in spec.params if p.type == "dataset" and out.get(p.name) is not None), data)
    for p in spec.params:
        if p.name in out:
            continue
        if p.data_default and context is not None:
            value = load_object(p.data_default, f"default of {spec.name}.{p.name}")(context)
            if value is not None:
                out[p.name] = p.coerce(value)
                continue
        if p.required:
            raise ParameterError(f"denoiser {spec.name!r} needs parameter {p.name!r}: {p.help}")
        out[p.name] = p.default
    for p in spec.params:
        if p.type == "dataset" and out.get(p.name) is not None:
            from .dataset import as_dataset

            out[p.name] = as_dataset(out[p.name])
    return out


def create_denoiser(name: str, *, data=None, **params):
    """Build the denoiser `name` with `params` (strings are parsed as on the command line).

    `data` (optional) is the run's data: the default of a `dataset` parameter and of data-dependent defaults.
    """
    spec = get_denoiser_spec(name)
    return spec.load_factory()(**resolve_params(spec, params, data))
