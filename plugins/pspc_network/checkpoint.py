"""Loading a network from an official EDM `.pkl` or from our `.safetensors`, and writing the latter.

Either file reduces to the same two things: a description {"class_name", "init_kwargs"} of the top-level
preconditioner and a state_dict with the official key names. The network is rebuilt from the description by
our own code and the weights are loaded with strict checking, so a file that does not describe exactly the
architecture it carries is refused. The format is recognised from the content, not the file name.
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
from .safe_pickle import NOT_PLAIN, load_edm_pickle, state_dict_of

CONFIG_KEY = "pspc_config"  # safetensors metadata key holding the JSON description


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


def _read_safetensors(data: bytes, name: str) -> tuple[dict, OrderedDict]:
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
    return config_from_json(metadata[CONFIG_KEY]), OrderedDict(state_dict)


def _read_pickle(data: bytes, name: str) -> tuple[dict, OrderedDict]:
    if data[:2] == b"PK":
        raise UnsafeCheckpointError(f"{name} {NOT_PLAIN}: it is a zip archive (a torch.save file?), not a pickle")
    ema = load_edm_pickle(data, name)["ema"]
    init_args, init_kwargs = ema.state.get("_init_args", ()), ema.state.get("_init_kwargs")
    if init_args or not isinstance(init_kwargs, dict):
        raise UnsafeCheckpointError(f"{name} {NOT_PLAIN}: its network does not record its constructor keywords")
    return make_config(ema.class_name, init_kwargs), state_dict_of(ema)


def read_checkpoint(path: str | os.PathLike) -> tuple[dict, OrderedDict]:
    """(description, state_dict) of an EDM `.pkl` or a pspc `.safetensors` file; runs nothing from the file."""
    path = Path(path)
    data = _read_bytes(path)
    if _is_safetensors(data):
        return _read_safetensors(data, str(path))
    return _read_pickle(data, str(path))


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


def load_network(path: str | os.PathLike, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Load the preconditioned network of an EDM `.pkl` or a pspc `.safetensors` file, without running its code.

    The result is our own EDMPrecond / VPPrecond / VEPrecond / iDDPMPrecond: call it as `net(x, sigma,
    class_labels=None, force_fp32=False, augment_labels=None)`, exactly like the official module.
    Raises UnsafeCheckpointError for anything that is not a plain network file.
    """
    config, state_dict = read_checkpoint(path)
    return network_from(config, state_dict).to(device)


def save_safetensors(config: dict, state_dict, path: str | os.PathLike, float16: bool = False,
                     extra_meta: dict | None = None) -> None:
    """Write the state_dict (official key names) with the description as `pspc_config` metadata: the one writer
    of network checkpoints. `float16` stores floating tensors in half precision; `extra_meta` adds text entries."""
    from safetensors.torch import save_file

    tensors = {}
    for key, value in state_dict.items():
        value = value.detach().to("cpu")
        if float16 and value.is_floating_point():
            value = value.to(torch.float16)
        tensors[key] = value.contiguous().clone()
    meta = {k: str(v) for k, v in (extra_meta or {}).items()}
    meta[CONFIG_KEY] = config_to_json(make_config(**config))
    save_file(tensors, os.fspath(path), metadata=meta)


def convert(src: str | os.PathLike, dst: str | os.PathLike) -> torch.nn.Module:
    """Read `src` safely, check that its weights load into the described network, write `dst`; return the network."""
    config, state_dict = read_checkpoint(src)
    net = network_from(config, state_dict)  # refuse to write a file that would not load
    save_safetensors(config, state_dict, dst)
    return net
