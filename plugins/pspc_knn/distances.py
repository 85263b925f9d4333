"""Squared distances from latents to uint8 training images, exact and therefore independent of how they are summed.

With y = 127.5·z (exact in float64 for float32 z) and the pixel values v (x = v/127.5 - 1),

    127.5² ‖z - x_n‖² = ‖y + 127.5‖² + q_n - 2 y·v_n,    q_n = Σ v² - 255 Σ v   (an integer),

and the first term is the same for every image, so the ranking of images and every softmax over them need only
r_n = q_n - 2 y·v_n. The dot product is computed exactly: y = 2^-e (Y_hi + 2^-P Y_lo) + O(2^-2P) with integer
Y_hi, Y_lo (|Y| < 2^P, P = 53 - 8 - ⌈log₂ D⌉), so Y·v is a sum of integers below 2^53, which float64 adds
exactly in any order. The residual is below 2^-2P of max|y| (~1e-20), far below the rounding of the float64 r_n
itself (one rounding each for assembling the two parts and for q - 2·dot: ~1e-16 relative).

Why exact: the kNN estimator draws from a generator seeded by the latent's own bytes, so its output must be a
function of the latent alone, bit for bit. A float64 matrix product rounds differently with the batch size (BLAS
blocking, cuBLAS algorithm choice); exact integer sums cannot.
"""

from __future__ import annotations

import math

import torch

UNIT = 127.5


def fixed_point(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """(Y_hi, Y_lo, e, P) for latents z [B, D] (float32 values): 127.5·z = 2^-e (Y_hi + 2^-P Y_lo) + residual,
    Y_hi and Y_lo integer-valued float64 [B, D] with |Y| ≤ 2^P, e [B, 1] float64 (integer-valued)."""
    D = z.shape[1]
    P = 53 - 8 - math.ceil(math.log2(D)) - 1  # Σ_d |Y_d|·255 < 2^53 (the extra bit: rounding up to 2^P)
    y = z.double() * UNIT
    _, exponent = torch.frexp(y.abs().amax(1, keepdim=True))  # max|y| < 2^exponent (0 for an all-zero latent)
    e = (P - exponent).double()
    scaled = torch.ldexp(y, e)  # |scaled| < 2^P, exact (a power-of-two scaling)
    hi = torch.round(scaled)
    lo = torch.round(torch.ldexp(scaled - hi, torch.tensor(float(P), dtype=torch.float64, device=z.device)))
    return hi, lo, e, P


def relative_distances(hi: torch.Tensor, lo: torch.Tensor, e: torch.Tensor, P: int, v: torch.Tensor,
                       q: torch.Tensor) -> torch.Tensor:
    """r = q - 2 y·v [B, n] for images v [n, D] (integer-valued float64) with q [n] from `image_terms`.

    The same r, bit for bit, whatever the batch, the chunking of the images or the device."""
    dot_hi, dot_lo = (torch.cat([hi, lo]) @ v.T).chunk(2)  # one product; exact: integers below 2^53
    return q - 2 * (torch.ldexp(dot_hi, -e) + torch.ldexp(dot_lo, -e - P))


def image_terms(v: torch.Tensor) -> torch.Tensor:
    """q = Σ v² - 255 Σ v per image (exact integers) for integer-valued float64 images v [n, D]."""
    return (v * (v - 255)).sum(1)


def nearest(hi, lo, e, P, images: torch.Tensor, q: torch.Tensor, k: int, chunk: int):
    """The k smallest r per latent over all images [N, D] uint8 (streamed in chunks), ties broken by the lower
    index: (r [B, k] ascending, indices [B, k])."""
    best_r = best_i = None
    for start in range(0, images.shape[0], chunk):
        v = images[start : start + chunk].to(hi.device, torch.float64)
        r = relative_distances(hi, lo, e, P, v, q[start : start + chunk])
        idx = torch.arange(start, start + v.shape[0], device=hi.device).expand(r.shape[0], -1)
        if best_r is not None:  # the running best come first and hold lower indices: a stable sort keeps ties right
            r, idx = torch.cat([best_r, r], 1), torch.cat([best_i, idx], 1)
        order = torch.sort(r, dim=1, stable=True).indices[:, :k]
        best_r, best_i = r.gather(1, order), idx.gather(1, order)
    return best_r, best_i
