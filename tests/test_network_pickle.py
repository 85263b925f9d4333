"""Reading EDM network pickles without running them: the official layout loads, anything else is refused.

The pickles here are written by the tests themselves in the official layout (EDM_FORMAT.md §2): every network
class as a `torch_utils.persistence._reconstruct_persistent_obj(meta)` reduce carrying module source text,
`torch.nn.ModuleDict` containers, tensors through `torch.storage._load_from_bytes`, numpy scalars.
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import sys
import types
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

from pspc_core.errors import ParameterError, UnsafeCheckpointError
from pspc_network import build_network, load_network, read_checkpoint, save_safetensors

# ---------------------------------------------------------------------------------------------------------------
# A writer of official-layout pickles (test-only: it needs a stand-in `torch_utils.persistence` module to name).

HARMLESS_SRC = '"""Stand-in for training/networks.py."""\n\nclass EDMPrecond:\n    pass\n'

SMALL = {
    "ddpmpp-edm-cond": {"class_name": "EDMPrecond", "init_kwargs": dict(
        model_type="SongUNet", embedding_type="positional", encoder_type="standard", decoder_type="standard",
        channel_mult_noise=1, resample_filter=[1, 1], model_channels=16, channel_mult=[1, 2], augment_dim=9,
        dropout=0.13, use_fp16=False, num_blocks=1, attn_resolutions=[8], img_resolution=16, img_channels=3,
        label_dim=4)},
    "ncsnpp-ve": {"class_name": "VEPrecond", "init_kwargs": dict(
        model_type="SongUNet", embedding_type="fourier", encoder_type="residual", decoder_type="standard",
        channel_mult_noise=2, resample_filter=[1, 3, 3, 1], model_channels=16, channel_mult=[1, 2],
        num_blocks=1, attn_resolutions=[8], img_resolution=16, img_channels=3, label_dim=0)},
    "skip-vp": {"class_name": "VPPrecond", "init_kwargs": dict(
        encoder_type="skip", decoder_type="skip", model_channels=16, channel_mult=[1, 2, 2], num_blocks=1,
        attn_resolutions=[8], img_resolution=16, img_channels=1)},
    "adm-iddpm": {"class_name": "iDDPMPrecond", "init_kwargs": dict(
        model_channels=32, channel_mult=[1, 2], num_blocks=1, attn_resolutions=[8], img_resolution=16,
        img_channels=3, label_dim=0)},
}


def perturbed(config: dict, seed: int = 0) -> torch.nn.Module:
    """A network of `config` with every weight moved by seeded noise, so that every layer matters."""
    net = build_network(config).eval().requires_grad_(False)
    g = torch.Generator().manual_seed(seed)
    for name, t in net.state_dict().items():
        if not name.endswith(("resample_filter", "u")):
            t.add_(0.1 * torch.randn(t.shape, generator=g))
    return net


class PersistentObject:
    """A non-module persistent object (EDMLoss, AugmentPipe): a class name and a plain state."""

    def __init__(self, class_name: str, state: dict):
        self.class_name, self.state = class_name, state


@contextmanager
def persistence_stand_in():
    """Make `torch_utils.persistence._reconstruct_persistent_obj` importable while pickling (names only)."""

    def _reconstruct_persistent_obj(meta):
        raise AssertionError("the stand-in is only ever named, never called")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    pkg, mod = types.ModuleType("torch_utils"), types.ModuleType("torch_utils.persistence")
    mod._reconstruct_persistent_obj = _reconstruct_persistent_obj
    pkg.persistence = mod
    saved = {k: sys.modules.get(k) for k in (pkg.__name__, mod.__name__)}
    sys.modules.update({pkg.__name__: pkg, mod.__name__: mod})
    try:
        yield _reconstruct_persistent_obj
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


class _EDMPickler(pickle.Pickler):
    def __init__(self, file, reconstruct, top, top_kwargs, module_src):
        super().__init__(file, protocol=4)
        self.reconstruct, self.top, self.top_kwargs, self.module_src = reconstruct, top, top_kwargs, module_src

    def reducer_override(self, obj):
        if isinstance(obj, torch.nn.Module) and not isinstance(obj, torch.nn.ModuleDict):
            state = dict(obj.__dict__)
            kwargs = self.top_kwargs if obj is self.top else {}
            if "skip_scale" in state:  # the official code stores np.sqrt(...) here
                state["skip_scale"] = np.float64(state["skip_scale"])
                kwargs = {"skip_scale": state["skip_scale"]}
            state.update(_init_args=(), _init_kwargs=kwargs)
            return self._record(type(obj).__name__, state)
        if isinstance(obj, PersistentObject):
            return self._record(obj.class_name, dict(obj.state, _init_args=(), _init_kwargs={}))
        return NotImplemented

    def _record(self, class_name, state):
        meta = dict(type="class", version=6, module_src=self.module_src, class_name=class_name, state=state)
        return self.reconstruct, (meta,)


def edm_pickle_bytes(net: torch.nn.Module, init_kwargs: dict, module_src: str = HARMLESS_SRC,
                     extra: dict | None = None) -> bytes:
    """The bytes of a training snapshot {'ema', 'loss_fn', 'augment_pipe', 'dataset_kwargs'} holding `net`."""
    snapshot = {
        "ema": net,
        "loss_fn": PersistentObject("EDMLoss", {"P_mean": -1.2, "P_std": 1.2, "sigma_data": 0.5}),
        "augment_pipe": None,
        "dataset_kwargs": {"class_name": "training.dataset.ImageFolderDataset", "path": "x.zip", "use_labels": False,
                           "xflip": False, "cache": True, "resolution": net.img_resolution, "max_size": 10},
        **(extra or {}),
    }
    buf = io.BytesIO()
    with persistence_stand_in() as reconstruct:
        _EDMPickler(buf, reconstruct, net, init_kwargs, module_src).dump(snapshot)
    return buf.getvalue()


def write_edm_pickle(path: Path, config: dict, seed: int = 0, **kw) -> torch.nn.Module:
    """Write a perturbed network of `config` as an official-layout pickle; return the network."""
    net = perturbed(config, seed)
    path.write_bytes(edm_pickle_bytes(net, config["init_kwargs"], **kw))
    return net


def pickle_globals(data: bytes) -> set[str]:
    """Every 'module.name' a pickle (protocol 2-4) refers to, following memoized strings."""
    pushed, memo, found = [], [], set()
    for op, arg, _ in pickletools.genops(data):
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            pushed.append(arg)
        elif op.name == "MEMOIZE":
            memo.append(pushed[-1] if pushed else None)
        elif op.name in ("BINGET", "LONG_BINGET"):
            pushed.append(memo[arg])
        elif op.name == "STACK_GLOBAL":
            found.add(f"{pushed[-2]}.{pushed[-1]}")
        elif op.name == "GLOBAL":
            found.add(arg.replace(" ", "."))
        if op.name not in ("MEMOIZE", "BINGET", "LONG_BINGET", "SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            pushed.append(None)
    return found


def assert_refused(path: Path, *fragments: str) -> UnsafeCheckpointError:
    with pytest.raises(UnsafeCheckpointError) as info:
        load_network(path)
    message = str(info.value)
    assert "not a plain EDM checkpoint" in message or "safetensors" in message
    for fragment in fragments:
        assert fragment in message
    return info.value


# ---------------------------------------------------------------------------------------------------------------
# The official layout loads, bit for bit.

def test_written_pickles_use_exactly_the_globals_of_edm_pickles():
    data = edm_pickle_bytes(perturbed(SMALL["ddpmpp-edm-cond"]), SMALL["ddpmpp-edm-cond"]["init_kwargs"])
    expected = {"torch_utils.persistence._reconstruct_persistent_obj", "torch.nn.modules.container.ModuleDict",
                "torch._utils._rebuild_parameter", "torch._utils._rebuild_tensor_v2",
                "torch.storage._load_from_bytes", "collections.OrderedDict", "numpy.dtype"}
    found = pickle_globals(data)
    scalar = {g for g in found if g.endswith("multiarray.scalar")}
    assert found - scalar == expected and len(scalar) == 1


@pytest.mark.parametrize("name", sorted(SMALL))
def test_official_layout_pickle_loads_the_same_network(tmp_path, name):
    path = tmp_path / f"{name}.pkl"
    net = write_edm_pickle(path, SMALL[name])
    loaded = load_network(path)
    assert type(loaded) is type(net)
    got, want = loaded.state_dict(), net.state_dict()
    assert list(read_checkpoint(path)[1]) == list(want)  # flattened in state_dict() order (§2.6 step 3)
    for key, value in want.items():
        assert torch.equal(got[key], value), key
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, net.img_channels, 16, 16, generator=g)
    sigma = torch.tensor([0.3, 7.0])
    assert torch.equal(loaded(x, sigma), net(x, sigma))


def test_recorded_kwargs_are_kept_exactly_and_defaults_filled(tmp_path):
    path = tmp_path / "net.pkl"
    write_edm_pickle(path, SMALL["skip-vp"])
    config, state_dict = read_checkpoint(path)
    assert config == SMALL["skip-vp"]  # only what was passed: no defaults added
    net = load_network(path)
    assert net.model.map_layer0.out_features == 16 * 4  # channel_mult_emb default
    assert net.M == 1000 and net.beta_d == 19.9  # VPPrecond defaults


def test_module_source_is_never_executed(tmp_path):
    marker = tmp_path / "pwned.txt"
    src = f"open({str(marker)!r}, 'w').write('module_src ran')\n\nclass EDMPrecond:\n    pass\n"
    path = tmp_path / "net.pkl"
    write_edm_pickle(path, SMALL["ncsnpp-ve"], module_src=src)
    net = load_network(path)
    assert net.img_resolution == 16
    assert not marker.exists()
    exec(compile(src, "<module_src>", "exec"), {})  # what the official reader does: the file would appear
    assert marker.exists()


def test_os_system_reduce_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "system-ran"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"ema": Payload()}, protocol=4))
    assert_refused(path, "system")
    assert not marker.exists()


def test_payload_hidden_beside_a_valid_network_is_refused(tmp_path):
    marker = tmp_path / "system-ran"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    net = perturbed(SMALL["ncsnpp-ve"])
    path = tmp_path / "evil.pkl"
    path.write_bytes(edm_pickle_bytes(net, SMALL["ncsnpp-ve"]["init_kwargs"], extra={"dataset_kwargs": Payload()}))
    assert_refused(path, "system")
    assert not marker.exists()


@pytest.mark.parametrize("module, name", [
    ("builtins", "eval"), ("builtins", "exec"), ("builtins", "getattr"), ("builtins", "__import__"),
    ("os", "system"), ("posix", "system"), ("subprocess", "Popen"), ("torch", "load"),
    ("torch._utils", "_rebuild_parameter_with_state"), ("numpy.core.multiarray", "_reconstruct"),
    ("torch_utils.persistence", "persistent_class"), ("training.networks", "EDMPrecond"),
])
def test_any_global_outside_the_allowlist_is_refused(tmp_path, module, name):
    path = tmp_path / "evil.pkl"
    path.write_bytes(b"\x80\x02c" + f"{module}\n{name}\n".encode() + b")R.")
    assert_refused(path, f"{module}.{name}")


def test_persistent_ids_are_refused(tmp_path):
    path = tmp_path / "pid.pkl"
    path.write_bytes(b"\x80\x02X\x01\x00\x00\x00aQ.")
    assert_refused(path, "persistent id")


@pytest.mark.parametrize("keep", [0.01, 0.5, 0.999])
def test_truncated_pickle_is_refused(tmp_path, keep):
    data = edm_pickle_bytes(perturbed(SMALL["ncsnpp-ve"]), SMALL["ncsnpp-ve"]["init_kwargs"])
    path = tmp_path / "cut.pkl"
    path.write_bytes(data[: int(len(data) * keep)])
    assert_refused(path)


@pytest.mark.parametrize("content", [b"", b"hello, this is text\n", b"\x89PNG\r\n\x1a\n" + bytes(64),
                                     b"\x00" * 100])
def test_non_pickle_file_is_refused(tmp_path, content):
    path = tmp_path / "not-a-network.pkl"
    path.write_bytes(content)
    assert_refused(path)


def test_torch_save_zip_is_refused(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(2)}, path)
    assert zipfile.is_zipfile(path)
    assert_refused(path, "zip")


def test_pickle_without_a_network_is_refused(tmp_path):
    path = tmp_path / "dict.pkl"
    path.write_bytes(pickle.dumps({"loss_fn": None, "ema": 3}, protocol=4))
    assert_refused(path, "'ema'")


def test_unknown_network_class_is_refused(tmp_path):
    net = perturbed(SMALL["ncsnpp-ve"])
    data = edm_pickle_bytes(net, SMALL["ncsnpp-ve"]["init_kwargs"])
    path = tmp_path / "renamed.pkl"
    path.write_bytes(data.replace(b"VEPrecond", b"XYPrecond"))
    with pytest.raises(UnsafeCheckpointError, match="XYPrecond"):
        load_network(path)


def test_weights_that_do_not_fit_the_recorded_architecture_are_refused(tmp_path):
    net = perturbed(SMALL["ncsnpp-ve"])
    kwargs = dict(SMALL["ncsnpp-ve"]["init_kwargs"], model_channels=32)  # the weights are for 16
    path = tmp_path / "mismatch.pkl"
    path.write_bytes(edm_pickle_bytes(net, kwargs))
    with pytest.raises(UnsafeCheckpointError, match="do not match"):
        load_network(path)


def test_missing_checkpoint_is_a_parameter_error(tmp_path):
    with pytest.raises(ParameterError, match="does not exist"):
        load_network(tmp_path / "nope.pkl")


# ---------------------------------------------------------------------------------------------------------------
# Our own .safetensors files.

def test_safetensors_round_trip_keeps_config_and_weights(tmp_path):
    net = perturbed(SMALL["adm-iddpm"])
    path = tmp_path / "net.safetensors"
    save_safetensors(SMALL["adm-iddpm"], net.state_dict(), path)
    config, state_dict = read_checkpoint(path)
    assert config == SMALL["adm-iddpm"]
    loaded = load_network(path)
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(loaded(x, torch.tensor([0.5, 3.0])), net(x, torch.tensor([0.5, 3.0])))


def test_safetensors_without_config_is_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "bare.safetensors"
    save_file({"model.map_layer0.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(UnsafeCheckpointError, match="pspc convert"):
        load_network(path)


def test_truncated_safetensors_is_refused(tmp_path):
    path = tmp_path / "net.safetensors"
    save_safetensors(SMALL["ncsnpp-ve"], perturbed(SMALL["ncsnpp-ve"]).state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnsafeCheckpointError):
        load_network(path)
