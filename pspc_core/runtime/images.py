"""PNG grids of images in data units ([-1, 1]), for looking at what a run produced."""

from __future__ import annotations

import math

import numpy as np

from .atomic import atomic_path


def to_uint8(x: np.ndarray) -> np.ndarray:
    """x in [-1, 1] -> uint8 by v = round((x + 1) * 127.5), clipped."""
    return np.clip(np.rint((np.asarray(x, dtype=np.float64) + 1) * 127.5), 0, 255).astype(np.uint8)


def save_grid(images: np.ndarray, path, ncol: int | None = None, scale: int = 2) -> None:
    """Tile [N, C, R, R] images (data units) into one PNG, `ncol` per row, each pixel `scale` times."""
    from PIL import Image

    images = to_uint8(images)
    n, c, r, _ = images.shape
    ncol = ncol or max(1, math.ceil(math.sqrt(n)))
    nrow = math.ceil(n / ncol)
    grid = np.zeros((nrow * r, ncol * r, c), np.uint8)
    for i in range(n):
        y, x = divmod(i, ncol)
        grid[y * r : (y + 1) * r, x * r : (x + 1) * r] = images[i].transpose(1, 2, 0)
    grid = grid[..., 0] if c == 1 else grid[..., :3] if c == 2 else grid
    img = Image.fromarray(grid)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
