"""Exponential moving average of the weights with EDM's half-life ramp-up (training_loop.py's schedule):
half-life = min(halflife_kimg·1000, ramp·images_seen) images, β = 0.5^(batch / half-life)."""

from __future__ import annotations

import torch


def ema_beta(batch: int, images_seen: int, halflife_kimg: float = 500.0, rampup_ratio: float | None = 0.05) -> float:
    halflife = halflife_kimg * 1000
    if rampup_ratio is not None:
        halflife = min(halflife, images_seen * rampup_ratio)
    return 0.5 ** (batch / max(halflife, 1e-8))


@torch.no_grad()
def update_ema(ema: torch.nn.Module, net: torch.nn.Module, beta: float) -> None:
    """ema ← β·ema + (1 - β)·net for parameters; buffers are copied."""
    for p_ema, p_net in zip(ema.parameters(), net.parameters()):
        p_ema.copy_(p_net.detach().lerp(p_ema, beta))
    for b_ema, b_net in zip(ema.buffers(), net.buffers()):
        b_ema.copy_(b_net)
