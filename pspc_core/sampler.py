"""Probability-flow ODE samplers (Karras et al. 2022, Algorithm 1 without churn): Euler and Heun."""

from __future__ import annotations

from typing import Callable

import torch

from .runtime.progress import progress_bar
from .schedule import edm_schedule

SOLVERS = ("euler", "heun")


def to_d(z: torch.Tensor, denoised: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The PF-ODE derivative dz/dt = (z - D(z, t)) / t."""
    return (z - denoised) / t


def sample(denoiser: Callable, z_init: torch.Tensor, n_steps: int = 18, solver: str = "euler",
           t_min: float = 0.002, t_max: float = 80.0, rho: float = 7.0, t_steps: torch.Tensor | None = None,
           dtype: torch.dtype = torch.float32, callback: Callable | None = None, progress: bool = True) -> torch.Tensor:
    """Integrate the PF-ODE from `z_init` (the state at t_0, already scaled by it) down to t = 0.

    The schedule is `edm_schedule(n_steps, t_min, t_max, rho)` with t_n = 0 appended (or `t_steps`). The
    arithmetic runs in `dtype` (float64 as EDM's own sampler offers); the denoiser always sees float32.
    `callback(i, t, z, denoised)` runs after each denoiser call. Euler costs n calls, Heun 2n - 1: its last
    step (t' = 0) is an Euler step.
    """
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    if t_steps is None:
        t_steps = edm_schedule(n_steps, t_min, t_max, rho, dtype=dtype)
    t_steps = torch.cat([t_steps.to(dtype), t_steps.new_zeros(1, dtype=dtype)]).to(z_init.device)
    batch = z_init.shape[0]

    def denoise(z, t):
        d = denoiser(z.to(torch.float32), t.to(torch.float32).expand(batch))
        return d.to(dtype)

    z = z_init.to(dtype)
    steps = len(t_steps) - 1
    for i in progress_bar(range(steps), total=steps, desc="sampling", enable=progress):
        t, t_next = t_steps[i], t_steps[i + 1]
        denoised = denoise(z, t)
        if callback is not None:
            callback(i, t, z, denoised)
        d = to_d(z, denoised, t)
        if solver == "euler" or t_next == 0:
            z = z + (t_next - t) * d  # Euler step
        else:
            z_pred = z + (t_next - t) * d  # Euler prediction at t'
            denoised_pred = denoise(z_pred, t_next)
            if callback is not None:
                callback(i, t_next, z_pred, denoised_pred)
            d_pred = to_d(z_pred, denoised_pred, t_next)
            z = z + (t_next - t) * (0.5 * (d + d_pred))  # apply 2nd order correction
    return z


def schedule_for(denoiser, n_steps: int = 18, t_min: float = 0.002, t_max: float = 80.0, rho: float = 7.0,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The EDM grid a sampler uses with `denoiser`, as EDM's generate.py builds it: t_min and t_max clipped to the
    noise levels the denoiser supports (`sigma_min`, `sigma_max`, where it has them) and every level rounded as
    it rounds σ (`round_sigma`: only iDDPM networks round)."""
    t_min = max(t_min, getattr(denoiser, "sigma_min", 0.0))
    t_max = min(t_max, getattr(denoiser, "sigma_max", float("inf")))
    t_steps = edm_schedule(n_steps, t_min, t_max, rho, dtype=dtype)
    return denoiser.round_sigma(t_steps) if hasattr(denoiser, "round_sigma") else t_steps
