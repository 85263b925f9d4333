"""Reading the latent files users pass (`--z` [n_steps, N, C, R, R], `--z_init` [N, C, R, R]), with one-line errors."""

from __future__ import annotations

from pathlib import Path


def load_array(path: Path, option: str, expected: str):
    """The .npy at `path`, memory-mapped; a ShapeError naming `option` and the `expected` shape otherwise."""
    import numpy as np

    from pspc_core.errors import ShapeError

    if not path.exists():
        raise ShapeError(f"{option} file {path} does not exist; pass a .npy of shape {expected}")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError):
        raise ShapeError(f"{option} file {path} is not a readable .npy file; save it with numpy.save") from None


def load_z(path: Path, n_steps: int):
    """A `--z` file: latents for every point of the n_steps grid, [n_steps, N, C, R, R]."""
    from pspc_core.errors import ShapeError

    arr = load_array(path, "--z", "[n_steps, N, C, R, R]")
    if arr.ndim != 5 or arr.shape[0] != n_steps:
        raise ShapeError(f"--z holds shape {arr.shape}; expected [n_steps={n_steps}, N, C, R, R] (or set --n_steps)")
    return arr


def load_z_init(path: Path, shape: tuple[int, int, int]):
    """A `--z_init` file: initial states [N, C, R, R] at t_max, as float32 torch tensor."""
    import numpy as np
    import torch

    from pspc_core.errors import ShapeError

    expected = f"[N, {', '.join(map(str, shape))}]"
    arr = load_array(path, "--z_init", expected)
    if arr.ndim != 4 or tuple(arr.shape[1:]) != shape:
        raise ShapeError(f"--z_init holds shape {arr.shape}; expected {expected}")
    return torch.from_numpy(np.array(arr, dtype=np.float32))
