"""Reading an official EDM network pickle without executing anything it contains.

The official reader `exec`s the Python source embedded in every persistent object (`module_src`) and lets
pickle call whatever globals the file names. Here a restricted unpickler resolves only the handful of globals
such pickles use (:data:`ALLOWED`; docs/edm-networks.md, "Pickles"), each to an inert replacement: a persistent object becomes a
:class:`PersistentRecord` (class name, version, state; the source is kept as text, never compiled, and
`edm_source` checks it against the official EDM versions), a `torch.nn.ModuleDict` a :class:`ModuleDictRecord`;
tensors are rebuilt by torch's weights-only loader once the header of their storage record has passed a restricted
unpickler of our own (so a tampered record is refused in one line, never with torch's advice to load unsafely).
Any other global refuses the file with :class:`UnsafeCheckpointError` before anything it names is called.
"""

from __future__ import annotations

import collections
import io
import pickle
import warnings
from collections import OrderedDict
from types import MappingProxyType

import numpy as np
import torch

from pspc_core.errors import UnsafeCheckpointError

PERSISTENCE_VERSION = 6  # torch_utils.persistence's format version; the official reader requires it too
NOT_PLAIN = "is not a plain EDM checkpoint"


class PersistentRecord:
    """What `torch_utils.persistence._reconstruct_persistent_obj(meta)` would have rebuilt, as inert data."""

    __slots__ = ("class_name", "version", "state", "module_src")

    def __init__(self, class_name: str, version: int, state: dict, module_src: str):
        self.class_name, self.version, self.state, self.module_src = class_name, version, state, module_src

    def __repr__(self) -> str:
        return f"PersistentRecord({self.class_name!r})"


class ModuleDictRecord:
    """A pickled `torch.nn.ModuleDict`: only its state (children in `_modules`) is kept."""

    state = MappingProxyType({})  # until BUILD supplies one (pickle creates the object without __init__)

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise UnsafeCheckpointError(f"a ModuleDict state is a {type(state).__name__}, not a dict")
        self.state = state


class _EasyDict(dict):
    """`dnnlib.util.EasyDict`, read as a plain dict (its attribute access is not needed)."""

    def __setstate__(self, state):
        pass


def _reconstruct_persistent_obj(meta):
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise UnsafeCheckpointError("a persistent object record is not a dict of type 'class'")
    if meta.get("version") != PERSISTENCE_VERSION:
        raise UnsafeCheckpointError(
            f"persistent objects of format version {meta.get('version')!r} are not supported "
            f"(EDM writes version {PERSISTENCE_VERSION})"
        )
    class_name, state, src = meta.get("class_name"), meta.get("state"), meta.get("module_src", "")
    if not isinstance(class_name, str) or not isinstance(state, dict) or not isinstance(src, str):
        raise UnsafeCheckpointError("a persistent object record lacks a class name or a state dict")
    return PersistentRecord(class_name, meta["version"], state, src)


LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # first pickle of a legacy (non-zip) torch.save stream
STORAGE_TYPES = {f"{t}Storage" for t in ("Float", "Double", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte",
                                         "Bool")}


class _StorageHeaderUnpickler(pickle.Unpickler):
    """Reads the small pickles that precede a storage's raw data, resolving only `torch.<Type>Storage` names."""

    def find_class(self, module: str, name: str):
        if module == "torch" and name in STORAGE_TYPES:
            return name  # a placeholder: only the name is needed to check the record
        raise UnsafeCheckpointError(
            f"a tensor storage record refers to {module}.{name}, which a plain tensor storage never contains"
        )

    def persistent_load(self, pid):
        return pid


def _check_storage_header(blob: bytes) -> None:
    """Refuse, in one line of our own, a storage record whose header is not that of a plain legacy storage stream:
    magic number, protocol version, system info, the storage reference, the key list (EDM writes exactly these)."""
    stream = io.BytesIO(blob)
    try:
        if _StorageHeaderUnpickler(stream).load() != LEGACY_MAGIC:
            raise UnsafeCheckpointError("a tensor storage record does not start with torch's storage header")
        for _ in range(4):
            _StorageHeaderUnpickler(stream).load()
    except UnsafeCheckpointError:
        raise
    except Exception as exc:
        raise UnsafeCheckpointError(
            f"a tensor storage record is damaged: its header is not a complete pickle ({type(exc).__name__})"
        ) from None


def _storage_from_bytes(blob):
    """`torch.storage._load_from_bytes`, but through torch's weights-only loader after our own header check.

    torch's own refusals span several lines and recommend loading unsafely; none of their text is passed on."""
    if not isinstance(blob, (bytes, bytearray)):
        raise UnsafeCheckpointError("a tensor storage is not a byte string")
    _check_storage_header(bytes(blob))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TypedStorage deprecation notices
            storage = torch.load(io.BytesIO(bytes(blob)), weights_only=True, map_location="cpu")
    except Exception as exc:
        raise UnsafeCheckpointError(
            f"a tensor storage record is damaged: torch could not rebuild a plain storage from it ({type(exc).__name__})"
        ) from None
    if not isinstance(storage, (torch.storage.TypedStorage, torch.UntypedStorage)):
        raise UnsafeCheckpointError(f"a tensor storage blob holds a {type(storage).__name__}, not a storage")
    return storage


def _no_hooks(hooks) -> None:
    if hooks is not None and (not isinstance(hooks, dict) or hooks):
        raise UnsafeCheckpointError("a tensor carries backward hooks, which EDM checkpoints never have")


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks, metadata=None):
    if not isinstance(storage, (torch.storage.TypedStorage, torch.UntypedStorage)):
        raise UnsafeCheckpointError(f"a tensor is built from a {type(storage).__name__}, not a storage")
    if not all(isinstance(v, int) for v in (storage_offset, *size, *stride)):
        raise UnsafeCheckpointError("a tensor's offset, size or stride is not made of integers")
    _no_hooks(backward_hooks)
    if metadata:
        raise UnsafeCheckpointError("a tensor carries extra metadata, which EDM checkpoints never have")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return torch._utils._rebuild_tensor_v2(storage, storage_offset, tuple(size), tuple(stride), False,
                                                   OrderedDict())
        except RuntimeError as exc:
            raise UnsafeCheckpointError(f"a tensor does not fit its storage ({exc})") from None


def _rebuild_parameter(data, requires_grad, backward_hooks):
    if not isinstance(data, torch.Tensor):
        raise UnsafeCheckpointError(f"a parameter wraps a {type(data).__name__}, not a tensor")
    _no_hooks(backward_hooks)
    return data


def _numpy_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.kind not in "biuf" or dtype.hasobject:
        raise UnsafeCheckpointError(f"a numpy scalar of dtype {dtype!r} is not a plain number")
    if not isinstance(data, (bytes, bytearray)) or len(data) != dtype.itemsize:
        raise UnsafeCheckpointError("a numpy scalar's data does not match its dtype")
    return np.frombuffer(bytes(data), dtype=dtype)[0]


# (module, name) as written in the pickle -> what it means here. Nothing else resolves.
ALLOWED = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("torch.nn.modules.container", "ModuleDict"): ModuleDictRecord,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy", "dtype"): np.dtype,
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("builtins", "set"): set,
    ("__builtin__", "set"): set,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED` globals and no persistent ids."""

    def find_class(self, module: str, name: str):
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise UnsafeCheckpointError(
                f"the pickle refers to {module}.{name}, which a plain EDM network pickle never contains; "
                "refusing to load it (nothing from the file was run)"
            ) from None

    def persistent_load(self, pid):
        raise UnsafeCheckpointError("the pickle uses persistent ids (a torch.save file?), which EDM pickles do not")


def load_edm_pickle(data: bytes, name: str = "checkpoint") -> dict:
    """Unpickle `data` with :class:`RestrictedUnpickler`; the result is the top-level dict of records."""
    try:
        obj = RestrictedUnpickler(io.BytesIO(data)).load()
    except UnsafeCheckpointError as exc:
        raise UnsafeCheckpointError(f"{name} {NOT_PLAIN}: {exc}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError,
            UnicodeDecodeError, OverflowError, RecursionError) as exc:
        raise UnsafeCheckpointError(
            f"{name} {NOT_PLAIN}: it is not a complete pickle ({type(exc).__name__}: {exc}); "
            "is the file truncated or of another format?"
        ) from None
    if not isinstance(obj, dict) or not isinstance(obj.get("ema"), PersistentRecord):
        raise UnsafeCheckpointError(f"{name} {NOT_PLAIN}: it does not hold a network under the key 'ema'")
    return obj


def persistent_records(record, seen: set | None = None):
    """Every PersistentRecord of the tree under `record` (itself included), each once, parents first."""
    seen = set() if seen is None else seen
    if id(record) in seen:
        return
    seen.add(id(record))
    if isinstance(record, PersistentRecord):
        yield record
    modules = record.state.get("_modules") if isinstance(record, (PersistentRecord, ModuleDictRecord)) else None
    for child in (modules.values() if isinstance(modules, dict) else ()):
        if isinstance(child, (PersistentRecord, ModuleDictRecord)):
            yield from persistent_records(child, seen)


def state_dict_of(record, prefix: str = "", out: OrderedDict | None = None) -> OrderedDict:
    """The state_dict the record tree describes, in `nn.Module.state_dict()` order and naming."""
    out = OrderedDict() if out is None else out
    state = record.state
    params, buffers, modules = (state.get(k, {}) for k in ("_parameters", "_buffers", "_modules"))
    skip = state.get("_non_persistent_buffers_set") or set()
    if not all(isinstance(d, dict) for d in (params, buffers, modules)):
        raise UnsafeCheckpointError(f"module {prefix or 'ema'} has a malformed state")
    for name, tensor in [*params.items(), *((n, b) for n, b in buffers.items() if n not in skip)]:
        if tensor is None:
            continue
        if not isinstance(tensor, torch.Tensor):
            raise UnsafeCheckpointError(f"{prefix}{name} is a {type(tensor).__name__}, not a tensor")
        out[prefix + name] = tensor
    for name, child in modules.items():
        if child is None:
            continue
        if not isinstance(child, (PersistentRecord, ModuleDictRecord)):
            raise UnsafeCheckpointError(f"{prefix}{name} is a {type(child).__name__}, not a module")
        state_dict_of(child, f"{prefix}{name}.", out)
    return out
