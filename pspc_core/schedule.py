"""EDM noise levels (Karras et al. 2022, eq. 5) and the nearest-grid-point lookup PSPC schedules use."""

from __future__ import annotations

import torch


def edm_schedule(n_steps: int = 18, t_min: float = 0.002, t_max: float = 80.0, rho: float = 7.0,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """t_i = (t_max^(1/ρ) + i/(n-1) (t_min^(1/ρ) - t_max^(1/ρ)))^ρ, i = 0..n-1, decreasing.

    Evaluated in `dtype` exactly as the paper's code does (float32: t_0 is 79.99998, not 80).
    """
    if n_steps < 1:
        raise ValueError(f"n_steps must be at least 1, got {n_steps}")
    i = torch.arange(n_steps, dtype=dtype)
    hi, lo = t_max ** (1 / rho), t_min ** (1 / rho)
    return (hi + i / max(n_steps - 1, 1) * (lo - hi)) ** rho


def nearest_index(grid: torch.Tensor, t: float) -> int:
    """Index of the grid point nearest to `t` by linear distance (ties: the first)."""
    return int(torch.argmin((grid - float(t)).abs()))
