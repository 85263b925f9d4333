"""Nearest training image of each sample: the memorization check users run first."""

from __future__ import annotations

import numpy as np
import torch

from .dataset import Dataset


def nearest_training_images(samples, dataset: Dataset, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """(L2 distance in data units, dataset index) of the nearest training image for each sample.

    `samples` [S, C, R, R] (a tensor, an array or a memory-mapped file) is read `chunk` samples at a time, so any
    number of samples fits in memory. Distances use ‖a‖² - 2a·b + ‖b‖² in float64, exact enough to tell a
    memorized sample (distance ~0) apart.
    """
    dists, indices = [], []
    for start in range(0, len(samples), chunk):
        block = torch.as_tensor(np.array(samples[start : start + chunk]))
        dist, idx = _nearest(block, dataset, chunk)
        dists.append(dist)
        indices.append(idx)
    return torch.cat(dists), torch.cat(indices)


def _nearest(samples: torch.Tensor, dataset: Dataset, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    s = samples.flatten(1).double().cpu()
    ss = (s * s).sum(1, keepdim=True)
    best = torch.full((s.shape[0],), torch.inf, dtype=torch.float64)
    index = torch.zeros(s.shape[0], dtype=torch.int64)
    for start, x in dataset.float_chunks(chunk, dtype=torch.float64):
        x = x.flatten(1)
        d2 = (ss - 2 * s @ x.T + (x * x).sum(1)).clamp_min(0)
        val, idx = d2.min(1)
        better = val < best
        best[better], index[better] = val[better], idx[better] + start
    return best.sqrt(), index
