"""Denoiser parameters, declared once by a plugin and used by the API, `pspc show` and `-p KEY=VALUE`.

A parameter has a type name (a string, so declarations stay static and import nothing heavy):
`int`, `float`, `str`, `bool`, `path`, `list[int]`, `list[float]`, `dataset` (a dataset object, path or
built-in name) or `choice` (one of `choices`). Its name and default are the factory's own: `signature_mismatches`
lists any drift between the two.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from .errors import ParameterError

MAX_SEED = 2**31 - 1  # the largest seed pspc takes: latent i's seed + i stays below 2^32, all torch's CPU generator
# keeps (seeds 2^32 apart draw the same numbers)

TYPES = ("int", "float", "str", "bool", "path", "list[int]", "list[float]", "dataset", "choice")
REQUIRED = object()  # default of a parameter the user must give


@dataclass(frozen=True)
class Param:
    """One declared parameter: name, type name, default (REQUIRED if none) and a one-line help.

    `data_default` states a default that depends on the data once, in the plugin that owns it: when the
    parameter is not given, `create_denoiser` calls the named function with the run's data (a Dataset, path
    or built-in name) and uses what it returns unless that is None (for instance the network shipped for the
    built-in data set). It is imported only then.
    """

    name: str
    type: str
    default: Any = None
    help: str = ""
    choices: tuple = field(default_factory=tuple)
    data_default: str = ""  # "module:function": f(data) -> a default for this run's data, or None (see below)

    def __post_init__(self):
        if self.type not in TYPES:
            raise ValueError(f"parameter {self.name!r}: type {self.type!r} is not one of {', '.join(TYPES)}")

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def describe_default(self) -> str:
        return "(required)" if self.required else repr(self.default)

    def coerce(self, value: Any) -> Any:
        """Return `value` converted to this parameter's type; strings are parsed as on the command line."""
        if value is None:
            return None
        try:
            return _COERCE[self.type](self, value)
        except (ValueError, TypeError) as exc:
            raise ParameterError(
                f"parameter {self.name!r} expects {self.type}{self._choices_hint()}, got {value!r} ({exc})"
            ) from None

    def _choices_hint(self) -> str:
        return f" (one of {', '.join(map(str, self.choices))})" if self.choices else ""


def _to_bool(p: Param, v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(v, str) and v.strip().lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError("use true or false")


def _to_int(p: Param, v: Any) -> int:
    if isinstance(v, bool) or (isinstance(v, float) and not v.is_integer()):
        raise ValueError("not an integer")
    return int(v)


def _to_list(item):
    def convert(p: Param, v: Any) -> list:
        if isinstance(v, str):
            text = v.strip()
            v = json.loads(text) if text.startswith("[") else [s.strip() for s in text.split(",")]
            if "" in v:
                raise ValueError("it has an empty item; give values separated by single commas")
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            v = [v]  # one value: a list of one (a schedule's "every t")
        if not isinstance(v, (list, tuple)) and not hasattr(v, "tolist"):
            raise ValueError("not a list")
        values = v.tolist() if hasattr(v, "tolist") else list(v)
        return [item(p, x) for x in values]

    return convert


def _to_choice(p: Param, v: Any) -> str:
    if str(v) not in map(str, p.choices):
        raise ValueError("not an accepted value")
    return str(v)


def _to_path(p: Param, v: Any) -> str:
    if not os.fspath(v).strip():
        raise ValueError("it is empty; give a file path")
    return os.fspath(v)


def _to_dataset(p: Param, v: Any) -> Any:
    # Paths and built-in names are resolved to a Dataset by the registry, not here.
    if isinstance(v, (str, os.PathLike)) and not os.fspath(v).strip():
        raise ValueError("it is empty; give a dataset path or builtin:NAME")
    return v if not isinstance(v, os.PathLike) else os.fspath(v)


_COERCE = {
    "int": _to_int,
    "float": lambda p, v: float(v),
    "str": lambda p, v: str(v),
    "bool": _to_bool,
    "path": _to_path,
    "list[int]": _to_list(_to_int),
    "list[float]": _to_list(lambda p, v: float(v)),
    "dataset": _to_dataset,
    "choice": _to_choice,
}


@dataclass(frozen=True)
class Scale:
    """The parameter that sets a denoiser's locality scale, one value per noise level (a schedule), and the
    candidate values worth trying at each level: what `pspc calibrate` fits.

    param      : the schedule parameter (e.g. `patch_sizes`); the denoiser must also accept `t_grid`.
    candidates : "module:function", f(dataset) -> the candidate values for that data (e.g. sizes 1..R).
    """

    param: str
    candidates: str


def signature_mismatches(params, factory) -> list[str]:
    """How the declared `params` differ from the factory's signature (names and defaults); [] when they agree."""
    import inspect

    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return []
    accepted = {n: p for n, p in signature.parameters.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    problems = []
    for p in params:
        if p.name not in accepted:
            if not takes_any:
                problems.append(f"{p.name}: declared but not accepted by the factory")
            continue
        actual = accepted[p.name].default
        if p.required != (actual is inspect.Parameter.empty):
            problems.append(f"{p.name}: required in one declaration but not in the other")
        elif not p.required and actual != p.default:
            problems.append(f"{p.name}: declared default {p.default!r}, factory default {actual!r}")
    return problems


def parse_assignments(items: list[str], option: str = "-p") -> dict[str, str]:
    """Split repeated `KEY=VALUE` strings (the CLI's `-p`) into a dict of raw strings (keys keep any `NAME.`)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ParameterError(f"{option} expects KEY=VALUE, got {item!r}")
        out[key.strip().replace("-", "_")] = value
    return out
