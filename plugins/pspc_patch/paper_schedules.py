"""The paper's CIFAR-10 schedules for PSPC (its 18-point EDM grid), and their scaling to other resolutions."""

from __future__ import annotations

import math


# The paper's CIFAR-10 (32×32) settings for its 18-point grid.
PAPER_CIFAR10_PATCH_SIZES = (32, 32, 32, 32, 32, 32, 32, 23, 15, 11, 7, 5, 3, 3, 3, 3, 3, 3)
PAPER_CIFAR10_THRESHOLDS = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.7, 0.7, 0.5, 0.4, 0.4, 0.4, 0.4, 0.3, 0.3, 0.3, 0.3)


def scaled_patch_sizes(resolution: int) -> list[int]:
    """The CIFAR-10 schedule scaled to `resolution`: round(k·R/32) (halves up), kept in 1..R.

    At R = 16 this gives the paper's own 16×16 schedule 16,…,16,12,8,6,4,3,2,2,2,2,2,2.
    """
    return [min(resolution, max(1, math.floor(k * resolution / 32 + 0.5))) for k in PAPER_CIFAR10_PATCH_SIZES]
