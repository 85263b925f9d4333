"""The masked softmax of PCA-locality as whole-tensor torch operations (CUDA, and CPUs without numba).

For output pixel-channel m: ℓ_km = -Σ_n M[n, m] (z_n - x_kn)² / (2t²T), D_m = Σ_k softmax_k(ℓ_km) x_km.
The squared differences are taken directly (no expansion) and summed through the mask by one float64 matrix
product per chunk of training images, [B·chunk, D] x [D, D]; the softmax streams over the chunks with a running
maximum, so memory is bounded by the chunk whatever N is. Exact to float64 rounding (~1e-13 in the logits).
"""

from __future__ import annotations

import torch


def masked_softmax_dense(z: torch.Tensor, images: torch.Tensor, mask: torch.Tensor, c: float,
                         chunk: int) -> torch.Tensor:
    """Σ_k softmax_k(-c · Σ_n mask[n, m] (z_n - x_kn)²) x_km [B, D] float64.

    z [B, D] float64, images [N, D] uint8 (x = v/127.5 - 1), mask [D, D] bool [n, m], c = 1/(2t²T), chunk: images
    per step.
    """
    B, D = z.shape
    weights = mask.to(z.device, torch.float64)
    m = torch.full((B, D), -torch.inf, dtype=torch.float64, device=z.device)  # running max of the logits
    s = torch.zeros_like(m)  # running normaliser, relative to m
    acc = torch.zeros_like(m)  # running Σ_k exp(ℓ - m) x_k
    for start in range(0, images.shape[0], chunk):
        x = images[start : start + chunk].to(z.device, torch.float64) / 127.5 - 1  # [n, D]
        delta = (z[:, None, :] - x[None]).square_()  # [B, n, D]
        logits = (delta.view(-1, D) @ weights).view(B, -1, D).mul_(-c)
        m_new = torch.maximum(m, logits.amax(1))
        scale = torch.exp(m - m_new)
        w = torch.exp(logits - m_new[:, None])
        s = s * scale + w.sum(1)
        acc = acc * scale + (w * x[None]).sum(1)
        m = m_new
    return acc / s
