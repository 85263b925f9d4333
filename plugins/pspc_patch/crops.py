"""Crop families as two linear maps between pixels and crops, so one engine serves PSPC-Square and PSPC-Flex.

`crop_sums(e)`  : per-pixel maps e [P, M] (P = R² pixels, M columns) -> per-crop sums d [K, M], d_C = Σ_{p∈C} e_p,
                  accumulated in float64. e ≥ 0, so every sum adds non-negative terms directly and keeps e's
                  relative precision. No cumulative sums: those cancel catastrophically.
`pixel_sums(w)` : per-crop values w [K, M] -> per-pixel sums [P, M], Σ_{C∋p} w_C (the transposed map), in float64
                  (many weights accumulate into one pixel).
`coverage`      : [P] how many crops hold each pixel (the composite's normaliser).
`pixel_index`   : [K, S] the pixels each crop's estimate is spread to, padded with P (S = `max_size`).
`multiplicity`  : [K] how many times each crop counts in the composite (merged duplicates), or None (all once).
"""

from __future__ import annotations

import warnings

import torch

F64 = torch.float64


class BoxCrops:
    """All k×k windows inside an R×R image (stride 1, no padding): (R-k+1)² crops, window-major (row, column).

    Both maps are separable box filters, each a product with the banded 0/1 matrix A [R-k+1, R] (A[u, i] = 1 for
    u ≤ i < u + k): every window sum adds its k² terms directly (no cancellation, unlike cumulative sums), and
    the cost per column, O(R²·(R-k+1)), does not grow with k.
    """

    def __init__(self, resolution: int, patch_size: int, device=None):
        self.R, self.k = resolution, patch_size
        self.n_windows = resolution - patch_size + 1
        self.n_crops = self.n_windows**2
        u = torch.arange(self.n_windows)[:, None]
        i = torch.arange(resolution)[None, :]
        band = (i >= u) & (i < u + patch_size)  # A [nW, R]
        self.band = band.to(F64).to(device)
        self.band_t = band.T.to(F64).contiguous().to(device)
        ones = torch.ones(self.n_crops, 1, dtype=F64, device=device)
        self.coverage = self.pixel_sums(ones).squeeze(1)
        di, dj = torch.meshgrid(torch.arange(patch_size), torch.arange(patch_size), indexing="ij")
        offsets = (di * resolution + dj).flatten()
        corners = (u * resolution + torch.arange(self.n_windows)[None, :]).flatten()  # window (u, v) -> u·R + v
        self.pixel_index = (corners[:, None] + offsets[None, :]).to(device)
        self.max_size = patch_size**2
        self.multiplicity = None

    def crop_sums(self, e: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        R, nW, M = self.R, self.n_windows, e.shape[-1]
        band = self.band if scale == 1.0 else self.band * scale
        rows = (band @ e.reshape(R, R * M).double()).view(nW, R, M)  # sums over k rows
        return torch.matmul(self.band, rows).view(self.n_crops, M)  # ... and over k columns

    def pixel_sums(self, w: torch.Tensor) -> torch.Tensor:
        R, nW, M = self.R, self.n_windows, w.shape[-1]
        rows = (self.band_t @ w.to(F64).reshape(nW, nW * M)).view(R, nW, M)
        return torch.matmul(self.band_t, rows).view(R * R, M)


class MaskCrops:
    """Arbitrary crops given as bool masks [K, P]; identical masks are merged (their estimates are identical).

    Pixels no mask holds get the whole image as their crop, so they take the empirical denoiser's estimate.
    Both maps are matrix products with the membership matrix (sparse on CPU when the crops are small).
    """

    def __init__(self, masks: torch.Tensor, device=None, sparse: bool | None = None):
        masks = masks.reshape(masks.shape[0], -1).bool()
        unique, counts = torch.unique(masks, dim=0, return_counts=True)
        keep = unique.any(1)  # an empty crop estimates nothing
        unique, counts = unique[keep], counts[keep]
        coverage = (unique.to(F64) * counts[:, None].to(F64)).sum(0)
        member = unique.float()  # [K, P]
        out = (member * counts[:, None].float()).T  # [P, K]: each distinct crop weighted by its multiplicity
        self.uncovered = coverage == 0
        multiplicity = counts.to(F64)
        if self.uncovered.any():
            member = torch.cat([member, torch.ones(1, member.shape[1])])
            multiplicity = torch.cat([multiplicity, torch.ones(1, dtype=F64)])
            out = torch.cat([out, self.uncovered.float()[:, None]], 1)
            coverage = torch.where(self.uncovered, torch.ones_like(coverage), coverage)
        member = member.to(F64)
        self.n_crops = member.shape[0]
        self.coverage = coverage.to(device)
        self.multiplicity = multiplicity.to(device)
        targets = out.T > 0  # [K, P] the pixels each crop's estimate goes to (the fallback: uncovered ones only)
        sizes = targets.sum(1)
        self.max_size = int(sizes.max())
        P = member.shape[1]
        order = torch.sort(targets.byte(), dim=1, descending=True, stable=True).indices[:, : self.max_size]
        slots = torch.arange(self.max_size)[None, :]
        self.pixel_index = torch.where(slots < sizes[:, None], order, P).to(device)
        device = torch.device("cpu") if device is None else torch.device(device)
        density = float(member.mean())
        if sparse is None:
            sparse = device.type == "cpu" and density < 0.1
        self.sparse = sparse
        out = out.to(F64)
        if sparse:
            with warnings.catch_warnings():  # "sparse CSR support is in beta": products with dense are stable
                warnings.simplefilter("ignore", UserWarning)
                self.member, self.out = member.to_sparse_csr().to(device), out.to_sparse_csr().to(device)
        else:
            self.member, self.out = member.to(device), out.to(device)

    def crop_sums(self, e: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        return (self.member @ e.double()).mul_(scale)

    def pixel_sums(self, w: torch.Tensor) -> torch.Tensor:
        return self.out @ w.to(F64)
