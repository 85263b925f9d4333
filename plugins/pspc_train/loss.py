"""EDM's training loss (Karras et al. 2022, eq. 8 and Table 1): σ ~ LogNormal(P_mean, P_std),
λ(σ) = (σ² + σ_d²) / (σ·σ_d)², loss = λ(σ) ‖D(x + σε; σ) - x‖²."""

from __future__ import annotations

import torch


def sample_sigma(n: int, generator: torch.Generator, p_mean: float = -1.2, p_std: float = 1.2) -> torch.Tensor:
    """ln σ ~ N(P_mean, P_std²), shape [n, 1, 1, 1] (CPU)."""
    return (torch.randn([n, 1, 1, 1], generator=generator) * p_std + p_mean).exp()


def edm_loss(net, x: torch.Tensor, generator: torch.Generator, p_mean: float = -1.2, p_std: float = 1.2,
             sigma_data: float = 0.5) -> torch.Tensor:
    """Per-element weighted squared error λ(σ)·(D(x + n; σ) - x)², n = σε, shape like x."""
    sigma = sample_sigma(x.shape[0], generator, p_mean, p_std).to(x.device)
    weight = (sigma ** 2 + sigma_data ** 2) / (sigma * sigma_data) ** 2
    n = torch.randn(x.shape, generator=generator).to(x.device) * sigma
    denoised = net(x + n, sigma.flatten())
    return weight * (denoised - x) ** 2
