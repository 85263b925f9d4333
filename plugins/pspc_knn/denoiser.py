"""kNN estimator of the empirical denoiser (Niedoba et al., ICML 2024): D(z, t) = Σ_j w_j x_j / Σ_j w_j over n
draws from a proposal built on the k nearest training images (`estimator.py` has the formulas).

The k nearest neighbours are exact, from our own distances (`distances.py`; no approximate index). Each latent's
draws come from its own torch.Generator (on the CPU, whatever the device), seeded by a hash of (`seed`, t, the
latent's float32 bytes): a latent always gets the same draws, whatever batch it is in, whichever position, on
any device, and successive sampler steps get fresh draws because the latent has moved. Every sum that feeds
the output is exact (integer arithmetic in float64 or int64), so the output is a function of (z, t, seed) alone,
bit for bit; a batch split cannot change it.

Relation to the authors' draws: per latent, ours are theirs in kind and order (randint, multinomial in float64
with replacement, rand). They draw [B, n] blocks from the global RNG for the whole batch, so latent b's draws
depend on the batch and on b's position in it; ours do not. With their draws substituted for ours the two agree
to float32 rounding (their proposal probabilities are float32, ours float64, so a draw on a boundary can
differ).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pspc_core.dataset import Dataset
from pspc_core.denoiser import Denoiser
from pspc_core.errors import ParameterError
from pspc_core.params import MAX_SEED

from .distances import UNIT, fixed_point, image_terms, nearest
from .estimator import draw, latent_seed, proposal_weights, weighted_means

CHUNK = 4096  # training images per step of the neighbour search (bounds memory: B·(k + CHUNK) + CHUNK·D)
ESTIMATE_ENTRIES = 1 << 22  # draws × pixels weighed at once (~16 bytes each)
MAX_DRAWS = 2**31 - 1  # torch indexes the draws with int64; more than this could never fit in memory anyway


class KNNDenoiser(Denoiser):
    """kNN importance-sampling estimator.

    dataset : training set (N ≥ 2 images; x = v/127.5 - 1).
    k       : nearest neighbours in the proposal, 1 ≤ k < N (the other N - k share its uniform tail).
    n       : draws per latent and call, ≥ 1.
    seed    : with t and the latent's bytes, fixes the draws.
    """

    def __init__(self, dataset: Dataset, k: int = 2048, n: int = 256, seed: int = 0):
        N = len(dataset)
        if k < 1:
            raise ParameterError(f"k = {k} must be at least 1 (the nearest neighbours in the proposal); use k ≥ 1")
        if k >= N:
            flips = f", {N // 2} images and their x-flips" if dataset.xflip else ""
            raise ParameterError(f"k = {k} must be below the number of training images N = {N}{flips} (the "
                                 f"proposal's uniform tail needs at least one image); use k ≤ {N - 1}")
        if not 1 <= n <= MAX_DRAWS:
            raise ParameterError(f"n = {n} must be 1 to {MAX_DRAWS} (the draws per latent); use a value in that "
                                 "range (the preset's is 256)")
        if not 0 <= seed <= MAX_SEED:
            raise ParameterError(f"seed = {seed} is outside 0..{MAX_SEED}, the seeds pspc takes (as --seed); use one "
                                 "of them")
        self.dataset = dataset
        self.resolution, self.channels = dataset.resolution, dataset.channels
        self.k, self.n, self.seed = int(k), int(n), int(seed)
        self.images = dataset.images.reshape(N, -1)  # uint8 [N, D]
        self._q = None

    def to(self, device) -> "KNNDenoiser":
        super().to(device)
        self.images = self.dataset.images.reshape(len(self.dataset), -1).to(self.device)
        self._q = None
        return self

    @property
    def q(self) -> torch.Tensor:
        """Σ v² - 255 Σ v per training image (exact), computed once."""
        if self._q is None:
            self._q = torch.cat([image_terms(self.images[s : s + CHUNK].to(torch.float64))
                                 for s in range(0, self.images.shape[0], CHUNK)])
        return self._q

    def generators(self, z: torch.Tensor, t: torch.Tensor) -> list[torch.Generator]:
        """One CPU generator per latent, seeded from (seed, t, the latent's bytes)."""
        z_cpu, t_cpu = z.detach().cpu(), t.detach().cpu()
        return [torch.Generator().manual_seed(latent_seed(self.seed, z_cpu[b], float(t_cpu[b])))
                for b in range(z.shape[0])]

    def denoise(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        prop = self.proposal(z, t)
        return self.estimate(prop, self.draws(prop, self.generators(z, t))).view_as(z)

    def draws(self, prop: "Proposal", generators) -> torch.Tensor:
        """n image indices per latent [B, n] (CPU), each latent from its own generator."""
        return torch.stack([draw(prop.adjusted[b], float(prop.uniform_prob[b]), prop.neighbours[b], prop.n_images,
                                 self.n, g) for b, g in enumerate(generators)])

    def proposal(self, z: torch.Tensor, t: torch.Tensor) -> "Proposal":
        """The k nearest neighbours of each latent and the proposal built on them."""
        zf = z.reshape(z.shape[0], -1)
        hi, lo, e, P = fixed_point(zf)
        r, neighbours = nearest(hi, lo, e, P, self.images, self.q, self.k, CHUNK)
        c = 1.0 / (2.0 * t.double()[:, None] ** 2 * UNIT**2)
        # one latent at a time, so that no reduction's rounding depends on the batch
        parts = [proposal_weights(r[b : b + 1], c[b : b + 1], len(self.images)) for b in range(z.shape[0])]
        adjusted, uniform_prob = (torch.cat(a).cpu() for a in zip(*parts))
        return Proposal(hi, lo, e, P, r, neighbours, c, adjusted, uniform_prob, len(self.images))

    def estimate(self, prop: "Proposal", draws) -> torch.Tensor:
        """D [B, D] float32 from a proposal and each latent's draws ([B, n] image indices; ours, or e.g. the
        authors'), a few latents at a time (memory ~16·n·D bytes each)."""
        step = max(1, ESTIMATE_ENTRIES // (draws.shape[1] * prop.hi.shape[1]))
        out = [weighted_means(draws[s : s + step], prop.r[s : s + step, -1], prop.c[s : s + step],
                              prop.hi[s : s + step], prop.lo[s : s + step], prop.e[s : s + step], prop.P,
                              self.images, self.q) for s in range(0, draws.shape[0], step)]
        return torch.cat(out).to(torch.float32)


@dataclass
class Proposal:
    """Per latent: fixed-point form (hi, lo, e, P), the k nearest (relative distances r ascending, image indices),
    c = 1/(2t²·127.5²), the neighbour weights p - u and P(uniform branch) (both on the CPU), and N."""

    hi: torch.Tensor
    lo: torch.Tensor
    e: torch.Tensor
    P: int
    r: torch.Tensor
    neighbours: torch.Tensor
    c: torch.Tensor
    adjusted: torch.Tensor
    uniform_prob: torch.Tensor
    n_images: int
