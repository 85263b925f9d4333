"""Loading a network from an official EDM `.pkl` or from our `.safetensors`, and writing the latter.

Either file reduces to the same two things: a description {"class_name", "init_kwargs"} of the top-level
preconditioner and a state_dict with the official key names. The network is rebuilt from the description by
our own code and the weights are loaded with strict checking, so a file that does not describe exactly the
architecture it carries is refused. The format is recognised from the content, not the file name.

An EDM pickle also embeds the Python source of the network's classes. pspc never runs it, so a pickle saved from
a modified EDM would silently compute official EDM instead of the trained function: unless told otherwise
(`allow_modified_source`), such a file is refused, naming the first definition that matches no official EDM version
(see `edm_source`). A `.safetensors` written by `convert` keeps no source, only that verdict (`pspc_edm_source`
metadata), and is refused likewise when it was converted from a modified source.
"""

from __future__ import annotations

import json
import os
import struct
from collections import OrderedDict
from pathlib import Path

import torch

from pspc_core.errors import ParameterError, UnsafeCheckpointError

from .config import build_network, config_from_json, config_to_json, make_config
from .edm_source import check_network_source, describe_versions
from .safe_pickle import NOT_PLAIN, load_edm_pickle, persistent_records, state_dict_of

CONFIG_KEY = "pspc_config"  # safetensors metadata key holding the JSON description
SOURCE_KEY = "pspc_edm_source"  # safetensors metadata key: was the EDM source it came from official? (JSON)
ALLOW_HINT = "to load it as official EDM anyway, pass -p allow_modified_source=true (pspc convert: --allow-modified-source)"


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ParameterError(f"checkpoint {path} does not exist; pass the path of an EDM .pkl or .safetensors file") from None
    except IsADirectoryError:
        raise ParameterError(f"checkpoint {path} is a directory; pass a .pkl or .safetensors file") from None


def _is_safetensors(data: bytes) -> bool:
    """safetensors: an 8-byte little-endian header length, then a JSON header starting with '{'."""
    if len(data) < 10:
        return False
    (n,) = struct.unpack("<Q", data[:8])
    return 2 <= n <= len(data) - 8 and data[8:9] == b"{"


def _read_safetensors(data: bytes, name: str) -> tuple[dict, OrderedDict, dict | None]:
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        header_len = struct.unpack("<Q", data[:8])[0]
        metadata = json.loads(data[8 : 8 + header_len]).get("__metadata__") or {}
        state_dict = load(data)
    except (SafetensorError, ValueError, UnicodeDecodeError, AttributeError) as exc:
        raise UnsafeCheckpointError(f"{name} is not a readable safetensors file ({exc})") from None
    if CONFIG_KEY not in metadata:
        raise UnsafeCheckpointError(
            f"{name} has no {CONFIG_KEY!r} metadata describing its network; "
            "make such a file from an EDM .pkl with `pspc convert IN.pkl OUT.safetensors`"
        )
    source = None  # files made by `pspc train`, or converted before sources were checked, say nothing
    if SOURCE_KEY in metadata:
        try:
            source = json.loads(metadata[SOURCE_KEY])
        except json.JSONDecodeError:
            pass
        if not isinstance(source, dict) or not isinstance(source.get("official"), bool):
            raise UnsafeCheckpointError(f'{name}: its {SOURCE_KEY!r} metadata is not {{"official": true|false, ...}}')
    return config_from_json(metadata[CONFIG_KEY]), OrderedDict(state_dict), source


def _read_pickle(data: bytes, name: str) -> tuple[dict, OrderedDict, dict]:
    if data[:2] == b"PK":
        raise UnsafeCheckpointError(f"{name} {NOT_PLAIN}: it is a zip archive (a torch.save file?), not a pickle")
    ema = load_edm_pickle(data, name)["ema"]
    init_args, init_kwargs = ema.state.get("_init_args", ()), ema.state.get("_init_kwargs")
    if init_args or not isinstance(init_kwargs, dict):
        raise UnsafeCheckpointError(f"{name} {NOT_PLAIN}: its network does not record its constructor keywords")
    config = make_config(ema.class_name, init_kwargs)
    classes_by_source: dict[str, dict[str, None]] = {}  # source text -> class names, in tree order
    try:
        state_dict = state_dict_of(ema)
        for record in persistent_records(ema):
            classes_by_source.setdefault(record.module_src, {})[record.class_name] = None
    except RecursionError:
        raise UnsafeCheckpointError(f"{name} {NOT_PLAIN}: its modules nest far deeper than any network's") from None
    verdict = check_network_source(classes_by_source)
    if verdict.official:
        return config, state_dict, {"official": True, "versions": list(verdict.versions)}
    return config, state_dict, {"official": False, "problem": verdict.problem}


def _read(path: str | os.PathLike) -> tuple[dict, OrderedDict, dict | None]:
    """(description, state_dict, source verdict or None) of an EDM `.pkl` or a pspc `.safetensors` file whose
    weights are all finite (a network with a NaN weight puts NaN into every output)."""
    path = Path(path)
    data = _read_bytes(path)
    read = _read_safetensors if _is_safetensors(data) else _read_pickle
    config, state_dict, source = read(data, str(path))
    for name, tensor in state_dict.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise UnsafeCheckpointError(f"{path} holds NaN or infinite weights ({name}); it cannot denoise: use a "
                                        "checkpoint from a run whose loss stayed finite")
    return config, state_dict, source


def _require_official(source: dict | None, path, allow_modified_source: bool) -> None:
    """Refuse a network whose EDM source was modified, unless `allow_modified_source`."""
    if source is None or source["official"] or allow_modified_source:
        return
    problem = source.get("problem") or "its source differs from every official EDM version"
    origin = "was converted from a network saved from" if source.get("converted") else "was saved from"
    raise UnsafeCheckpointError(
        f"{path} {origin} a modified EDM: {problem} ({describe_versions()}), and pspc computes official EDM; "
        f"{ALLOW_HINT}"
    )


def read_checkpoint(path: str | os.PathLike, allow_modified_source: bool = False) -> tuple[dict, OrderedDict]:
    """(description, state_dict) of an EDM `.pkl` or a pspc `.safetensors` file; runs nothing from the file.

    A network whose embedded EDM source is not that of an official EDM version is refused unless
    `allow_modified_source` (it is then read as official EDM: the modification is ignored, never run)."""
    config, state_dict, source = _read(path)
    _require_official(source, path, allow_modified_source)
    return config, state_dict


def network_from(config: dict, state_dict) -> torch.nn.Module:
    """Build the described network and load `state_dict` strictly; returned in eval mode, without gradients."""
    net = build_network(config)
    try:
        net.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        detail = str(exc).split("\n\t", 1)[-1].replace("\n\t", "; ")
        raise UnsafeCheckpointError(
            f"the weights do not match the {config['class_name']} their file describes: {detail[:600]}"
        ) from None
    return net.eval().requires_grad_(False)


def load_network(path: str | os.PathLike, device: str | torch.device = "cpu",
                 allow_modified_source: bool = False) -> torch.nn.Module:
    """Load the preconditioned network of an EDM `.pkl` or a pspc `.safetensors` file, without running its code.

    The result is our own EDMPrecond / VPPrecond / VEPrecond / iDDPMPrecond: call it as `net(x, sigma,
    class_labels=None, force_fp32=False, augment_labels=None)`, exactly like the official module.
    Raises UnsafeCheckpointError for anything that is not a plain network file, and for a network saved from a
    modified EDM unless `allow_modified_source`.
    """
    config, state_dict = read_checkpoint(path, allow_modified_source)
    return network_from(config, state_dict).to(device)


def save_safetensors(config: dict, state_dict, path: str | os.PathLike, source: dict | None = None,
                     float16: bool = False, extra_meta: dict | None = None) -> None:
    """Write the state_dict (official key names) with the description as `pspc_config` metadata, and `source`
    (whether the EDM source it came from was official) as `pspc_edm_source`: the one writer of network
    checkpoints. `float16` stores floating tensors in half precision; `extra_meta` adds text entries."""
    from safetensors.torch import save_file

    tensors = {}
    for key, value in state_dict.items():
        value = value.detach().to("cpu")
        if float16 and value.is_floating_point():
            value = value.to(torch.float16)
        tensors[key] = value.contiguous().clone()
    metadata = {k: str(v) for k, v in (extra_meta or {}).items()}
    metadata[CONFIG_KEY] = config_to_json(make_config(**config))
    if source is not None:
        metadata[SOURCE_KEY] = json.dumps(source)
    save_file(tensors, os.fspath(path), metadata=metadata)


def convert(src: str | os.PathLike, dst: str | os.PathLike, allow_modified_source: bool = False) -> torch.nn.Module:
    """Read `src` safely, check that its weights load into the described network, write `dst`; return the network.

    A network saved from a modified EDM is refused unless `allow_modified_source`; `dst` then records that it
    was converted from a modified source, so that loading it needs `allow_modified_source` too."""
    config, state_dict, source = _read(src)
    _require_official(source, src, allow_modified_source)
    net = network_from(config, state_dict)  # refuse to write a file that would not load
    if source is not None and not source["official"]:
        source = {**source, "converted": True}
    save_safetensors(config, state_dict, dst, source)
    return net
