"""Per-noise-level schedules: L values attached to their own L-point EDM grid, looked up by the nearest point.

A schedule written for 18 steps thus serves a sampler with any number of steps (the paper's code instead forces
the sampler to the schedule's length).
"""

from __future__ import annotations

import math

from pspc_core.errors import ParameterError
from pspc_core.schedule import edm_schedule, nearest_index

# The paper's CIFAR-10 (32×32) settings for its 18-point grid.
PAPER_CIFAR10_PATCH_SIZES = (32, 32, 32, 32, 32, 32, 32, 23, 15, 11, 7, 5, 3, 3, 3, 3, 3, 3)
PAPER_CIFAR10_THRESHOLDS = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.7, 0.7, 0.5, 0.4, 0.4, 0.4, 0.4, 0.3, 0.3, 0.3, 0.3)


def scaled_patch_sizes(resolution: int) -> list[int]:
    """The CIFAR-10 schedule scaled to `resolution`: round(k·R/32) (halves up), kept in 1..R.

    At R = 16 this gives the paper's own 16×16 schedule 16,…,16,12,8,6,4,3,2,2,2,2,2,2.
    """
    return [min(resolution, max(1, math.floor(k * resolution / 32 + 0.5))) for k in PAPER_CIFAR10_PATCH_SIZES]


class NoiseGrid:
    """L schedule values on the L-point EDM grid (t_min, t_max, ρ); `index(t)` is the nearest point (ties: first)."""

    def __init__(self, length: int, t_min: float, t_max: float, rho: float):
        if length < 1:
            raise ParameterError("the schedule is empty; give at least one value per grid point")
        if not (0 < t_min < t_max) or rho <= 0:
            raise ParameterError(
                f"grid needs 0 < t_min < t_max and rho > 0, got t_min={t_min}, t_max={t_max}, rho={rho}; fix them"
            )
        self.t = edm_schedule(length, t_min, t_max, rho)  # float32, exactly as the paper's code

    def __len__(self) -> int:
        return len(self.t)

    def index(self, t: float) -> int:
        return nearest_index(self.t, t)
