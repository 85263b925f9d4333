"""Latents: drawn with one random generator per latent (seed + i, as EDM's generate.py), so that results do not
depend on the batch size or on how the latents are split across processes; or read from the files users pass
(`--z` [n_steps, N, C, R, R], `--z_init` [N, C, R, R]), checked before any work (shape, finite values)."""

from __future__ import annotations

import numpy as np
import torch

from .dataset import Dataset
from .errors import ShapeError


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def gaussian_latents(seeds, shape: tuple[int, ...]) -> torch.Tensor:
    """ε_i ~ N(0, I) of `shape` for each seed, stacked [len(seeds), *shape] (float32, CPU)."""
    return torch.stack([torch.randn(shape, generator=_generator(s)) for s in seeds])


def forward_process(dataset: Dataset, seeds, t: float) -> torch.Tensor:
    """z_i = x_{n_i} + t ε_i with a training image n_i and noise ε_i drawn from latent i's own generator."""
    out = []
    for s in seeds:
        g = _generator(s)
        n = int(torch.randint(len(dataset), (1,), generator=g))
        eps = torch.randn(dataset.images.shape[1:], generator=g)
        out.append(dataset.images[n].float() / 127.5 - 1 + t * eps)
    return torch.stack(out)


def load_array(path, option: str, expected: str) -> np.ndarray:
    """The .npy at `path`, memory-mapped and checked finite; a ShapeError naming `option` and `expected` otherwise."""
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise ShapeError(f"{option} file {path} {what}; pass a .npy of shape {expected}")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError):
        raise ShapeError(f"{option} file {path} is not a readable .npy file; save it with numpy.save") from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiu":
        raise ShapeError(f"{option} file {path} holds {getattr(arr, 'dtype', 'no array')}, not numbers; save a float array")
    if arr.size == 0:
        raise ShapeError(f"{option} file {path} holds no latents (shape {arr.shape}); pass a .npy of shape {expected}")
    for start in range(0, len(arr) if arr.ndim else 1, 256):  # finite, checked in slices (memory stays small)
        if not np.isfinite(arr[start : start + 256]).all():
            raise ShapeError(f"{option} file {path} holds NaN or infinite values; pass finite latents")
    return arr


def load_z(path, n_steps: int, shape: tuple[int, int, int] | None = None) -> np.ndarray:
    """A `--z` file: latents for every point of the n_steps grid, [n_steps, N, C, R, R] (memory-mapped)."""
    expected = f"[n_steps={n_steps}, N, {', '.join(map(str, shape)) if shape else 'C, R, R'}]"
    arr = load_array(path, "--z", expected)
    if arr.ndim != 5 or arr.shape[0] != n_steps or (shape and tuple(arr.shape[2:]) != tuple(shape)):
        raise ShapeError(f"--z holds shape {arr.shape}; expected {expected} (or set --n-steps)")
    return arr


def load_z_init(path, shape: tuple[int, int, int]) -> torch.Tensor:
    """A `--z_init` file: initial states [N, C, R, R] at t_max, as a float32 tensor."""
    expected = f"[N, {', '.join(map(str, shape))}]"
    arr = load_array(path, "--z-init", expected)
    if arr.ndim != 4 or tuple(arr.shape[1:]) != shape:
        raise ShapeError(f"--z-init holds shape {arr.shape}; expected {expected}")
    return torch.from_numpy(np.array(arr, dtype=np.float32))
