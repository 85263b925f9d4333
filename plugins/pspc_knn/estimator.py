"""The kNN estimator's proposal, draws and weights, for one latent at a time (Niedoba et al., ICML 2024).

Target: the empirical posterior π_n ∝ exp(-‖z - x_n‖²/2t²) over the N training images. With the k nearest
images at distances d_1 ≤ … ≤ d_k (ties: the lower index first):

    p_i = exp(-(d_i - d_1)/2t²),  u = p_k,  Z = Σ_i p_i + (N - k) u,
    q_n = p_n / Z on the neighbours and u / Z elsewhere (the proposal).

Draws, in the authors' order: n uniform indices over all N images, n neighbour picks ∝ p_i - u (with
replacement), n uniforms U in [0, 1) (float32, as theirs); draw j keeps its uniform index if U_j < N u / Z, else
its neighbour: a mixture whose law is exactly q. The estimate is the self-normalised importance-sampling mean over
the distinct draws j (counts c_j):

    D(z, t) = Σ_j w_j x_j / Σ_j w_j,  w_j = c_j π_j / q_j ∝ c_j exp(-max(0, d_j - d_k) / 2t²),

since π_j / q_j is the same constant for every neighbour (their exponentials cancel) and exp(-(d_j - d_k)/2t²)
times it elsewhere. This closed form is exact; it avoids the authors' float32 round trip (they evaluate π_j and
q_j from two different float32 distances, whose difference is noise of ~1e-5/2t² in the logits).

The weighted mean is formed exactly: each draw's weight round(2^S exp(-(excess - min excess)/2t²)) is an integer
(a distinct image drawn c_j times is summed c_j times) and Σ w v (v: the uint8 pixels) is summed exactly (two
float64 products whose sums stay below 2^53, joined in int64), so the result does not depend on the order of the
additions. The rounding of the weights moves the output by at most
n·2^-S (S = 62 - 8 - ⌈log₂(n + 1)⌉: 1e-11 at n = 256).
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import torch

from .distances import UNIT


def latent_seed(seed: int, z: torch.Tensor, t: float) -> int:
    """The seed of one latent's draws: a hash of `seed`, t (float32) and the latent's float32 bytes."""
    h = hashlib.blake2b(digest_size=8)
    h.update(int(seed % 2**64).to_bytes(8, "little"))
    h.update(np.float32(t).tobytes())
    h.update(z.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return int.from_bytes(h.digest(), "little") >> 1  # 63 bits: what torch.Generator.manual_seed takes


def proposal_weights(r: torch.Tensor, c: torch.Tensor, N: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(p - u [B, k], P(uniform branch) = N u / Z [B]) from the neighbours' relative distances r [B, k] (ascending,
    in units of 1/127.5²; any per-latent offset) and c = 1 / (2t²·127.5²) [B, 1]."""
    p = torch.exp(-(r - r[:, :1]) * c)
    u = p[:, -1:]
    Z = p.sum(1, keepdim=True) + (N - r.shape[1]) * u
    return p - u, (N * u / Z).squeeze(1)


def draw(adjusted: torch.Tensor, uniform_prob: float, neighbours: torch.Tensor, N: int, n: int,
         generator: torch.Generator) -> torch.Tensor:
    """n image indices from the proposal, with the authors' three draws in their order (on the CPU).

    adjusted: p - u [k] float64 (CPU); neighbours [k] their image indices."""
    uniform = torch.randint(N, (n,), generator=generator)
    if bool(adjusted.sum() > 0):
        pick = torch.multinomial(adjusted, n, replacement=True, generator=generator)
    else:  # all neighbours equally likely (k = 1, or t so large that every p rounds to 1): the uniform branch is sure
        pick = torch.zeros(n, dtype=torch.int64)
    keep_uniform = torch.rand(n, generator=generator, dtype=torch.float32).double() < uniform_prob
    return torch.where(keep_uniform, uniform, neighbours.cpu()[pick])


def weighted_means(draws: torch.Tensor, r_k: torch.Tensor, c: torch.Tensor, hi, lo, e, P: int,
                   images: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Σ_j w_j x_j / Σ_j w_j [B, D] float64 for each latent's draws [B, n] (image indices, duplicates included: a
    draw drawn c_j times counts c_j times), with r_k [B] the k-th neighbour's relative distance,
    c = 1 / (2t²·127.5²) [B, 1], (hi, lo, e, P) the latents' fixed-point form and the images [N, D] uint8 (q:
    their `image_terms`)."""
    draws = draws.to(images.device)
    v = images[draws].to(torch.float64)  # [B, n, D] pixel values
    dot = v @ torch.stack([hi, lo], 2)  # [B, n, 2]: exact sums, as in `relative_distances`
    r = q[draws] - 2 * (torch.ldexp(dot[..., 0], -e) + torch.ldexp(dot[..., 1], -e - P))
    excess = (r - r_k[:, None]).clamp_min(0)
    bits = math.ceil(math.log2(draws.shape[1] + 1))
    scale, split = 62 - 8 - bits, 53 - 8 - bits  # Σ w v < 2^62 (int64); each piece's Σ below 2^53 (float64)
    w = torch.round(torch.ldexp(torch.exp(-(excess - excess.amin(1, keepdim=True)) * c), _f64(scale, v)))
    w_hi = torch.floor(torch.ldexp(w, _f64(-split, v)))  # w = 2^split w_hi + w_lo
    w_lo = w - torch.ldexp(w_hi, _f64(split, v))
    sums = (torch.stack([w_hi, w_lo], 1) @ v).to(torch.int64)  # [B, 2, D]: both exact
    total = sums[:, 0] * 2**split + sums[:, 1]
    return total.double() / (w.to(torch.int64).sum(1, keepdim=True).double() * UNIT) - 1


def _f64(value: float, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(float(value), dtype=torch.float64, device=like.device)
