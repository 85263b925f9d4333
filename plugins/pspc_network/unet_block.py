"""The residual U-Net block shared by SongUNet and DhariwalUNet, with optional self-attention.

h = conv0(silu(norm0(x))); the embedding enters through `affine`, either as a bias (h = silu(norm1(h + p))) or,
with `adaptive_scale` (ADM), as scale and shift (h = silu(shift + norm1(h)·(1 + scale))); then
h = conv1(dropout(h)) and x ← (h + skip(x)) · skip_scale. Attention, when the block has heads, adds
proj(attention(norm2(x))) and rescales by skip_scale again (as EDM's `UNetBlock`).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .layers import Conv2d, GroupNorm, Linear


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Softmax attention over positions, [B, c, L] each: a = v · softmax(qᵀk / √c)ᵀ, the weights in float32."""
    k = k / math.sqrt(k.shape[1])
    w = torch.einsum("ncq,nck->nqk", q.to(torch.float32), k.to(torch.float32)).softmax(dim=2).to(q.dtype)
    return torch.einsum("nqk,nck->ncq", w, v)


class UNetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, emb_channels: int,
                 up: bool = False, down: bool = False,     # resample by 2 before the first convolution
                 attention: bool = False,                  # add self-attention after the residual part
                 num_heads: int | None = None,             # heads; None: out_channels // channels_per_head
                 channels_per_head: int = 64,
                 dropout: float = 0.0,                     # before conv1 (inactive in eval mode)
                 skip_scale: float = 1.0,                  # residual sums are multiplied by this
                 eps: float = 1e-5,                        # GroupNorm epsilon
                 resample_filter=(1, 1),                   # FIR taps of the resampling
                 resample_proj: bool = False,              # 1×1 projection on a resampling skip
                 adaptive_scale: bool = True):             # embedding as scale and shift (ADM) or as bias
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.num_heads = 0 if not attention else num_heads if num_heads is not None else out_channels // channels_per_head
        self.dropout = dropout
        self.skip_scale = skip_scale
        self.adaptive_scale = adaptive_scale

        self.norm0 = GroupNorm(in_channels, eps=eps)
        self.conv0 = Conv2d(in_channels, out_channels, kernel=3, up=up, down=down, resample_filter=resample_filter)
        self.affine = Linear(emb_channels, out_channels * (2 if adaptive_scale else 1))
        self.norm1 = GroupNorm(out_channels, eps=eps)
        self.conv1 = Conv2d(out_channels, out_channels, kernel=3)
        self.skip = None
        if out_channels != in_channels or up or down:
            kernel = 1 if resample_proj or out_channels != in_channels else 0
            self.skip = Conv2d(in_channels, out_channels, kernel=kernel, up=up, down=down,
                               resample_filter=resample_filter)
        if self.num_heads:
            self.norm2 = GroupNorm(out_channels, eps=eps)
            self.qkv = Conv2d(out_channels, out_channels * 3, kernel=1)
            self.proj = Conv2d(out_channels, out_channels, kernel=1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        orig = x
        h = self.conv0(F.silu(self.norm0(x)))
        p = self.affine(emb).unsqueeze(2).unsqueeze(3).to(h.dtype)
        if self.adaptive_scale:
            scale, shift = p.chunk(chunks=2, dim=1)
            h = F.silu(torch.addcmul(shift, self.norm1(h), scale + 1))
        else:
            h = F.silu(self.norm1(h + p))
        h = self.conv1(F.dropout(h, p=self.dropout, training=self.training))
        x = (h + (self.skip(orig) if self.skip is not None else orig)) * self.skip_scale

        if self.num_heads:
            # qkv channels are interleaved per head and channel: index = head·3c + 3i + {0: q, 1: k, 2: v}
            n, c = x.shape[0], x.shape[1]
            q, k, v = self.qkv(self.norm2(x)).reshape(n * self.num_heads, c // self.num_heads, 3, -1).unbind(2)
            a = attention(q, k, v).reshape(*x.shape)
            x = (self.proj(a) + x) * self.skip_scale
        return x
