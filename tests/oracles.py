"""Slow, obviously-right implementations kept as test oracles (and benchmark baselines).

They follow the paper's formulation literally: squared differences computed directly (no expansion), a
streaming softmax over chunks of 100 training images, and for PSPC one posterior per crop.
"""

from __future__ import annotations

import torch


def empirical_direct(images_u8: torch.Tensor, z: torch.Tensor, t: torch.Tensor, chunk: int = 100) -> torch.Tensor:
    """D(z, t) = Σ w_n x_n, w = softmax(-‖z - x_n‖² / 2t²), streamed over chunks with a running max (float32)."""
    zf = z.flatten(1)
    scale = 1.0 / (2 * t.float() ** 2)
    m = torch.full((zf.shape[0], 1), -torch.inf)
    s = torch.zeros(zf.shape[0], 1)
    acc = torch.zeros_like(zf)
    for start in range(0, images_u8.shape[0], chunk):
        x = images_u8[start : start + chunk].flatten(1).float() / 127.5 - 1
        logits = -((zf[:, None, :] - x[None]) ** 2).sum(-1) * scale[:, None]
        m_new = torch.maximum(m, logits.max(1, keepdim=True).values)
        w = torch.exp(logits - m_new)
        r = torch.exp(m - m_new)
        s = s * r + w.sum(1, keepdim=True)
        acc = acc * r + w @ x
        m = m_new
    return (acc / s).view_as(z)
