"""EDM's weight initialisation for networks built with placeholder weights (the `network` plugin only loads).

Following the scheme of EDM's networks.py (described, not copied): SongUNet layers are Xavier-uniform with zero
biases; the layers that close a residual branch (each block's `conv1`, attention `proj`) and the output
convolutions start at 1e-5 of that scale, so a fresh network is close to D(x; σ) = c_skip·x; attention `qkv`
is scaled by √0.2. DhariwalUNet uses Kaiming-uniform scaled by √(1/3) (weights and biases) and exact zeros for
those closing layers.
"""

from __future__ import annotations

import math

import torch
from torch import nn

ZERO_INIT = ("conv1", "proj", "aux_conv", "out_conv")


def _fans(w: torch.Tensor) -> tuple[int, int]:
    receptive = w[0, 0].numel() if w.ndim > 2 else 1
    return w.shape[1] * receptive, w.shape[0] * receptive


@torch.no_grad()
def init_edm_weights(net: nn.Module, seed: int = 0) -> nn.Module:
    """Re-initialise every Linear/Conv2d weight and bias of `net` in place (deterministic from `seed`)."""
    g = torch.Generator().manual_seed(seed)
    adm = type(getattr(net, "model", net)).__name__ == "DhariwalUNet"
    for name, module in net.named_modules():
        w = getattr(module, "weight", None)
        if w is None or w.ndim < 2:
            continue  # GroupNorm (1-D weight) keeps ones/zeros; kernel-0 resampling convs have no weight
        fan_in, fan_out = _fans(w)
        leaf = name.rsplit(".", 1)[-1]
        if adm:
            bound = math.sqrt(1 / 3) * math.sqrt(3 / fan_in)
            scale = 0.0 if leaf in ZERO_INIT else 1.0
            w.copy_((torch.rand(w.shape, generator=g) * 2 - 1) * bound * scale)
            if getattr(module, "bias", None) is not None:
                module.bias.copy_((torch.rand(module.bias.shape, generator=g) * 2 - 1) * bound * scale)
            continue
        bound = math.sqrt(6 / (fan_in + fan_out))
        scale = 1e-5 if leaf in ZERO_INIT else math.sqrt(0.2) if leaf == "qkv" else 1.0
        w.copy_((torch.rand(w.shape, generator=g) * 2 - 1) * bound * scale)
        if getattr(module, "bias", None) is not None:
            module.bias.zero_()
    return net
