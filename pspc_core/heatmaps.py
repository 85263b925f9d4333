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
backward pass per pixel. Results are stored as [L, R, R, R, R] indexed [t index, y, x, i, j] (the paper's
layout) in a `.safetensors` file (tensor `heatmaps`, the grid as `t`) and optionally a `.npy`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .errors import PspcError, ShapeError

HEATMAP_KEY = "heatmaps"


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
    _, vjp_fn = torch.func.vjp(lambda zz: denoiser(zz, t_batch), z)
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

    `job` (a `pspc_core.resumable.BatchJob` over the L grid points, batch 1) keeps each finished grid point on
    disk, so that a rerun after an interruption skips it; without a job everything stays in memory. Under
    torchrun the grid points are shared out among the ranks and only rank 0 returns the heatmaps (others: None).
    """
    from .progress import Progress

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
    from . import distributed

    rank, world = distributed.rank_world()  # under torchrun, rank r takes the grid points k % world = r
    mine = [r for r in job.ranges if r[0] % world == rank]
    done = len([r for r in job.done() if r in mine])
    bar = Progress(len(mine) * n_batches, "heatmaps", enable=progress and rank == 0, done=done * n_batches)
    job.run(lambda start, stop: grid_point(start), ranges=mine)
    points = distributed.gather_merged({r: job.load(r) for r in mine})
    return None if points is None else torch.from_numpy(np.concatenate([points[r] for r in job.ranges]))


def save_heatmaps(path, heatmaps: torch.Tensor, t_grid: torch.Tensor, meta: dict | None = None,
                  float16: bool = False) -> None:
    """Write heatmaps [L, R, R, R, R] and the grid t [L].

    `.safetensors`: tensors `heatmaps` (float32, or float16 with each map scaled to a maximum of 1) and `t`,
    metadata `pspc_heatmaps` = JSON. `.npz` (compact, for shipping): each map as 8-bit logarithmic codes of its
    values relative to its maximum, see `encode_log8`, zip-compressed.
    """
    from .atomic import atomic_path

    h = heatmaps.detach().cpu().float().contiguous()
    t = torch.as_tensor(t_grid, dtype=torch.float64).cpu().contiguous()
    meta_json = json.dumps(meta or {}, default=str)
    if Path(path).suffix == ".npz":
        codes, scale = encode_log8(h)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, codes=codes, scale=scale, floor=np.float64(LOG8_FLOOR), t=t.numpy(),
                                    meta=np.array(meta_json))
        return
    from safetensors.torch import save_file

    if float16:  # keep the maps' shape, not their scale: normalise so each map's largest value is 1
        h = (h / h.flatten(3).amax(-1)[..., None, None].clamp_min(1e-30)).to(torch.float16)
    with atomic_path(path) as tmp:
        save_file({HEATMAP_KEY: h, "t": t}, str(tmp), metadata={"pspc_heatmaps": meta_json})


LOG8_FLOOR = 1e-5  # values below this fraction of their map's maximum are stored as 0


def encode_log8(h: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(codes uint8 [..., R, R], scale float32 [...]): code 0 for h < floor·max, else
    1 + round(254 · ln(h / (floor·max)) / ln(1/floor)); a relative step of floor^(-1/254) (4.6 %)."""
    scale = h.flatten(-2).amax(-1).clamp_min(1e-30)
    rel = h / scale[..., None, None]
    level = torch.log(rel.clamp_min(LOG8_FLOOR) / LOG8_FLOOR) / -np.log(LOG8_FLOOR)
    codes = torch.where(rel >= LOG8_FLOOR, 1 + torch.round(254 * level), torch.zeros(()))
    return codes.clamp(0, 255).to(torch.uint8).numpy(), scale.numpy().astype(np.float32)


def decode_log8(codes: np.ndarray, scale: np.ndarray, floor: float = LOG8_FLOOR) -> torch.Tensor:
    c = torch.from_numpy(np.asarray(codes)).float()
    values = torch.exp((c - 1) / 254 * -np.log(floor)) * floor
    return torch.where(c > 0, values, torch.zeros(())) * torch.from_numpy(np.asarray(scale, np.float32))[..., None, None]


def load_heatmaps(path) -> tuple[torch.Tensor, dict]:
    """(heatmaps [L, R, R, R, R] float32, metadata) from a `.safetensors` written by `save_heatmaps` or a
    `.npy` in the paper's layout."""
    path = Path(path)
    if not path.exists():
        raise ShapeError(f"heatmap file {path} does not exist; compute one with `pspc heatmaps`")
    if path.suffix == ".npy":
        try:
            h = torch.from_numpy(np.load(path, allow_pickle=False).astype(np.float32))
        except (ValueError, OSError):
            raise ShapeError(f"heatmap file {path} is not a readable .npy file") from None
        meta = {}
    elif path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as f:
                h = decode_log8(f["codes"], f["scale"], float(f["floor"]))
                meta = json.loads(str(f["meta"]))
        except (ValueError, OSError, KeyError):
            raise ShapeError(f"heatmap file {path} is not a heatmap .npz written by `pspc heatmaps`") from None
    else:
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                h = f.get_tensor(HEATMAP_KEY).float()
                meta = json.loads((f.metadata() or {}).get("pspc_heatmaps", "{}"))
        except Exception as exc:
            raise ShapeError(f"heatmap file {path} is not a heatmap .safetensors file ({type(exc).__name__}); "
                             "write one with `pspc heatmaps`") from None
    if h.ndim != 5 or len(set(h.shape[1:])) != 1:
        raise ShapeError(f"heatmaps in {path} have shape {tuple(h.shape)}; expected [L, R, R, R, R]")
    return h, meta
