"""PCA-locality masks from a float32 Wiener matrix, every decision exact in float64 (numba).

The mask compares each ratio |W[n, m]| / W[n, n] with τ·max, W = A Aᵀ, A = V √(λ/(λ+t²)) [D, r]. Most ratios lie far
from the threshold, so W is multiplied in float32 with a rigorous bound on its error, and only the entries the bound
cannot decide are recomputed as float64 dot products. Bound: rounding A to float32 and any float32 summation order
of r products err by at most (r + 2)·u·Σ_k |a_nk a_mk| (u = 2^-24, to first order), and Σ_k |a_nk a_mk| ≤
‖a_n‖·‖a_m‖ (Cauchy-Schwarz), so |W32 - W| ≤ e_nm = SLACK·(r + 3)·u·‖a_n‖·‖a_m‖ with SLACK = 2 for the second-order
terms and the float64 divisions. It holds for float32 matrix products as IEEE single precision computes them:
`locality_masks` uses this screen only while torch's CPU float32 matrix products are IEEE ones (no bfloat16 or TF32
shortcuts). One product and one maximum serve every τ of a calibration sweep.

The decisions are those of the float64 ratios |a_n·a_m| / W[n, n] (a dot product for each entry the bound leaves
open); `wiener_ratio`'s blocked float64 product can differ from them only within a few ulps of τ·max.

One file on purpose: numba's on-disk cache is invalidated only by changes to the file that defines a cached
function.
"""

from __future__ import annotations

import numba
import numpy as np
import torch

from pspc_core.runtime.compiling import first_call
from pspc_core.runtime.threads import match_torch_threads

U32 = 2.0**-24  # float32's unit roundoff
SLACK = 2.0  # over the first-order bound (r + 2)·u: second-order terms and the float64 divisions


def screened_masks(a: torch.Tensor, w32: torch.Tensor, diag: torch.Tensor, live: torch.Tensor,
                   thresholds) -> list[torch.Tensor]:
    """M [D, D] bool for each τ in `thresholds`, from A [D, r] float64, W32 ≈ A Aᵀ [D, D] float32 (any IEEE
    float32 product), the exact diagonal W[n, n] [D] float64 and which rows are live (not constant pixels: their
    rows are empty)."""
    diag_np = diag.contiguous().numpy()
    scale = np.sqrt(SLACK * (a.shape[1] + 3) * U32 * diag_np)  # the bound on ratio n, m: scale[n]·scale[m] / W[n, n]
    a_np, w, live_np = a.contiguous().numpy(), w32.contiguous().numpy(), live.contiguous().numpy()
    match_torch_threads()
    _ready()
    low, high = _row_bounds(w, diag_np, scale, live_np)
    top = _exact_max(a_np, w, diag_np, scale, live_np, max(1.0, float(low.max(initial=0.0))), high)
    return [torch.from_numpy(_decide(a_np, w, diag_np, scale, live_np, float(tau) * top)) for tau in thresholds]


_READY: set = set()


def _ready() -> None:
    """Compile the kernels (or load them from numba's cache) on a 1 x 1 input first: the first use on a machine
    compiles for a few seconds, said on stderr and interruptible (`first_call`)."""
    one, yes = np.ones(1), np.ones(1, np.bool_)
    first_call(_all_kernels, (np.ones((1, 1)), np.ones((1, 1), np.float32), one, one, yes), "the PCA-locality mask "
               "screen", _READY)


def _all_kernels(a, w, diag, scale, live):
    low, high = _row_bounds(w, diag, scale, live)
    return _exact_max(a, w, diag, scale, live, 1.0, high), _decide(a, w, diag, scale, live, 0.5)


@numba.njit(inline="always", fastmath={"nnan", "nsz", "reassoc", "contract"})
def _dot(a, n, m):
    """Σ_k a[n, k]·a[m, k] in float64 (vectorised)."""
    s = 0.0
    for k in range(a.shape[1]):
        s += a[n, k] * a[m, k]
    return s


@numba.njit(parallel=True, cache=True)
def _row_bounds(w, diag, scale, live):
    """Per live row n: the largest lower and upper bounds of its ratios (off the diagonal, whose ratio is 1)."""
    D = w.shape[0]
    low, high = np.zeros(D), np.zeros(D)
    for n in numba.prange(D):
        if not live[n]:
            continue
        inv, lo, hi = 1.0 / diag[n], 0.0, 0.0
        for m in range(D):
            if m == n:
                continue
            r, e = abs(np.float64(w[n, m])) * inv, scale[n] * scale[m] * inv
            lo = max(lo, r - e)
            hi = max(hi, r + e)
        low[n], high[n] = lo, hi
    return low, high


@numba.njit(cache=True)
def _exact_max(a, w, diag, scale, live, floor, high):
    """max |W[n, m]| / W[n, n] over every entry, exactly: `floor` is a lower bound of it (the diagonal's 1, or a
    larger lower bound), and only entries whose upper bound reaches it are recomputed, in the few rows that have
    any."""
    D = w.shape[0]
    top = 1.0 if live.any() else 0.0
    for n in range(D):
        if not live[n] or high[n] < floor:
            continue
        inv = 1.0 / diag[n]
        for m in range(D):
            if m != n and abs(np.float64(w[n, m])) * inv + scale[n] * scale[m] * inv >= floor:
                top = max(top, abs(_dot(a, n, m)) * inv)
    return top


@numba.njit(parallel=True, cache=True)
def _decide(a, w, diag, scale, live, threshold):
    """M[n, m] = |W[n, m]| / W[n, n] ≥ threshold: by the float32 ratio where its bound decides, else by the
    float64 dot product; the diagonal is 1, constant rows are empty."""
    D = w.shape[0]
    mask = np.zeros((D, D), np.bool_)
    for n in numba.prange(D):
        if not live[n]:
            continue
        inv = 1.0 / diag[n]
        for m in range(D):
            r, e = abs(np.float64(w[n, m])) * inv, scale[n] * scale[m] * inv
            if r - e >= threshold:
                mask[n, m] = True
            elif r + e >= threshold:
                mask[n, m] = abs(_dot(a, n, m)) * inv >= threshold
        mask[n, n] = 1.0 >= threshold
    return mask
