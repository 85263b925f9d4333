"""Nearest training image of each sample: the memorization check users run first."""

from __future__ import annotations

import torch

from .dataset import Dataset


def nearest_training_images(samples: torch.Tensor, dataset: Dataset, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """(L2 distance in data units, dataset index) of the nearest training image for each sample.

    Distances use ‖a‖² - 2a·b + ‖b‖² in float64, exact enough to tell a memorized sample (distance ~0) apart.
    """
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
