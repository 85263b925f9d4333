"""Gaussian denoiser: D(z, t) = μ + U_r diag(s_k / (s_k + t²)) U_rᵀ (z - μ).

The covariance divides by N (the population covariance), or by N - 1 with `unbiased` (the Wiener filter of
Lukoianov et al., whose outputs it then reproduces up to their float32 SVD).

The covariance is symmetric, so its SVD is its eigendecomposition (U = V). Applying it costs O(D·r) per
latent; no D x D matrix is built per call.
"""

from __future__ import annotations

import torch

from pspc_core.dataset import Dataset
from pspc_core.denoiser import Denoiser
from pspc_core.errors import ParameterError

from .eigen import covariance_eigen


class GaussianDenoiser(Denoiser):
    def __init__(self, dataset: Dataset, rank: int | None = None, unbiased: bool = False):
        if rank is not None and rank < 1:
            raise ParameterError(f"rank must be at least 1 (or omitted for all), got {rank}")
        self.resolution, self.channels = dataset.resolution, dataset.channels
        if unbiased and len(dataset) < 2:
            raise ParameterError("unbiased needs at least 2 training images (its divisor is N - 1); use unbiased=false")
        mean, evals, vecs = covariance_eigen(dataset, ddof=1 if unbiased else 0)
        if rank is not None:
            evals, vecs = evals[:rank], vecs[:, :rank]
        self.mean, self.evals, self.vecs = mean, evals, vecs

    def to(self, device) -> "GaussianDenoiser":
        super().to(device)
        self.mean, self.evals, self.vecs = (a.to(self.device) for a in (self.mean, self.evals, self.vecs))
        return self

    def denoise(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        zc = z.flatten(1).double() - self.mean
        coef = zc @ self.vecs  # [B, r]
        shrink = self.evals / (self.evals + t.double()[:, None] ** 2)
        out = self.mean + (coef * shrink) @ self.vecs.T
        return out.to(torch.float32).view_as(z)
