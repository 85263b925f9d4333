"""A network's description, {"class_name": ..., "init_kwargs": {...}}, and building a network from it.

The description is the top-level preconditioner's constructor call exactly as the official pickle records it
(`_init_kwargs`: only the arguments that were passed); the constructor signatures supply the rest, as the
official code's own defaults would. It is plain JSON, stored as the `pspc_config`
metadata of our `.safetensors` files.
"""

from __future__ import annotations

import json
from numbers import Number

from pspc_core.errors import UnsafeCheckpointError

from .precond import PRECONDITIONERS


def plain(value):
    """`value` with numpy scalars, tuples and dict subclasses turned into JSON's int/float/list/dict."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "item") and getattr(value, "shape", None) == ():  # numpy scalar
        return plain(value.item())
    if isinstance(value, Number) and not isinstance(value, complex):
        return int(value) if isinstance(value, int) else float(value)
    raise UnsafeCheckpointError(f"network configuration holds a {type(value).__name__}, which is not plain data")


def make_config(class_name: str, init_kwargs: dict) -> dict:
    """The JSON-ready description of a network (checks the class, converts values to plain data)."""
    if class_name not in PRECONDITIONERS:
        raise UnsafeCheckpointError(
            f"network class {class_name!r} is not an EDM preconditioner; expected one of {', '.join(PRECONDITIONERS)}"
        )
    if not isinstance(init_kwargs, dict):
        raise UnsafeCheckpointError("network init_kwargs is not a dict")
    return {"class_name": class_name, "init_kwargs": plain(init_kwargs)}


def config_to_json(config: dict) -> str:
    return json.dumps(config, sort_keys=False)


def config_from_json(text: str) -> dict:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UnsafeCheckpointError(f"pspc_config is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or "class_name" not in data:
        raise UnsafeCheckpointError('pspc_config must be {"class_name": ..., "init_kwargs": {...}}')
    return make_config(data["class_name"], data.get("init_kwargs", {}))


def build_network(config: dict):
    """Construct the preconditioner (and its inner model) the description names, with placeholder weights."""
    config = make_config(config["class_name"], config.get("init_kwargs", {}))
    cls = PRECONDITIONERS[config["class_name"]]
    kwargs = dict(config["init_kwargs"])
    for key in ("img_resolution", "img_channels"):
        if not isinstance(kwargs.get(key), int) or kwargs[key] < 1:
            raise UnsafeCheckpointError(f"network configuration needs a positive integer {key}, got {kwargs.get(key)!r}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError, AssertionError) as exc:
        raise UnsafeCheckpointError(f"cannot build {config['class_name']} from its recorded arguments: {exc}") from None
