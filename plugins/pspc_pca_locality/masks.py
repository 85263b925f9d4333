"""PCA-locality masks: which input pixel-channels n enter the distance of output pixel-channel m at noise level t.

With the training set's covariance (divisor N - 1) = V diag(λ) Vᵀ, the Wiener filter at t is
W_t = V diag(λ / (λ + t²)) Vᵀ, and

    M_t[n, m] = 1{ |W[n, m] / W[n, n]| ≥ τ · max_{n', m'} |W[n', m'] / W[n', n']| }      (D x D, D = C·R²)

(row n normalised by its own diagonal, one threshold for the whole matrix; column m serves output m).

Every decision is float64's, from the eigendecomposition the Gaussian denoiser shares (through the N x N Gram matrix
when N < D); W itself is multiplied in float32 and only the entries its error bound cannot decide are recomputed in
float64 (`mask_screen.py`). The authors binarise a float32 SVD instead; near the threshold the two disagree, and at
small t their float32 null-space eigenvalues (~1e-6 instead of 0, next to t² = 1e-4) move the ratios by up to ~0.1,
so their masks are machine-dependent there. A pixel n with W[n, n] = 0 (constant over the training set) has an empty
row: its term would be the same for every training image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pspc_core.dataset import Dataset
from pspc_core.errors import ParameterError, ShapeError
from pspc_core.runtime.numpy_files import read_npz
from pspc_core.schedule import nearest_index

# W[n, n] below this fraction of the largest diagonal is a constant pixel (float64 leaves ~1e-17 there)
ZERO_VARIANCE = 1e-12
SYMMETRIC_BLOCKS = 6  # row blocks of the Wiener matrix's product (2: 1.1x over the full product, 4: 1.4x, 6: 1.5x)


def wiener_ratio(evals: torch.Tensor, vecs: torch.Tensor, t: float) -> torch.Tensor:
    """W[n, m] / W[n, n] [D, D] float64, rows of constant pixels set to 0."""
    w = _symmetric_product(_wiener_factor(evals, vecs, t))
    diag = w.diagonal().clone()
    constant = ~_live(diag)
    w /= torch.where(constant, torch.ones_like(diag), diag)[:, None]
    w[constant] = 0
    return w


def _symmetric_product(a: torch.Tensor) -> torch.Tensor:
    """a @ a.T [D, D] for a [D, r], each pair of row blocks multiplied once and mirrored (W = V diag(f) Vᵀ =
    (V √f)(V √f)ᵀ): 7/12 of the multiply-adds of the full product, 1.5-1.7x faster at D = 3072, r = 999."""
    D = a.shape[0]
    out = torch.empty(D, D, dtype=a.dtype, device=a.device)
    edges = [i * D // SYMMETRIC_BLOCKS for i in range(SYMMETRIC_BLOCKS + 1)]
    for lo, hi in zip(edges[:-1], edges[1:]):
        block = a[lo:hi] @ a[lo:].T
        out[lo:hi, lo:] = block
        out[hi:, lo:hi] = block[:, hi - lo:].T
    return out


def _wiener_factor(evals: torch.Tensor, vecs: torch.Tensor, t: float) -> torch.Tensor:
    """A [D, r] with W_t = A Aᵀ: V √(λ / (λ + t²))."""
    return vecs * (evals / (evals + t * t)).clamp_min(0).sqrt()


def _live(diag: torch.Tensor) -> torch.Tensor:
    """Which pixels vary over the training set (W[n, n] above ZERO_VARIANCE of the largest)."""
    return diag > diag.max() * ZERO_VARIANCE


def locality_mask(evals: torch.Tensor, vecs: torch.Tensor, t: float, threshold: float) -> torch.Tensor:
    """M_t [D, D] bool, indexed [input n, output m]."""
    return locality_masks(evals, vecs, t, [threshold])[0]


def locality_masks(evals: torch.Tensor, vecs: torch.Tensor, t: float, thresholds) -> list[torch.Tensor]:
    """M_t for each τ in `thresholds`, the Wiener matrix and its largest ratio computed once for all: from a float32
    product with every decision exact in float64 (`mask_screen.py`) where numba runs and float32 products are IEEE
    ones; else from the ratios themselves in float64."""
    if _ieee_float32_products():
        try:
            from .mask_screen import screened_masks
        except ImportError:  # no numba here
            pass
        else:
            a = _wiener_factor(evals, vecs, t).cpu()
            diag = (a * a).sum(1)
            return screened_masks(a, _symmetric_product(a.float()), diag, _live(diag), thresholds)
    ratio = wiener_ratio(evals, vecs, t).abs_()
    top = ratio.max()
    return [ratio >= tau * top for tau in thresholds]


def _ieee_float32_products() -> bool:
    """Whether the CPU's float32 matrix products are IEEE single precision, as the screen's bound needs: not under
    torch.set_float32_matmul_precision("medium"/"high") or an fp32_precision of "bf16"/"tf32" (both reach oneDNN's
    matmul setting)."""
    matmul = getattr(torch.backends.mkldnn, "matmul", None)
    if matmul is not None and hasattr(matmul, "fp32_precision"):
        return matmul.fp32_precision in ("none", "ieee")
    return torch.get_float32_matmul_precision() == "highest"


class MaskFile:
    """Masks given in a file (`.npz` with `t` [L] and `masks` [L, D, D] bool): the nearest t's mask is used."""

    def __init__(self, path, dim: int):
        path = Path(path)
        if not path.is_file():
            raise ParameterError(f"masks file {path} does not exist; pass an .npz with t [L] and masks [L, D, D] "
                                 "bool, or omit masks to compute them")
        arrays = read_npz(path, ("t", "masks"), "masks")
        missing = [k for k in ("t", "masks") if k not in arrays]
        if missing:
            raise ParameterError(f"masks file {path} lacks {', '.join(missing)}; store t [L] and masks [L, D, D]")
        t, masks = arrays["t"], arrays["masks"]
        if masks.dtype != np.bool_:
            raise ShapeError(f"masks in {path} are {masks.dtype}; store them as bool")
        if masks.ndim != 3 or masks.shape[1:] != (dim, dim) or t.shape != (masks.shape[0],) or len(t) == 0:
            raise ShapeError(f"masks file {path} holds t {t.shape} and masks {masks.shape}, but this data needs "
                             f"t [L] and masks [L, {dim}, {dim}] (D = C·R²); use masks made for this resolution")
        if not np.isfinite(t).all():
            raise ParameterError(f"masks file {path} holds a non-finite t; store the noise level of every mask")
        self.t = torch.from_numpy(t.astype(np.float64))
        self.masks = torch.from_numpy(masks)

    def mask(self, t: float) -> tuple[float, torch.Tensor]:
        """(the file's noise level nearest to t, its mask)."""
        i = nearest_index(self.t, t)
        return float(self.t[i]), self.masks[i]


def n_dims(dataset: Dataset) -> int:
    return dataset.channels * dataset.resolution**2
