"""Which training windows each pixel is compared with, as displacements along one axis (ELS, bbELS, LS).

Output pixel p = (i, j) is compared with training windows whose centre is q = p + Δ (circular ELS: modulo R in
z, the training window itself never wraps). The allowed displacements are a product of one set per axis, so a
model is fully described by one axis' *options*. An option is a shift s and a run of window starts
a = lo .. hi (the training window covers a .. a + k - 1 along this axis, its centre is a + h, h = k // 2):

* the latent's coordinate paired with training coordinate u is (u - s) mod R (zero padding: u - s, and the term
  is 0 where u leaves the image: the latent's window is zero-padded exactly where the training window is);
* window a belongs to output coordinate (a + h - s) mod R.

Circular ELS: s = 0 .. R-1, every valid start a = 0 .. R-k; together they pair each output coordinate with every
valid start exactly once. Zero padding (bbELS): s = Δ = -(R-k) .. R-k; Δ ≠ 0 serves the interior coordinates
(h ≤ i < R-h) whose partner centre i + Δ is interior too, Δ = 0 serves every coordinate with its own,
zero-padded window (starts -h .. R-1-h): a coordinate within h of a border is compared at its own place only.
LS: the single option Δ = 0.

For each pair of options (rows, columns) the squared-difference map over the training coordinates the windows
cover is computed once and box-summed: every (pixel, window) distance costs O(1) whatever k is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MODELS = ("circular", "zeros", "ls")


@dataclass(frozen=True)
class AxisPlan:
    """One axis' options: shift[o], window starts lo[o] .. hi[o] (int64 arrays), for R, k and the model."""

    R: int
    k: int
    circular: bool
    shift: np.ndarray
    lo: np.ndarray
    hi: np.ndarray

    @property
    def h(self) -> int:
        return self.k // 2

    @property
    def position_locked(self) -> bool:
        """Whether each coordinate meets only the window at its own place (LS; bbELS with k = R plans the same)."""
        return len(self.shift) == 1 and self.shift[0] == 0 and not self.circular

    def windows(self) -> int:
        """Windows along this axis over all options (a model compares R² pixels with windows() ** 2 windows)."""
        return int((self.hi - self.lo + 1).sum())


def axis_plan(R: int, k: int, model: str) -> AxisPlan:
    """The options of `model` ('circular', 'zeros' or 'ls') for R×R images and odd patch size k ≤ R."""
    if model not in MODELS or k % 2 == 0 or not 1 <= k <= R:
        raise ValueError(f"no plan for model={model!r}, k={k}, R={R}")
    h, last = k // 2, R - k
    if model == "circular":
        options = [(s, 0, last) for s in range(R)]
    elif model == "ls":
        options = [(0, -h, R - 1 - h)]
    else:
        options = [(0, -h, R - 1 - h) if d == 0 else (d, max(0, d), min(last, last + d)) for d in range(-last, last + 1)]
    shift, lo, hi = (np.array(v, dtype=np.int64) for v in zip(*options))
    return AxisPlan(R, k, model == "circular", shift, lo, hi)
