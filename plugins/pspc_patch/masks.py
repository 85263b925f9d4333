"""PSPC-Flex crops from gradient-sensitivity heatmaps (paper, eq. 8 and its mask rule).

For output pixel (x, y) the crop keeps the most sensitive pixels of h[y, x] until their mass reaches λ:
normalise h to sum 1, sort ascending, cumulative sum, keep pixels whose cumulative sum is ≥ 1 - λ (float32, as
the paper's code). The crop need not contain (x, y) itself.
"""

from __future__ import annotations

import torch


def flex_order(heatmaps_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(order, cumulative), both [R², R²]: each output pixel's normalised heatmap sorted ascending (stable), the
    pixels in that order and the float32 cumulative sums along it, which the mask rule thresholds. The cumulative
    sums of non-negative terms never decrease, so every λ keeps a suffix of the order (`sweep.py` relies on it)."""
    R = heatmaps_t.shape[-1]
    h = heatmaps_t.reshape(R * R, R * R).float()
    h = h / h.sum(1, keepdim=True)
    ascending, order = torch.sort(h, dim=1, stable=True)
    return order, torch.cumsum(ascending, 1)


def flex_keep(cumulative: torch.Tensor, threshold: float) -> torch.Tensor:
    """Which positions of the ascending order a mass λ keeps: cumulative sum ≥ 1 - λ (float32, as the paper)."""
    return cumulative >= 1 - torch.tensor(threshold, dtype=torch.float32)


def flex_masks(heatmaps_t: torch.Tensor, threshold: float) -> torch.Tensor:
    """Crops [R², R²] bool (row = output pixel y·R + x, column = kept pixel i·R + j) from heatmaps [R, R, R, R]."""
    order, cumulative = flex_order(heatmaps_t)
    keep = flex_keep(cumulative, threshold)
    return torch.zeros_like(keep).scatter_(1, order, keep)
