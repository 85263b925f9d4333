"""The built-in training set: procedurally drawn 32x32 RGB scenes, deterministic from a seed, no file needed.

`builtin:shapes` holds 2000 images (`builtin:shapes:N` holds N, `builtin:shapes:N:SEED` another draw). Each
image is a colour-gradient background with a striped or plain texture and two to four filled shapes (discs,
rectangles, triangles, rings) in random colours, some textured. Shapes overlap and get cut by the border, so
small patches recur across images in new combinations: patch-based denoisers then produce new images while the
empirical denoiser reproduces training images. The label is the kind of the largest shape.
"""

from __future__ import annotations

import re

import numpy as np

from .errors import DatasetError

RES = 32
KINDS = ("disc", "rectangle", "triangle", "ring")
DEFAULT = "builtin:shapes"
DEFAULT_SIZE, DEFAULT_SEED = 2000, 0
MAX_IMAGES = 200_000  # 600 MB of images; more is a typo, not a data set
MAX_SEED = 2**63 - 1  # the largest seed a signed 64-bit field holds


def parse_builtin(spec: str) -> tuple[int, int]:
    """(number of images, seed) of `shapes`, `shapes:N` or `shapes:N:SEED` (the part after `builtin:`). The
    fields are checked here, digits only and in range, so that a spelling like ` 10` or `1_0` or a seed numpy
    refuses (negative) never reaches the drawing."""
    name, *rest = spec.split(":")
    if name != "shapes":
        raise DatasetError(f"unknown built-in dataset builtin:{spec}; the built-in set is builtin:shapes")
    if len(rest) > 2 or not all(re.fullmatch(r"-?[0-9]{1,30}", part) for part in rest):
        raise DatasetError(f"builtin:{spec}: use builtin:shapes, builtin:shapes:N or builtin:shapes:N:SEED "
                           "with whole numbers N and SEED")
    n = int(rest[0]) if rest else DEFAULT_SIZE
    seed = int(rest[1]) if len(rest) > 1 else DEFAULT_SEED
    if not 1 <= n <= MAX_IMAGES:
        raise DatasetError(f"builtin:{spec} asks for {n} images; ask for 1 to {MAX_IMAGES}")
    if not 0 <= seed <= MAX_SEED:
        raise DatasetError(f"builtin:{spec} has seed {seed}; use a seed from 0 to {MAX_SEED} (2**63 - 1)")
    return n, seed


def is_builtin_default(data) -> bool:
    """Whether `data` (a Dataset, path or name) is the default built-in set, the one that shipped assets (the
    network trained on it, its heatmaps) belong to: `builtin:shapes`, i.e. 2000 images of seed 0."""
    source = getattr(data, "source", data)
    if not isinstance(source, str) or not source.startswith("builtin:"):
        return False
    try:
        return parse_builtin(source[len("builtin:"):]) == (DEFAULT_SIZE, DEFAULT_SEED)
    except DatasetError:
        return False


def make_builtin(spec: str) -> tuple[np.ndarray, np.ndarray]:
    return shapes(*parse_builtin(spec))


def shapes(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`n` images [n, 3, 32, 32] uint8 and their labels [n] (kind of the largest shape)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:RES, 0:RES].astype(np.float32) + 0.5
    images = np.empty((n, 3, RES, RES), np.uint8)
    labels = np.empty(n, np.int64)
    for i in range(n):
        img = _background(rng, yy, xx)
        largest = -1.0
        for _ in range(rng.integers(2, 5)):
            kind = int(rng.integers(len(KINDS)))
            mask, area = _shape_mask(KINDS[kind], rng, yy, xx)
            colour = _texture(rng, yy, xx, _colour(rng))
            img = np.where(mask, colour, img)
            if area > largest:
                largest, labels[i] = area, kind
        images[i] = np.clip(img, 0, 255).astype(np.uint8)
    return images, labels


def _colour(rng) -> np.ndarray:
    return rng.uniform(0, 255, size=(3, 1, 1)).astype(np.float32)


def _background(rng, yy, xx) -> np.ndarray:
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * xx + np.sin(angle) * yy) / RES
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    a, b = _colour(rng), _colour(rng)
    return _texture(rng, yy, xx, a + (b - a) * ramp)


def _texture(rng, yy, xx, colour: np.ndarray) -> np.ndarray:
    """Plain colour half the time, otherwise stripes of a random period and direction."""
    if rng.random() < 0.5:
        return np.broadcast_to(colour, (3, RES, RES)).astype(np.float32)
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(3, 9)
    stripes = np.sin(2 * np.pi * (np.cos(angle) * xx + np.sin(angle) * yy) / period) > 0
    return colour + np.where(stripes, 1.0, -1.0) * rng.uniform(20, 60)


def _shape_mask(kind: str, rng, yy, xx) -> tuple[np.ndarray, float]:
    cy, cx = rng.uniform(-2, RES + 2, size=2)
    size = rng.uniform(4, 14)
    if kind == "disc":
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= size**2
    elif kind == "ring":
        r2 = (yy - cy) ** 2 + (xx - cx) ** 2
        mask = (r2 <= size**2) & (r2 >= (size * rng.uniform(0.4, 0.7)) ** 2)
    elif kind == "rectangle":
        h, w = size * rng.uniform(0.5, 1.5, size=2)
        mask = (np.abs(yy - cy) <= h) & (np.abs(xx - cx) <= w)
    else:
        pts = np.stack([cy, cx]) + rng.uniform(-1.5 * size, 1.5 * size, size=(3, 2))
        mask = _inside_triangle(pts, yy, xx)
    return mask[None], float(mask.sum())


def _inside_triangle(pts: np.ndarray, yy, xx) -> np.ndarray:
    def edge(a, b):
        return (b[1] - a[1]) * (yy - a[0]) - (b[0] - a[0]) * (xx - a[1])

    e = [edge(pts[0], pts[1]), edge(pts[1], pts[2]), edge(pts[2], pts[0])]
    return ((e[0] >= 0) & (e[1] >= 0) & (e[2] >= 0)) | ((e[0] <= 0) & (e[1] <= 0) & (e[2] <= 0))


def asset_for(data, path) -> str | None:
    """`path` (a file a plugin ships for the default built-in set) when `data` is that set, else None: how a
    plugin states a default that belongs to the built-in data (`Param.data_default`)."""
    if not is_builtin_default(data):
        return None
    from pathlib import Path

    if not Path(path).is_file():
        from .errors import PluginError

        raise PluginError(f"the shipped file {path} is missing; reinstall pspc")
    return str(path)
