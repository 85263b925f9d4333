"""Comparing denoisers on the samples they draw: every denoiser integrates the PF-ODE from the same initial
latents with the same solver and noise grid as the reference, and each sample is scored against the reference's
sample from the same latent (Kamb & Ganguli's figure of merit):

- MSE: mean over pixels of (x − x_ref)²;
- r² = 1 − Σ(x − x_ref)² / Σ(x_ref − mean(x_ref))², over the pixels of one sample (1: the same image);
- the distance to the nearest training image (L2, data units): 0 for a copy of the training set.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch


def draw(built, stem: str, shape: tuple, seeds: range, t_steps: torch.Tensor, solver: str, outdir: Path, batch: int,
         key: dict, device, progress: bool) -> np.ndarray:
    """Samples [n, C, R, R] of one built denoiser from the latents of `seeds`, written to outdir/STEM_samples.npy
    (resumable)."""
    from pspc_core.latents import gaussian_latents
    from pspc_core.runtime.batches import run_in_batches
    from pspc_core.sampler import sample

    def compute(start: int, stop: int) -> np.ndarray:
        z = gaussian_latents(range(seeds.start + start, seeds.start + stop), shape) * t_steps[0]
        with torch.no_grad():
            out = sample(built.denoiser, z.to(device), solver=solver, t_steps=t_steps, progress=False)
        return out.float().cpu().numpy()

    key = dict(key, denoiser=built.key, seeds=[seeds.start, seeds.stop], solver=solver, t=t_steps.tolist())
    return run_in_batches(outdir, f"{stem}_samples", key, len(seeds), batch, compute, progress)


def scores(samples: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(MSE, r²) of each sample against the reference's sample from the same latent, in float64."""
    x, ref = (np.asarray(a, dtype=np.float64).reshape(len(a), -1) for a in (samples, reference))
    sse = ((x - ref) ** 2).sum(1)
    sst = ((ref - ref.mean(1, keepdims=True)) ** 2).sum(1)
    return sse / x.shape[1], 1 - sse / np.maximum(sst, 1e-300)


def side_by_side(path, rows: dict[str, np.ndarray], columns: int = 12) -> None:
    """One row of the first `columns` samples per denoiser (the reference first), labelled, as a PNG."""
    from PIL import Image, ImageDraw

    from pspc_core.runtime.images import to_uint8

    from .plot import _font

    first = next(iter(rows.values()))
    n, c, r = min(columns, len(first)), first.shape[1], first.shape[-1]
    font = _font(14)
    scale, pad = max(1, 64 // r), 4
    label_w = 24 + math.ceil(max(font.getlength(name) for name in rows))
    size = r * scale
    img = Image.new("RGB", (label_w + n * (size + pad), len(rows) * (size + pad) + pad), "white")
    d = ImageDraw.Draw(img)
    for i, (name, images) in enumerate(rows.items()):
        y = pad + i * (size + pad)
        d.text((8, y + size / 2), name, fill="black", font=font, anchor="lm")
        for j, im in enumerate(to_uint8(np.asarray(images[:n]))):
            tile = Image.fromarray(im[0] if c == 1 else im[:3].transpose(1, 2, 0)).resize((size, size), Image.NEAREST)
            img.paste(tile, (label_w + j * (size + pad), y))
    from pspc_core.runtime.atomic import atomic_path

    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
