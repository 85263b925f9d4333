"""Eigendecomposition of a training set's covariance, in float64, computed once per dataset and divisor.

The divisor is N - ddof: N (ddof = 0, the population covariance of the Gaussian denoiser) or N - 1 (ddof = 1, the
sample covariance of Lukoianov et al.'s Wiener filter and PCA-locality masks).

The covariance of N images in D dimensions has rank at most N - 1, so float32 SVD of it is unstable in the
null space. When N < D the decomposition goes through the N x N Gram matrix instead of the D x D covariance:
the nonzero spectrum is the same, and the dropped directions have eigenvalue 0 (they collapse to the mean).
"""

from __future__ import annotations

import torch

from pspc_core.dataset import Dataset

CHUNK = 2048


def covariance_eigen(dataset: Dataset, ddof: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean [D], eigenvalues [r] descending, eigenvectors [D, r]) in float64 of the covariance with divisor
    N - ddof, cached on the dataset."""
    key = "gaussian_eigen" if ddof == 0 else f"gaussian_eigen_ddof{ddof}"
    if key not in dataset.cache:
        dataset.cache[key] = _compute(dataset, ddof)
    return dataset.cache[key]


def _compute(dataset: Dataset, ddof: int):
    n = len(dataset)
    divisor = n - ddof
    dim = dataset.images[0].numel()
    mean = torch.zeros(dim, dtype=torch.float64)
    for _, x in dataset.float_chunks(CHUNK, dtype=torch.float64):
        mean += x.flatten(1).sum(0)
    mean /= n
    if n < dim:
        xc = torch.cat([x.flatten(1) - mean for _, x in dataset.float_chunks(CHUNK, dtype=torch.float64)])
        evals, v = torch.linalg.eigh(xc @ xc.T / divisor)
        keep = evals > evals.max() * 1e-12
        evals, v = evals[keep], v[:, keep]
        vecs = (xc.T @ v) / torch.sqrt(evals * divisor)
    else:
        cov = torch.zeros(dim, dim, dtype=torch.float64)
        for _, x in dataset.float_chunks(CHUNK, dtype=torch.float64):
            xc = x.flatten(1) - mean
            cov += xc.T @ xc
        evals, vecs = torch.linalg.eigh(cov / divisor)
    order = torch.argsort(evals, descending=True)
    return mean, evals[order].clamp_min(0), vecs[:, order].contiguous()
