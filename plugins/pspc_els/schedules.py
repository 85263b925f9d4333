"""Kamb & Ganguli's CIFAR-10 patch-size schedules and the noise levels they belong to, in our convention.

Their sampler runs 20 steps of a VP process x_τ = sqrt(1-β)·x + sqrt(β)·ε with β = 1 - cos²(τπ/2.016), and at
τ = i/20 uses patch size scales[i] (scales[0] is never used: their last step is i = 1). The same latent in our
convention is z = x_τ / sqrt(1-β), so scales[i] belongs to t_i = sqrt(β/(1-β)) = tan(iπ/40.32): these are the
schedules' own grids (`t_grid`), and the nearest grid point to a sampler's t picks the size.
"""

from __future__ import annotations

import math

STEPS = 20
T_GRID = tuple(math.tan(i / STEPS * math.pi / 2.016) for i in range(STEPS))

# Their files scales_CIFAR10_{ResNet_circular,ResNet_zeros,UNet_zeros}_conditional.pt, as written there.
RESNET_CIRCULAR = (3, 3, 3, 3, 5, 5, 5, 5, 7, 7, 7, 9, 9, 11, 11, 13, 13, 15, 15, 15)
RESNET_ZEROS = (3, 3, 3, 3, 5, 5, 5, 7, 7, 7, 7, 9, 9, 11, 11, 13, 15, 17, 17, 17)
UNET_ZEROS = (3, 3, 3, 3, 5, 5, 5, 5, 7, 7, 7, 7, 9, 9, 11, 13, 13, 15, 17, 25)


def scaled(sizes, resolution: int) -> list[int]:
    """A 32×32 schedule for R×R images: each size k·R/32 rounded to the nearest odd number, kept in 1..R."""
    largest = resolution if resolution % 2 else resolution - 1
    return [min(largest, 2 * math.floor(k * resolution / 64) + 1) for k in sizes]
