"""Crop families as two linear maps between pixels and crops, so one engine serves PSPC-Square and PSPC-Flex.

`crop_sums(e)`  : per-pixel maps e [P, M] (P = R² pixels, M columns) -> per-crop sums d [K, M], d_C = Σ_{p∈C} e_p,
                  accumulated in float64 (times an optional scale).
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
    """All k×k windows inside an R×R image (stride 1, no padding): (R-k+1)² crops, crop v·(R-k+1) + u having
    its top-left corner at row u, column v.

    Both maps are separable box filters done with float64 running (prefix) sums, one axis at a time: O(1) work
    per pixel and column whatever k is. float64 matters: a window sum is a difference of two prefix sums, which
    cancels catastrophically in float32 at small t; in float64 its error stays ~1e-16 of a row's total.
    """

    def __init__(self, resolution: int, patch_size: int, device=None):
        self.R, self.k = resolution, patch_size
        self.n_windows = resolution - patch_size + 1
        self.n_crops = self.n_windows**2
        ones = torch.ones(self.n_crops, 1, dtype=F64, device=device)
        self.coverage = self.pixel_sums(ones).squeeze(1)
        u = torch.arange(self.n_windows)
        di, dj = torch.meshgrid(torch.arange(patch_size), torch.arange(patch_size), indexing="ij")
        offsets = (di * resolution + dj).flatten()
        corners = (u[None, :] * resolution + u[:, None]).flatten()  # crop v·nW + u: top-left pixel (u, v) = u·R + v
        self.pixel_index = (corners[:, None] + offsets[None, :]).to(device)
        self.max_size = patch_size**2
        self.multiplicity = None

    def crop_sums(self, e: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        R, M = self.R, e.shape[-1]
        rows = _window_sums(e.view(R, R, M), self.k)  # [nW(u), R(j), M]: sums over k rows i
        cols = _window_sums(rows.transpose(0, 1), self.k)  # [nW(v), nW(u), M]: ... and over k columns j
        out = cols.view(self.n_crops, M)
        return out.mul_(scale) if scale != 1.0 else out

    def pixel_sums(self, w: torch.Tensor) -> torch.Tensor:
        R, nW, M = self.R, self.n_windows, w.shape[-1]
        cols = _spread_sums(w.view(nW, nW, M), self.k)  # [R(j), nW(u), M]
        rows = _spread_sums(cols.transpose(0, 1), self.k)  # [R(i), R(j), M]
        return rows.view(R * R, M)


def _prefix(a: torch.Tensor) -> torch.Tensor:
    """c[i] = Σ_{i' ≤ i} a[i'] along dim 0 in float64 (slice adds: fast on CPU, vectorised over the rest)."""
    c = torch.empty(a.shape, dtype=F64, device=a.device)
    c[0] = a[0]
    for i in range(1, a.shape[0]):
        torch.add(c[i - 1], a[i], out=c[i])
    return c


def _window_sums(a: torch.Tensor, k: int) -> torch.Tensor:
    """out[u] = Σ_{i=u}^{u+k-1} a[i] along dim 0, u = 0..L-k (float64)."""
    c = _prefix(a)
    n = a.shape[0] - k + 1
    if n == 1:
        return c[k - 1 :]
    out = torch.empty((n, *a.shape[1:]), dtype=F64, device=a.device)
    out[0] = c[k - 1]
    torch.sub(c[k:], c[: n - 1], out=out[1:])
    return out


def _spread_sums(w: torch.Tensor, k: int) -> torch.Tensor:
    """Transpose of `_window_sums`: out[i] = Σ_{u=max(0,i-k+1)}^{min(i,n-1)} w[u], i = 0..n+k-2 (float64)."""
    n = w.shape[0]
    c = _prefix(w)
    out = torch.empty((n + k - 1, *w.shape[1:]), dtype=F64, device=w.device)
    out[:n] = c
    out[n:] = c[n - 1]
    out[k:] -= c[: n - 1]
    return out


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
