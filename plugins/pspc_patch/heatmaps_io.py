"""Reading PSPC-Flex heatmaps [L, R, R, R, R] (index [t index, y, x, i, j]) from .npy or .safetensors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from pspc_core.errors import ParameterError

KEY = "heatmaps"


def load_heatmaps(source) -> torch.Tensor:
    """A float32 tensor from a path (.npy as the paper ships, .safetensors with one tensor or key 'heatmaps'),
    or from an array/tensor given directly."""
    if not isinstance(source, (str, os.PathLike)):
        return torch.as_tensor(np.asarray(source) if not torch.is_tensor(source) else source).float()
    path = Path(source)
    if not path.is_file():
        raise ParameterError(f"heatmaps file {path} does not exist; pass a .npy or .safetensors file [L,R,R,R,R]")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            return torch.from_numpy(np.load(path, allow_pickle=False).astype(np.float32, copy=False))
        except (ValueError, OSError) as exc:
            raise ParameterError(f"heatmaps file {path} is not a readable .npy array ({exc}); re-save it with numpy") from None
    if suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            tensors = load_file(str(path))
        except Exception as exc:
            raise ParameterError(f"heatmaps file {path} is not a readable safetensors file ({exc})") from None
        if KEY in tensors:
            return tensors[KEY].float()
        if len(tensors) == 1:
            return next(iter(tensors.values())).float()
        raise ParameterError(f"heatmaps file {path} holds tensors {sorted(tensors)}; name the heatmaps {KEY!r}")
    if suffix == ".npz":  # the compact form `pspc heatmaps` writes
        from pspc_core.heatmaps import load_heatmaps as load_npz

        return load_npz(path)[0].float()
    raise ParameterError(f"heatmaps file {path}: unsupported type {suffix!r}; use .npy, .safetensors or .npz")
