"""Crop families as two linear maps between pixels and crops, so one engine serves PSPC-Square and PSPC-Flex.

`crop_sums(e)`  : per-pixel maps e [P, M] float32 (P = R² pixels, M columns) -> per-crop sums d [K, M] float32,
                  d_C = Σ_{p∈C} e_p, added as short trees of non-negative terms (no subtraction): relative error
                  at most `depth` · 2⁻²⁴ beyond e's own, whatever the magnitudes.
`pixel_sums(w)` : per-crop values w [K, M] -> per-pixel sums [P, M], Σ_{C∋p} mult_C · w_C (the transposed map),
                  again short trees (long float32 accumulations into one pixel drift: docs/denoisers.md, "Numerics").
`coverage`      : [P] float64, Σ_{C∋p} mult_C (the composite's normaliser; 0 where no crop holds p).
`pixel_index`   : [K, S] the pixels of each crop, padded with P (S = `max_size`); `sizes` [K].
`multiplicity`  : [K] float64, how many times each crop counts in the composite (merged duplicates).
`whole`         : True when the family is the single crop of the whole image (the empirical denoiser).
"""

from __future__ import annotations

import warnings

import torch

from .window_sums import spread_sums, tree_depth, window_sums

F64 = torch.float64


class BoxCrops:
    """All k×k windows inside an R×R image (stride 1, no padding): (R-k+1)² crops, crop u·(R-k+1) + v having its
    top-left corner at row u, column v. Both maps are separable window sums (`window_sums.py`), rows then columns:
    a handful of whole-tensor additions per map whatever k is, in float32 without cancellation."""

    def __init__(self, resolution: int, patch_size: int, device=None):
        R, k = resolution, patch_size
        self.R, self.k = R, k
        self.n_windows = nW = R - k + 1
        self.n_crops = nW * nW
        self.max_size = k * k
        self.depth = 2 * tree_depth(k)
        self.whole = k == R
        ones = torch.ones(self.n_crops, 1, device=device)
        self.coverage = self.pixel_sums(ones).squeeze(1).to(F64)  # small integers: exact
        u = torch.arange(nW)
        di, dj = torch.meshgrid(torch.arange(k), torch.arange(k), indexing="ij")
        offsets = (di * R + dj).flatten()
        corners = (u[:, None] * R + u[None, :]).flatten()  # crop u·nW + v: top-left pixel u·R + v
        self.pixel_index = (corners[:, None] + offsets[None, :]).to(device)
        self.sizes = torch.full((self.n_crops,), k * k, device=device)
        self.multiplicity = torch.ones(self.n_crops, dtype=F64, device=device)

    def crop_sums(self, e: torch.Tensor) -> torch.Tensor:
        R, M = self.R, e.shape[-1]
        rows = window_sums(e.view(R, R, M), self.k, 0)  # [nW(u), R(j), M]: sums over k rows
        return window_sums(rows, self.k, 1).view(self.n_crops, M)  # ... and over k columns

    def pixel_sums(self, w: torch.Tensor) -> torch.Tensor:
        nW, M = self.n_windows, w.shape[-1]
        rows = spread_sums(w.view(nW, nW, M), self.k, 0)  # [R(i), nW(v), M]
        return spread_sums(rows, self.k, 1).view(self.R * self.R, M)


class MaskCrops:
    """Arbitrary crops given as bool masks [K, P]; identical masks are merged (their estimates are identical) and
    empty ones dropped. Pixels that no mask holds are flagged in `uncovered` (the denoiser decides what they get).

    Both maps are products with the crop-membership matrix (sparse CSR on CPU when the crops are small: its
    cost is the total crop size), in the dtype of the operand. Each crop sum adds at most `max_size` terms.
    """

    def __init__(self, masks: torch.Tensor, device=None, sparse: bool | None = None):
        masks = masks.reshape(masks.shape[0], -1).bool().cpu()
        P = masks.shape[1]
        unique, counts = torch.unique(masks, dim=0, return_counts=True)
        keep = unique.any(1)
        unique, counts = unique[keep], counts[keep]
        sizes = unique.sum(1)
        self.n_crops, self.max_size = unique.shape[0], int(sizes.max())
        self.whole = self.n_crops == 1 and bool(unique.all())
        self.depth = self.max_size
        coverage = (unique.to(F64) * counts[:, None].to(F64)).sum(0)
        self.uncovered = (coverage == 0).to(device)
        self.coverage = coverage.to(device)
        self.multiplicity = counts.to(F64).to(device)
        self.sizes = sizes.to(device)
        pix = torch.sort(unique.byte(), dim=1, descending=True, stable=True).indices[:, : self.max_size]
        slots = torch.arange(self.max_size)[None, :]
        self.pixel_index = torch.where(slots < sizes[:, None], pix, P).to(device)
        device = torch.device("cpu") if device is None else torch.device(device)
        if sparse is None:
            sparse = device.type == "cpu" and float(unique.float().mean()) < 0.1
        self._member = _Matrix(unique.double(), sparse, device)  # [K, P]
        self._spread = _Matrix((unique.double() * counts[:, None].double()).T.contiguous(), sparse, device)  # [P, K]

    def crop_sums(self, e: torch.Tensor) -> torch.Tensor:
        return self._member(e)

    def pixel_sums(self, w: torch.Tensor) -> torch.Tensor:
        return self._spread(w)


class _Matrix:
    """A fixed matrix for products with dense operands, kept per dtype (sparse CSR or dense)."""

    def __init__(self, matrix: torch.Tensor, sparse: bool, device):
        self.matrix, self.sparse, self.device, self._by_dtype = matrix, sparse, device, {}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype not in self._by_dtype:
            m = self.matrix.to(x.dtype)
            if self.sparse:
                with warnings.catch_warnings():  # "sparse CSR support is in beta": products with dense are stable
                    warnings.simplefilter("ignore", UserWarning)
                    m = m.to_sparse_csr()
            self._by_dtype[x.dtype] = m.to(self.device)
        return self._by_dtype[x.dtype] @ x
