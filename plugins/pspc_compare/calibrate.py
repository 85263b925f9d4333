"""Calibrating a local denoiser's scale to a reference, one noise level at a time (Kamb & Ganguli's procedure,
for any denoiser that declares a `Scale`).

At each grid point t_k, every candidate value v of the scale (a patch size, a Flex mass λ, a threshold τ) is
applied at every t, and its outputs on the calibration latents are scored against the reference's outputs:
- `mse`: mean over latents and pixels of (D_v(z, t_k) − D_ref(z, t_k))², lower is better;
- `cosine`: mean over latents of cos(D_v(z, t_k) − z, D_ref(z, t_k) − z), the agreement of the two scores'
  directions (the score is (D − z)/t²; 1/t² cancels), higher is better.
The calibrated schedule takes at each t_k the best candidate; written on the same grid (`t_grid`), the denoiser
uses exactly that value at t_k.

A denoiser may share work across candidates: `den.scale_sweep(z, t, values) -> [V, B, C, R, R]`, its outputs
for each candidate at once (PSPC: one set of squared differences serves every patch size, one order of each
heatmap every λ). Otherwise each candidate is its own denoiser, built once, its scores kept per candidate.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

METRICS = ("mse", "cosine")


def scores_of(outputs: torch.Tensor, z: torch.Tensor, ref: torch.Tensor, metric: str) -> np.ndarray:
    """[V, 2] sums and counts of the metric for outputs [V, B, C, R, R] against the reference [B, C, R, R]."""
    out, ref = outputs.double(), ref.double()
    if metric == "mse":
        sse = ((out - ref) ** 2).flatten(2).sum(2).sum(1)
        return torch.stack([sse, torch.full_like(sse, ref.numel())], 1).cpu().numpy()
    zz = z.double()
    a, b = (out - zz).flatten(2), (ref - zz).flatten(1)[None]
    cos = (a * b).sum(2) / (a.norm(dim=2) * b.norm(dim=2)).clamp_min(1e-300)
    return torch.stack([cos.sum(1), torch.full_like(cos[:, 0], ref.shape[0])], 1).cpu().numpy()


def best_indices(scores: np.ndarray, metric: str) -> np.ndarray:
    """Per grid point the index of the best candidate (ties: the first, i.e. the smallest value tried first)."""
    return np.argmin(scores, 1) if metric == "mse" else np.argmax(scores, 1)


def calibrate(study, label: str, key, values: list, make: Callable, sweep: Callable | None,
              metric: str) -> np.ndarray | None:
    """Scores [L, V] of every candidate at every grid point of `study` (rank 0; None on the others).

    `make(v)` builds the denoiser with the scale v at every t; `sweep(z, t, values)` (optional) gives all
    candidates' outputs at once."""
    if sweep is not None:
        def all_candidates(z, ref, t):
            return scores_of(sweep(z, t, values), z, ref, metric)

        sums = study.score(f"calibrate-{label}", dict(key=key, values=values, metric=metric), all_candidates, label)
        return None if sums is None else sums[..., 0] / sums[..., 1]
    columns = []
    for v in values:
        den = make(v)

        def one(z, ref, t, den=den):
            return scores_of(den(z, torch.full((len(z),), t, device=z.device))[None], z, ref, metric)

        sums = study.score(f"calibrate-{label}-{v}", dict(key=key, value=v, metric=metric), one, f"{label} {v}")
        columns.append(None if sums is None else sums[:, 0, 0] / sums[:, 0, 1])
        del den
    return None if columns[0] is None else np.stack(columns, 1)
