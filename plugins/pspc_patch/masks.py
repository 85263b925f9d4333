"""PSPC-Flex crops from gradient-sensitivity heatmaps (paper, eq. 8 and its mask rule).

For output pixel (x, y) the crop keeps the most sensitive pixels of h[y, x] until their mass reaches λ:
normalise h to sum 1, sort ascending, cumulative sum, keep pixels whose cumulative sum is ≥ 1 - λ (float32, as
the paper's code). The crop need not contain (x, y) itself.
"""

from __future__ import annotations

import torch


def flex_masks(heatmaps_t: torch.Tensor, threshold: float) -> torch.Tensor:
    """Crops [R², R²] bool (row = output pixel y·R + x, column = kept pixel i·R + j) from heatmaps [R, R, R, R]."""
    R = heatmaps_t.shape[-1]
    h = heatmaps_t.reshape(R * R, R * R).float()
    h = h / h.sum(1, keepdim=True)
    ascending, order = torch.sort(h, dim=1, stable=True)
    keep = torch.cumsum(ascending, 1) >= 1 - torch.tensor(threshold, dtype=torch.float32)
    return torch.zeros_like(keep).scatter_(1, order, keep)
