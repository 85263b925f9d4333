"""The leaf layers of the EDM networks: Linear, Conv2d (with FIR resampling), GroupNorm, noise embeddings.

Names and parameter layout follow the official `training/networks.py` so that an official `state_dict` loads
with strict checking. Every layer casts its weights to the dtype of its input: a network
keeps float32 weights and runs in float16 only when the preconditioner feeds it float16 (EDM's `use_fp16`).
Weights are placeholders (a scaled normal draw) until a checkpoint is loaded; this module trains nothing.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def _placeholder(*shape: int, fan_in: int) -> nn.Parameter:
    return nn.Parameter(torch.randn(*shape) / math.sqrt(max(fan_in, 1)))


class Linear(nn.Module):
    """y = x Wᵀ + b, with W [out, in] and b [out] (if `bias`)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = _placeholder(out_features, in_features, fan_in=in_features)
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x @ self.weight.to(x.dtype).t()
        if self.bias is not None:
            x = x + self.bias.to(x.dtype)
        return x


def resample_filter_2d(taps) -> torch.Tensor:
    """The separable FIR filter outer(f, f) / sum(f)² as a [1, 1, K, K] kernel ([1,1]: box, [1,3,3,1]: bilinear)."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    return (torch.outer(f, f) / f.sum().square())[None, None]


class Conv2d(nn.Module):
    """A k×k convolution ("same" padding), optionally preceded by 2× FIR up- or downsampling.

    `kernel=0` leaves only the resampling (no weight, no bias): the aux paths and skip connections that merely
    change resolution. With `fused_resample` (only used downsampling, NCSN++'s residual encoder) the
    convolution runs first at full resolution and the filter then subsamples.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, bias: bool = True, up: bool = False,
                 down: bool = False, resample_filter=(1, 1), fused_resample: bool = False):
        assert not (up and down), "a convolution resamples up or down, not both"
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.up = up
        self.down = down
        self.fused_resample = fused_resample
        fan_in = in_channels * kernel * kernel
        self.weight = _placeholder(out_channels, in_channels, kernel, kernel, fan_in=fan_in) if kernel else None
        self.bias = nn.Parameter(torch.zeros(out_channels)) if kernel and bias else None
        self.register_buffer("resample_filter", resample_filter_2d(resample_filter) if up or down else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) if self.weight is not None else None
        b = self.bias.to(x.dtype) if self.bias is not None else None
        f = self.resample_filter.to(x.dtype) if self.resample_filter is not None else None
        w_pad = w.shape[-1] // 2 if w is not None else 0
        f_pad = (f.shape[-1] - 1) // 2 if f is not None else 0

        if self.fused_resample and self.up and w is not None:
            x = F.conv_transpose2d(x, f.mul(4).tile([self.in_channels, 1, 1, 1]), groups=self.in_channels,
                                   stride=2, padding=max(f_pad - w_pad, 0))
            x = F.conv2d(x, w, padding=max(w_pad - f_pad, 0))
        elif self.fused_resample and self.down and w is not None:
            x = F.conv2d(x, w, padding=w_pad + f_pad)
            x = F.conv2d(x, f.tile([self.out_channels, 1, 1, 1]), groups=self.out_channels, stride=2)
        else:
            if self.up:  # zero-insertion upsampling with the filter scaled by 4 to keep the mean
                x = F.conv_transpose2d(x, f.mul(4).tile([self.in_channels, 1, 1, 1]), groups=self.in_channels,
                                       stride=2, padding=f_pad)
            if self.down:
                x = F.conv2d(x, f.tile([self.in_channels, 1, 1, 1]), groups=self.in_channels, stride=2,
                             padding=f_pad)
            if w is not None:
                x = F.conv2d(x, w, padding=w_pad)
        if b is not None:
            x = x + b.reshape(1, -1, 1, 1)
        return x


class GroupNorm(nn.Module):
    """Group normalisation with min(num_groups, C // min_channels_per_group) groups."""

    def __init__(self, num_channels: int, num_groups: int = 32, min_channels_per_group: int = 4,
                 eps: float = 1e-5):
        super().__init__()
        self.num_groups = min(num_groups, num_channels // min_channels_per_group)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(x, num_groups=self.num_groups, weight=self.weight.to(x.dtype),
                            bias=self.bias.to(x.dtype), eps=self.eps)


class PositionalEmbedding(nn.Module):
    """Transformer-style sinusoids of the noise label: [cos(c f_k), sin(c f_k)], f_k = (1/P)^(k / (n/2 - e)).

    `endpoint=True` (e = 1, SongUNet) makes the last frequency exactly 1/P; ADM uses e = 0.
    """

    def __init__(self, num_channels: int, max_positions: int = 10000, endpoint: bool = False):
        super().__init__()
        self.num_channels = num_channels
        self.max_positions = max_positions
        self.endpoint = endpoint

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        half = self.num_channels // 2
        k = torch.arange(start=0, end=half, dtype=torch.float32, device=c.device)
        freqs = (1 / self.max_positions) ** (k / (half - (1 if self.endpoint else 0)))
        angle = torch.outer(c, freqs.to(c.dtype))
        return torch.cat([angle.cos(), angle.sin()], dim=1)


class FourierEmbedding(nn.Module):
    """Random Fourier features of the noise label (NCSN++): [cos(2π c f), sin(2π c f)], f a stored buffer."""

    def __init__(self, num_channels: int, scale: float = 16):
        super().__init__()
        self.register_buffer("freqs", torch.randn(num_channels // 2) * scale)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        angle = torch.outer(c, (2 * math.pi * self.freqs).to(c.dtype))
        return torch.cat([angle.cos(), angle.sin()], dim=1)
