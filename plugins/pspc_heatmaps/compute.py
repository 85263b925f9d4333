"""PSPC-Flex gradient-sensitivity heatmaps (Niedoba et al. 2025, eq. 8) from any differentiable denoiser.

Definition (the toolkit's, exactly). For a noise level t, an output pixel p = (y, x) and an input pixel
q = (i, j), with D(z, t)[c, y, x] the denoiser's output:

    h_t[y, x, i, j] = E_z [ Σ_c' | ∂(Σ_c D(z, t)[c, y, x]) / ∂z[c', i, j] | ]

"The pixel's Jacobian row": the pixel's value summed over output channels c is one scalar; its gradient with
respect to the input is one row of C·R² numbers; its absolute value is summed over the input channels c'. The
expectation is a mean over forward-process latents z = x_n + t·ε. With `per_channel=True` the absolute value
is taken per output channel before summing, Σ_c Σ_c' |∂D[c, y, x] / ∂z[c', i, j]| (C times the work); the
two agree wherever a pixel's channel rows do not cancel. PSPC-Flex normalises every map to sum 1, so only the
shape of h matters, not its scale.

Computation: one forward pass per batch of latents and batched vector-Jacobian products (`torch.func.vjp`
under `torch.func.vmap`) with one-hot cotangents, `pixel_chunk` output pixels at a time, instead of one
backward pass per pixel. Results are [L, R, R, R, R] indexed [t index, y, x, i, j] (the paper's layout), written
by `pspc_patch.heatmap_files`.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from pspc_core.errors import PspcError, is_out_of_memory


def pixel_cotangents(channels: int, resolution: int, pixels: range, per_channel: bool) -> torch.Tensor:
    """One-hot cotangents [K, C, R, R]: per pixel p one row of ones over the channels at p (K = len(pixels)),
    or with `per_channel` C rows, one per channel (K = C·len(pixels), pixel-major)."""
    n = len(pixels)
    rows = n * channels if per_channel else n
    v = torch.zeros(rows, channels, resolution * resolution)
    idx = torch.as_tensor(list(pixels))
    if per_channel:
        for c in range(channels):
            v[torch.arange(n) * channels + c, c, idx] = 1
    else:
        v[torch.arange(n), :, idx] = 1
    return v.view(rows, channels, resolution, resolution)


def heatmap_sum(denoiser: Callable, z: torch.Tensor, t: float, pixel_chunk: int = 256,
                per_channel: bool = False) -> torch.Tensor:
    """Σ over the latents z [B, C, R, R] of |Jacobian rows| (see the module docstring): [R, R, R, R] float64."""
    B, C, R, _ = z.shape
    t_batch = torch.full((B,), float(t), device=z.device)
    try:
        _, vjp_fn = torch.func.vjp(lambda zz: denoiser(zz, t_batch), z)
    except RuntimeError as exc:  # compiled or numpy code cannot take torch.func's wrapped tensors
        if is_out_of_memory(exc):
            raise
        raise PspcError(f"{type(denoiser).__name__} cannot be differentiated by torch (it leaves torch for "
                        "compiled code); heatmaps need a differentiable denoiser, e.g. network or gaussian") from None
    out = torch.zeros(R * R, R * R, dtype=torch.float64, device=z.device)
    per = C if per_channel else 1
    for start in range(0, R * R, max(1, pixel_chunk)):
        pixels = range(start, min(start + pixel_chunk, R * R))
        v = pixel_cotangents(C, R, pixels, per_channel).to(z.device)
        grads = _batched_vjp(vjp_fn, v[:, None].expand(-1, B, -1, -1, -1))  # [K, B, C, R, R]
        rows = grads.abs().sum(2).sum(1, dtype=torch.float64)  # Σ_c' and Σ over latents: [K, R, R]
        out[start : pixels.stop] = rows.view(len(pixels), per, R * R).sum(1)
    return out.view(R, R, R, R)


def _batched_vjp(vjp_fn, cotangents: torch.Tensor) -> torch.Tensor:
    try:
        return torch.func.vmap(vjp_fn)(cotangents)[0]
    except RuntimeError:  # an op without a batching rule: one product at a time, still one forward pass
        return torch.stack([vjp_fn(v)[0] for v in cotangents])


def heatmap_sum_loop(denoiser: Callable, z: torch.Tensor, t: float, per_channel: bool = False) -> torch.Tensor:
    """The same sum as `heatmap_sum` with one backward pass per output pixel (or pixel-channel): the slow,
    obviously-right baseline for tests and benchmarks."""
    B, C, R, _ = z.shape
    zz = z.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        d = denoiser(zz, torch.full((B,), float(t), device=z.device))
        out = torch.zeros(R, R, R, R, dtype=torch.float64, device=z.device)
        for y in range(R):
            for x in range(R):
                outputs = [d[:, c, y, x].sum() for c in range(C)] if per_channel else [d[:, :, y, x].sum()]
                for o in outputs:
                    (g,) = torch.autograd.grad(o, zz, retain_graph=True)
                    out[y, x] += g.abs().sum(1).sum(0, dtype=torch.float64)
    return out


def compute_heatmaps(denoiser: Callable, latents: Callable[[int, int, float], torch.Tensor], t_grid: torch.Tensor,
                     n_latents: int, batch: int = 8, pixel_chunk: int = 256, per_channel: bool = False,
                     job=None, progress: bool = True, device=None) -> torch.Tensor:
    """Mean heatmaps [L, R, R, R, R] (float32) over latents `latents(start, stop, t)` at every grid point.

    `job` (a `pspc_core.runtime.batches.BatchJob` over the L grid points, batch 1) keeps each finished grid point on
    disk, so that a rerun after an interruption skips it; without a job everything stays in memory. Under
    torchrun the grid points are shared out among the ranks and only rank 0 returns the heatmaps (others: None).
    """
    from pspc_core.runtime.progress import Progress

    n_batches = -(-n_latents // batch)
    L = len(t_grid)

    def grid_point(k: int) -> np.ndarray:
        t = float(t_grid[k])
        total = None
        for start in range(0, n_latents, batch):
            z = latents(start, min(start + batch, n_latents), t).to(device or "cpu", torch.float32)
            part = heatmap_sum(denoiser, z, t, pixel_chunk, per_channel)
            total = part if total is None else total + part
            bar.advance()
        mean = (total / n_latents).float().cpu()
        if not torch.isfinite(mean).all():
            raise PspcError(f"heatmap at t = {t:.4g} is not finite: the denoiser's gradient overflows there")
        if mean.sum() == 0:
            raise PspcError("every gradient is zero: the denoiser is not differentiable (does it run under "
                            "torch.no_grad?) or ignores its input")
        return mean.numpy()[None]

    if job is None:
        bar = Progress(L * n_batches, "heatmaps", enable=progress)
        return torch.from_numpy(np.concatenate([grid_point(k) for k in range(L)]))
    from pspc_core.runtime import distributed

    rank, world = distributed.rank_world()  # under torchrun, rank r takes the grid points k % world = r
    mine = [r for r in job.ranges if r[0] % world == rank]
    done = len([r for r in job.done() if r in mine])
    bar = Progress(len(mine) * n_batches, "heatmaps", enable=progress and rank == 0, done=done * n_batches)
    job.run(lambda start, stop: grid_point(start), ranges=mine)
    points = distributed.gather_merged({r: job.load(r) for r in mine})
    return None if points is None else torch.from_numpy(np.concatenate([points[r] for r in job.ranges]))
