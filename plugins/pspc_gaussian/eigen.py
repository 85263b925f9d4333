"""Eigendecomposition of a training set's population covariance, in float64, computed once per dataset.

The covariance of N images in D dimensions has rank at most N - 1, so float32 SVD of it is unstable in the
null space. When N < D the decomposition goes through the N x N Gram matrix instead of the D x D covariance:
the nonzero spectrum is the same, and the dropped directions have eigenvalue 0 (they collapse to the mean).
"""

from __future__ import annotations

import torch

from pspc_core.dataset import Dataset

CHUNK = 2048


def covariance_eigen(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean [D], eigenvalues [r] descending, eigenvectors [D, r]) in float64, cached on the dataset."""
    key = "gaussian_eigen"
    if key not in dataset.cache:
        dataset.cache[key] = _compute(dataset)
    return dataset.cache[key]


def _compute(dataset: Dataset):
    n = len(dataset)
    dim = dataset.images[0].numel()
    mean = torch.zeros(dim, dtype=torch.float64)
    for _, x in dataset.float_chunks(CHUNK, dtype=torch.float64):
        mean += x.flatten(1).sum(0)
    mean /= n
    if n < dim:
        xc = torch.cat([x.flatten(1) - mean for _, x in dataset.float_chunks(CHUNK, dtype=torch.float64)])
        evals, v = torch.linalg.eigh(xc @ xc.T / n)
        keep = evals > evals.max() * 1e-12
        evals, v = evals[keep], v[:, keep]
        vecs = (xc.T @ v) / torch.sqrt(evals * n)
    else:
        cov = torch.zeros(dim, dim, dtype=torch.float64)
        for _, x in dataset.float_chunks(CHUNK, dtype=torch.float64):
            xc = x.flatten(1) - mean
            cov += xc.T @ xc
        evals, vecs = torch.linalg.eigh(cov / n)
    order = torch.argsort(evals, descending=True)
    return mean, evals[order].clamp_min(0), vecs[:, order].contiguous()
