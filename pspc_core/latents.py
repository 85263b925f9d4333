"""Latents with one random generator per latent (seed + i, as EDM's generate.py), so that results do not depend
on the batch size or on how the latents are split across processes."""

from __future__ import annotations

import torch

from .dataset import Dataset


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def gaussian_latents(seeds, shape: tuple[int, ...]) -> torch.Tensor:
    """ε_i ~ N(0, I) of `shape` for each seed, stacked [len(seeds), *shape] (float32, CPU)."""
    return torch.stack([torch.randn(shape, generator=_generator(s)) for s in seeds])


def forward_process(dataset: Dataset, seeds, t: float) -> torch.Tensor:
    """z_i = x_{n_i} + t ε_i with a training image n_i and noise ε_i drawn from latent i's own generator."""
    out = []
    for s in seeds:
        g = _generator(s)
        n = int(torch.randint(len(dataset), (1,), generator=g))
        eps = torch.randn(dataset.images.shape[1:], generator=g)
        out.append(dataset.images[n].float() / 127.5 - 1 + t * eps)
    return torch.stack(out)
