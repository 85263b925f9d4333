"""EDM noise levels (Karras et al. 2022, eq. 5), and per-noise-level schedules of a denoiser's parameter.

A schedule is L values attached to L noise levels, its own grid: the EDM grid (t_min, t_max, ρ) by default, or
any explicit list `t_grid` (for instance Kamb & Ganguli's 20-step cosine grid). At noise level t the value of
the nearest grid point is used (linear distance, ties: the first), so a schedule written for 18 steps serves a
sampler with any number of steps. A single value applies at every t.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from .errors import ParameterError


def edm_schedule(n_steps: int = 18, t_min: float = 0.002, t_max: float = 80.0, rho: float = 7.0,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """t_i = (t_max^(1/ρ) + i/(n-1) (t_min^(1/ρ) - t_max^(1/ρ)))^ρ, i = 0..n-1, decreasing.

    Evaluated in `dtype` exactly as the paper's code does (float32: t_0 is 79.99998, not 80). The one check of a
    grid's settings: every grid (a sampler's, a schedule's) is made here.
    """
    if n_steps < 1:
        raise ParameterError(f"the noise grid needs at least one step, got {n_steps}")
    if not (0 < t_min < t_max < math.inf and 0 < rho < math.inf):
        raise ParameterError(f"the noise grid needs finite 0 < t_min < t_max and rho > 0 (--t-min, --t-max, --rho, "
                             f"or a denoiser's t_min, t_max, rho), got t_min={t_min}, t_max={t_max}, rho={rho}; "
                             "fix them")
    i = torch.arange(n_steps, dtype=dtype)
    try:
        hi, lo = t_max ** (1 / rho), t_min ** (1 / rho)
    except OverflowError:  # a tiny rho
        hi = lo = math.inf
    grid = (hi + i / max(n_steps - 1, 1) * (lo - hi)) ** rho
    if not bool(torch.isfinite(grid).all()) or bool((grid <= 0).any()):
        raise ParameterError(f"the noise grid of t_min={t_min}, t_max={t_max}, rho={rho} leaves the range of "
                             f"{dtype} (a tiny rho or a huge t_max); use values nearer the defaults (0.002, 80, 7)")
    return grid


def nearest_index(grid: torch.Tensor, t: float) -> int:
    """Index of the grid point nearest to `t` by linear distance (ties: the first)."""
    return int(torch.argmin((grid - float(t)).abs()))


class GridSchedule:
    """`values[i]` attached to noise level `t[i]`; `value(t)` is the value of the grid point nearest to t.

    values : the L values (a parameter's schedule, e.g. patch sizes), L ≥ 1.
    t_grid : L noise levels (any order, each ≥ 0); default: the L-point EDM grid (t_min, t_max, rho) in float32,
             exactly as the paper's code computes it.
    name   : the parameter's name, for error messages.
    """

    def __init__(self, values: Sequence[Any], t_grid: Sequence[float] | None = None, t_min: float = 0.002,
                 t_max: float = 80.0, rho: float = 7.0, name: str = "schedule"):
        self.values = list(values)
        L = len(self.values)
        if L < 1:
            raise ParameterError(f"{name} is empty; give at least one value (one per grid point)")
        if t_grid is not None:
            grid = [float(t) for t in t_grid]
            if len(grid) != L:
                raise ParameterError(f"t_grid has {len(grid)} noise levels but {name} has {L} values; "
                                     "give one noise level per value")
            if not all(math.isfinite(t) and t >= 0 for t in grid):
                raise ParameterError(f"t_grid holds a negative or non-finite noise level ({grid}); use t ≥ 0")
            self.t = torch.tensor(grid, dtype=torch.float64)
        else:
            self.t = edm_schedule(L, t_min, t_max, rho)

    def __len__(self) -> int:
        return len(self.values)

    def index(self, t: float) -> int:
        return nearest_index(self.t, t)

    def value(self, t: float) -> Any:
        return self.values[self.index(t)]
