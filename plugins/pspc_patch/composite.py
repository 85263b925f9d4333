"""The PSPC composite for one noise level, streamed over the training set.

For crops C (a family from `crops.py`), latents z_b and training images x_n:
    d_{bnC} = Σ_{p∈C} e_{bnp},  e_{bnp} = Σ_c (z_{bcp} - x_{ncp})²            (squared differences, no expansion)
    ℓ_{bnC} = -d_{bnC} / (2t²),   w_{bnC} = exp(ℓ_{bnC} - m_{bC}) / s_{bC}    (softmax over n, per crop)
    D(z, t)_{bcp} = (1 / |{C ∋ p}|) Σ_n x_{ncp} Σ_{C∋p} w_{bnC}

Pass 1 streams all latents against chunks of the dataset in float32, in uint8 units (z' = (z + 1)·127.5 against
the raw pixel values v, so x needs no conversion beyond uint8 -> float), with cancellation-free crop sums whose
relative error is bounded (`crops.depth`). It keeps each crop's running minimum distance (the maximum logit), and:

* sparse (small t): every entry within EXP_FLOOR of the running maximum (plus the float32 error bound) is kept
  while they fit a budget. The maximum only grows, so this holds every weight that can matter: a float64 weight
  below e^-87 relative to the largest is below 1e-37 of it. The kept entries are then recomputed exactly in
  float64 (differences of the float64 data values, as the float64 oracle does), and the softmax and the scatter
  of w · x_n run in float64: near-ties at t = 0.002 (logits ~1e5 · d) are resolved as exactly as the oracle does.
  At t = 0.002 on CIFAR ~0.05% of entries survive.
* dense (otherwise): once the budget is exceeded, pass 1 also accumulates each crop's normaliser s, and pass 2
  revisits the images that some latent needs, recomputes d the same way, and spreads exp(ℓ - m) / s back to pixels
  with the crops' transposed map. Here every weight that matters has |ℓ - m| < 87 and |ℓ| is moderate, so
  float32's relative error in d (a few 2⁻²⁴) is a weight error of a few 2⁻²⁴·|ℓ|.

Memory is bounded by the chunk size (and the entry budget), never by N; nothing of size [B, N, crops] exists.

On the CPU, every crop family at every t takes the compiled kernels of `composite_cpu.py` instead (distances in
float64, as exact as the sparse finish; 2-3x faster in the dense regime, about as fast as pass 1 alone at
t = 0.002). The torch passes here serve CUDA, and CPUs where numba cannot be imported.
"""

from __future__ import annotations

import numpy as np
import torch

from pspc_core.denoiser import Denoiser, split_by_t
from pspc_core.errors import ParameterError

from .chunking import DEFAULT_CHUNK


F64 = torch.float64
EXP_FLOOR = -87.0  # float32 exp(-87) ≈ 1.6e-38: weights below it are zero (and exp is slow far below it on CPU)
UNIT = 127.5  # data units per uint8 step
EPS32 = 2.0**-24
ENTRY_BUDGET = 64_000_000  # kept entries × crop size (~20 bytes per entry), beyond which the dense passes run

FINISH_BLOCK = 1_000_000  # entries × crop size recomputed at once in the exact finish


def patch_composite(z: torch.Tensor, t: float, pixels: torch.Tensor, images: torch.Tensor, crops,
                    chunk_size: int) -> torch.Tensor:
    """D(z, t) [B, C, R, R] float32 for latents z (one noise level t), summed in float64 over the crops' pixels.

    pixels: uint8 [C, R², N] (the streaming layout); images: the same uint8 data as [N, C·R²] (for gathers).
    Pixels that no crop holds come back as 0 (the caller fills them).
    """
    B, C, R, _ = z.shape
    c = 1.0 / (2.0 * float(t) ** 2 * UNIT**2)  # ℓ = -c · d (d in uint8 units²)

    if z.device.type == "cpu" and (kernel := _compiled_kernel(crops)) is not None:
        out = kernel(z, pixels, crops, c)  # every t: exact, and about as fast as the torch pass 1 alone
        cov = crops.coverage.cpu().numpy()
        out /= np.where(cov > 0, cov, 1.0)  # numpy: no multi-threaded torch step on a loaded machine
        return torch.from_numpy(out.reshape(B, C, R, R).astype(np.float32))
    if (entries := _near_entries(_uint8_units(z, torch.float32), pixels, crops, c, chunk_size,
                                 ENTRY_BUDGET // crops.max_size)) is not None:
        out = _exact_composite(z, t, images, crops, *entries)
    else:
        z64 = _uint8_units(z, F64)  # exact
        dmin, s, flagged = _dense_normalisers(z64, pixels, crops, c, chunk_size)
        out = _dense_composite(z64, dmin, s, flagged, pixels, crops, c, chunk_size)
    cov = crops.coverage
    out /= torch.where(cov > 0, cov, 1.0)
    return out.view(B, C, R, R).to(torch.float32)


def _uint8_units(z: torch.Tensor, dtype) -> torch.Tensor:
    """z' = (z + 1)·127.5 as [C, P, B, 1] in `dtype`: latents in the pixels' units and the streaming layout."""
    B, C = z.shape[:2]
    return z.reshape(B, C, -1).permute(1, 2, 0).to(dtype).add(1).mul_(UNIT).contiguous().unsqueeze(-1)


def _compiled_kernel(crops):
    """The compiled CPU kernel for these crops (`composite_cpu`, numba, imported on first use); None where numba
    cannot be imported."""
    try:
        from .composite_cpu import kernel_for
    except ImportError:
        return None
    return kernel_for(crops)


def _near_entries(zu, pixels, crops, c, chunk_size, budget):
    """Pass 1, sparse attempt (float32): the entries (crop, latent, image) whose weight can be above e^EXP_FLOOR.

    Returns (crop, latent, image) index tensors, or None as soon as they will not fit the budget (then the
    dense passes run instead: at such t nearly every weight matters).
    """
    C, B, N = zu.shape[0], zu.shape[2], pixels.shape[-1]
    K = crops.n_crops
    gamma = (crops.depth + 6) * EPS32 * 1.01  # relative error bound of d, e's rounding included
    shift_err = 4.0 * EPS32 * float(zu.abs().max() + 1)  # bound on the rounding of z', per value
    values = C * crops.sizes[:, None]
    n_per = max(1, chunk_size // B)
    dmin = torch.full((K, B), torch.inf, device=zu.device)
    entries, n_entries = [], 0
    for start in range(0, N, n_per):
        stop = min(N, start + n_per)
        d = _crop_distances(zu, pixels[:, :, start:stop], crops)  # [K, B, n]
        dmin = torch.minimum(dmin, d.amin(-1))
        near = d <= (dmin + _slack(dmin, c, gamma, shift_err, values)).unsqueeze(-1)
        k, b, j = near.nonzero(as_tuple=True)  # at most chunk × crops entries
        n_entries += len(k)
        if n_entries > budget or n_entries * N > 4 * budget * stop:  # over budget, or on course to be
            return None
        entries.append((k * B + b, j + start, d[k, b, j]))
    kb, n, dk = (torch.cat(parts) for parts in zip(*entries))
    keep = dk <= (dmin + _slack(dmin, c, gamma, shift_err, values)).flatten()[kb]  # against the final minimum
    kb, n = kb[keep], n[keep]
    return kb // B, kb % B, n


def _dense_normalisers(z64, pixels, crops, c, chunk_size):
    """Pass 1, dense (distances in float64): per (crop, latent) the minimum distance dmin, the normaliser
    s = Σ_n exp(c·(dmin - d_n)) (float64), and which images hold a weight above e^EXP_FLOOR for some crop."""
    B, N = z64.shape[2], pixels.shape[-1]
    K = crops.n_crops
    n_per = max(1, chunk_size // B)
    dmin = torch.full((K, B), torch.inf, dtype=F64, device=z64.device)
    s = torch.zeros(K, B, dtype=F64, device=z64.device)
    flagged = torch.zeros(B, N, dtype=torch.bool, device=z64.device)
    for start in range(0, N, n_per):
        stop = min(N, start + n_per)
        d = _crop_distances(z64, pixels[:, :, start:stop], crops)  # [K, B, n] float64
        dmin_new = torch.minimum(dmin, d.amin(-1))
        if start:
            s *= torch.exp((dmin_new - dmin) * c)
        arg = torch.add((dmin_new * c).unsqueeze(-1), d, alpha=-c).float()  # ℓ - m
        flagged[:, start:stop] = arg.amax(0) > EXP_FLOOR
        s += arg.clamp_(min=EXP_FLOOR).exp_().sum(-1, dtype=F64)
        dmin = dmin_new
    return dmin, s, flagged


def _crop_distances(zu: torch.Tensor, v: torch.Tensor, crops) -> torch.Tensor:
    """d [K, B, n] in zu's dtype: crop sums of e_p = Σ_c (z'_cp - v_cp)² for uint8 pixels v [C, P, n] (z' [C, P, B, 1])."""
    x = v.to(zu.dtype).unsqueeze(2)  # [C, P, 1, n]: integers, exact
    e = torch.sub(zu[0], x[0]).square_()
    for ch in range(1, zu.shape[0]):
        diff = torch.sub(zu[ch], x[ch])
        e.addcmul_(diff, diff)
    P, B, n = e.shape
    return crops.crop_sums(e.view(P, B * n)).view(-1, B, n)


def _slack(dmin: torch.Tensor, c: float, gamma: float, shift_err: float, values: torch.Tensor) -> torch.Tensor:
    """How far above the running minimum a float32 distance may lie and still hold a weight above e^EXP_FLOOR.

    -EXP_FLOOR / c in exact arithmetic, widened by the float32 error bound of both distances (relative gamma, plus
    the rounding of z' spread over `values` squared differences: ≤ 2·shift_err·sqrt(values·d) by Cauchy-Schwarz).
    """
    span = dmin + (-EXP_FLOOR / c)
    return (-EXP_FLOOR / c) + 2 * gamma * span + 4 * shift_err * torch.sqrt(values * span)


def _exact_composite(z, t, images, crops, k, b, n) -> torch.Tensor:
    """Float64 softmax per (crop, latent) over the kept entries, recomputing each distance from the data exactly
    (differences of float64 values, as the float64 oracle), and Σ w · x_n scattered onto the crop's pixels of
    latent b: [B, C, P] float64. Works in blocks of entries; each block's pixel values are gathered once."""
    B, C, R, _ = z.shape
    P = R * R
    K = crops.n_crops
    zflat = torch.cat([z.reshape(B, C, P).double(), z.new_zeros(B, C, 1, dtype=F64)], 2).view(-1)  # pixel P: 0
    channel = torch.arange(C, device=z.device)[:, None]
    logit = torch.empty(len(k), dtype=F64, device=z.device)
    step = max(1, FINISH_BLOCK // crops.max_size)
    blocks = []
    for start in range(0, len(k), step):
        sl = slice(start, start + step)
        pix = crops.pixel_index[k[sl]][:, None, :]  # [E, 1, S], padded with P
        x = _gather(images, n[sl], pix, C, P)  # [E, C, S] float64 data units (0 at padding)
        zc = zflat.take((b[sl, None, None] * C + channel) * (P + 1) + pix)  # [E, C, S] (0 at padding)
        logit[sl] = (zc - x).square_().sum((1, 2)).mul_(-0.5 / float(t) ** 2)
        blocks.append((sl, pix, x) if len(k) <= step else (sl, pix, None))
    kb = k * B + b
    m = torch.full((K * B,), -torch.inf, dtype=F64, device=z.device).scatter_reduce_(0, kb, logit, "amax")
    w = torch.exp(logit - m[kb])
    s = torch.zeros(K * B, dtype=F64, device=z.device).index_add_(0, kb, w)
    w *= crops.multiplicity[k] / s[kb]
    out = torch.zeros(B * C * (P + 1), dtype=F64, device=z.device)
    for sl, pix, x in blocks:
        if x is None:
            x = _gather(images, n[sl], pix, C, P)
        target = (b[sl, None, None] * C + channel) * (P + 1) + pix
        out.index_add_(0, target.flatten(), x.mul_(w[sl, None, None]).flatten())
    return out.view(B, C, P + 1)[:, :, :P]


def _gather(images, n, pix, C, P) -> torch.Tensor:
    """x [E, C, S] float64 = image n's channel values at pixels pix [E, 1, S] (0 where pix == P, the padding)."""
    CP = C * P
    idx = n[:, None, None] * CP + torch.arange(C, device=pix.device)[:, None] * P + pix.clamp(max=P - 1)
    x = images.view(-1).take(idx).to(F64).div_(UNIT).sub_(1)
    return x.masked_fill_(pix == P, 0.0)


def _dense_composite(z64, dmin, s, flagged, pixels, crops, c, chunk_size) -> torch.Tensor:
    """Pass 2 over the images some latent flagged: w = exp(ℓ - m) / s spread back to pixels, times x: [B, C, P].

    Distances in float64 as in pass 1 (so s and the weights agree); weights, their spread (short trees of
    non-negative terms) and the per-chunk sums over images in float32, accumulated across chunks in float64.
    """
    C, P, B, _ = z64.shape
    out = torch.zeros(C, P, B, dtype=F64, device=z64.device)
    used = flagged.any(0).nonzero().squeeze(1)
    everything = len(used) == pixels.shape[-1]
    n_per = max(1, chunk_size // B)
    base = (dmin * c - torch.log(s)).unsqueeze(-1)  # exp(c·(dmin - d) - log s) = exp(ℓ - m) / s
    for start in range(0, len(used), n_per):
        v = pixels[:, :, start : start + n_per] if everything else pixels.index_select(2, used[start : start + n_per])
        d = _crop_distances(z64, v, crops)  # [K, B, n] float64
        w = torch.add(base, d, alpha=-c).float().clamp_(min=EXP_FLOOR).exp_()
        wbar = crops.pixel_sums(w.view(crops.n_crops, -1)).view(P, B, -1)  # Σ_{C∋p} mult_C w_C
        x = v.float().div_(UNIT).sub_(1)  # [C, P, n] data units
        for ch in range(C):
            out[ch] += torch.linalg.vecdot(wbar, x[ch].unsqueeze(1))  # Σ_n wbar x: float32 per chunk
    return out.permute(2, 0, 1)


def pixels_first(images: torch.Tensor) -> torch.Tensor:
    """uint8 images [N, C, R, R] -> [C, R², N], the layout the engine streams (done once per device)."""
    N, C = images.shape[0], images.shape[1]
    return images.reshape(N, C, -1).permute(1, 2, 0).contiguous()


class PatchDenoiser(Denoiser):
    """Shared by PSPC-Square and PSPC-Flex: subclasses choose the crops for a noise level (`crops_for`).

    Latents are grouped by their own t (`split_by_t`): crops differ between noise levels. A family that is the
    single whole-image crop (k = R, λ = 1) is the empirical denoiser and takes its exact float64 matrix-product
    path (`pspc_empirical`); pixels no crop holds take that estimate too.
    """

    def __init__(self, dataset, chunk_size: int | None):
        from pspc_core.dataset import as_dataset

        if chunk_size is not None and int(chunk_size) < 1:
            raise ParameterError(f"chunk_size must be at least 1, got {chunk_size}")
        self.dataset = as_dataset(dataset)
        self.images = self.dataset.images  # uint8 [N, C, R, R], moved to the device once by .to()
        self.pixels = pixels_first(self.images)  # uint8 [C, R², N]
        self.resolution, self.channels = self.dataset.resolution, self.dataset.channels
        self.chunk_size = None if chunk_size is None else int(chunk_size)
        self._crops: dict = {}
        self._empirical = None

    def crops_for(self, t: float):
        raise NotImplementedError

    def _cached(self, key, build):
        if key not in self._crops:
            self._crops[key] = build()
        return self._crops[key]

    def to(self, device) -> "PatchDenoiser":
        super().to(device)
        self.images = self.images.to(self.device)
        self.pixels = self.pixels.to(self.device)
        self._crops.clear()
        self._empirical = None
        return self

    def empirical(self):
        """The empirical denoiser on the same (device-resident) images."""
        if self._empirical is None:
            from pspc_core import Dataset
            from pspc_empirical.denoiser import EmpiricalDenoiser

            self._empirical = EmpiricalDenoiser(Dataset(self.images)).to(self.device)
        return self._empirical

    def denoise(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return split_by_t(z, t, self._denoise_level)

    def _denoise_level(self, z: torch.Tensor, t: float) -> torch.Tensor:
        crops = self.crops_for(t)
        tt = torch.full((z.shape[0],), t, device=z.device)
        if crops.whole:
            return self.empirical().denoise(z, tt)
        chunk = self.chunk_size or DEFAULT_CHUNK.get(self.device.type, DEFAULT_CHUNK["cpu"])
        images = self.images.reshape(self.images.shape[0], -1)
        out = patch_composite(z, t, self.pixels, images, crops, chunk)
        uncovered = getattr(crops, "uncovered", None)
        if uncovered is not None and bool(uncovered.any()):
            fill = self.empirical().denoise(z, tt).flatten(2)
            out = out.flatten(2)
            out[:, :, uncovered] = fill[:, :, uncovered]
            out = out.view_as(z)
        return out
