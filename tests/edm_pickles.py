"""Writing EDM network pickles in the official layout (docs/edm-networks.md), for the tests that read them: every network class as a
`torch_utils.persistence._reconstruct_persistent_obj(meta)` reduce carrying module source text, `torch.nn.ModuleDict`
containers, tensors through `torch.storage._load_from_bytes`, numpy scalars.
Test-only: it needs a stand-in `torch_utils.persistence` module to name.

The embedded module source is a stand-in too (EDM's class names, none of EDM's code), so no fingerprint of an
official EDM version matches it. Importing this module therefore counts the stand-in as one more official version,
for this test process only (`count_stand_in_as_official`): the pickles written here load like official ones, and an
edited stand-in is refused exactly as an edited `training/networks.py` would be. The shipped table is not touched."""

from __future__ import annotations

import io
import pickle
import sys
import types
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from pspc_network import build_network, edm_source

# Every class a network of ours is made of (they carry EDM's class names), as the stand-in source defines them.
NETWORK_CLASSES = ("Linear", "Conv2d", "GroupNorm", "UNetBlock", "PositionalEmbedding", "FourierEmbedding",
                   "SongUNet", "DhariwalUNet", "VPPrecond", "VEPrecond", "iDDPMPrecond", "EDMPrecond")
STAND_IN_SRC = ('"""Stand-in for training/networks.py: the class names of EDM, none of its code."""\n\n'
                + "".join(f"\nclass {name}:\n    pass\n\n" for name in NETWORK_CLASSES))
STAND_IN_VERSION = {"commit": "standin", "date": "", "commits": [], **edm_source.module_fingerprints(STAND_IN_SRC)}


def count_stand_in_as_official() -> None:
    """Add the stand-in to the official versions the loader knows, in this process (idempotent)."""
    versions = edm_source.official_versions()
    if not any(v is STAND_IN_VERSION for v in versions):
        versions.append(STAND_IN_VERSION)


count_stand_in_as_official()

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


def edm_pickle_bytes(net: torch.nn.Module, init_kwargs: dict, module_src: str = STAND_IN_SRC,
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
