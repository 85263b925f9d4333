"""The PSPC composite for one noise level, streamed over the training set.

For crops C (a family from `crops.py`), latents z_b and training images x_n:
    d_{bnC} = Σ_{p∈C} e_{bnp},  e_{bnp} = Σ_c (z_{bcp} - x_{ncp})²            (squared differences, no expansion)
    ℓ_{bnC} = -d_{bnC} / (2t²),   w_{bnC} = exp(ℓ_{bnC} - m_{bC}) / s_{bC}    (softmax over n, per crop)
    D(z, t)_{bcp} = (1 / |{C ∋ p}|) Σ_n x_{ncp} Σ_{C∋p} w_{bnC}
Pass 1 streams all latents against chunks of the dataset and accumulates each crop's running maximum m and
normaliser s (log-sum-exp). The weights need the final m and s, so the composite comes after it:

* sparse (small t): a weight whose exponent ℓ - m is below EXP_FLOOR is exactly zero in float32. The running
  maximum only grows, so every weight that is non-zero at the end was above the floor when pass 1 saw it. Pass 1
  keeps those entries (crop, latent, image, ℓ) while they stay under a budget, and the composite is a scatter
  of w · x_n over each kept crop: no second pass over the data. At t = 0.002 on CIFAR ~0.06% survive.
* dense (otherwise): pass 2 revisits, per latent, only the images with some non-zero weight, recomputes ℓ the
  same way, and spreads exp(ℓ - m) / s back to pixels with the crops' transposed map.

Memory is bounded by the chunk size (and the entry budget), never by N; nothing of size [B, N, crops] exists.
"""

from __future__ import annotations

import torch

from pspc_core.denoiser import Denoiser, split_by_t
from pspc_core.errors import ParameterError

F64 = torch.float64
EXP_FLOOR = -87.0  # float32 exp(-87) ≈ 1.6e-38: treated as zero (and exp is slow far below it on CPU)
TINY = 1.7e-38
DEFAULT_CHUNK = {"cpu": 2048, "cuda": 32768}  # latent×image pairs per step: cache-sized on CPU, large on GPU
ENTRY_BUDGET = 4_000_000  # kept non-zero weights × crop size, beyond which the dense pass 2 is used


def patch_composite(z: torch.Tensor, t: float, pixels: torch.Tensor, crops, chunk_size: int) -> torch.Tensor:
    """D(z, t) for latents z [B, C, R, R] (one noise level t) over uint8 training pixels [C, R², N] (pixels first).

    `chunk_size` bounds the latent×image pairs handled at once (memory ~ chunk_size × R² × 60 bytes).
    """
    B, C, R, _ = z.shape
    P, N = R * R, pixels.shape[-1]
    zt = z.reshape(B, C, P).permute(1, 2, 0).float().contiguous()  # [C, P, B]
    scale = -1.0 / (2.0 * float(t) ** 2)
    per_chunk = max(1, chunk_size // B)
    budget = ENTRY_BUDGET // crops.max_size

    # Pass 1: running maximum m and normaliser s (relative to m) per (crop, latent); non-zero weights kept.
    m = torch.full((crops.n_crops, B), -torch.inf, dtype=F64, device=z.device)
    s = torch.zeros(crops.n_crops, B, dtype=F64, device=z.device)
    flagged = torch.zeros(B, N, dtype=torch.bool, device=z.device)
    entries, n_entries = [], 0
    for start in range(0, N, per_chunk):
        x = _to_data_units(pixels[:, :, start : start + per_chunk])  # [C, P, n]
        logits = _logits(zt.unsqueeze(-1), x.unsqueeze(2), crops, scale)  # [K, B, n]
        m_new = torch.maximum(m, logits.amax(-1))
        w = _exp_shifted(logits, m_new.unsqueeze(-1))
        s = s * torch.exp(m - m_new) + w.sum(-1, dtype=F64)
        m = m_new
        flagged[:, start : start + per_chunk] = w.amax(0) > 0
        if n_entries <= budget:
            k, b, j = w.nonzero().unbind(1)
            entries.append((k, b, j + start, logits[k, b, j]))
            n_entries += len(k)

    if n_entries <= budget:
        k, b, n, logit = (torch.cat(parts) for parts in zip(*entries))
        w = _exp_shifted(logit, m[k, b]).double() / s[k, b]
        if crops.multiplicity is not None:
            w *= crops.multiplicity[k]
        out = _scatter_composite(w, k, b, n, pixels, crops, B)
    else:
        out = _dense_composite(zt, m, s, flagged, pixels, crops, scale, chunk_size)
    out /= crops.coverage.to(F64)
    return out.view(B, C, R, R).to(torch.float32)


def _scatter_composite(w, k, b, n, pixels, crops, B) -> torch.Tensor:
    """Σ over kept entries of w · x_n on the pixels of crop k, into latent b's image: [B, C, P] float64."""
    C, P = pixels.shape[0], pixels.shape[1]
    out = torch.zeros(C, B * (P + 1), dtype=F64, device=w.device)  # one spare pixel per latent for padding
    step = max(1, ENTRY_BUDGET // crops.max_size)
    for start in range(0, len(w), step):
        sl = slice(start, start + step)
        pix = crops.pixel_index[k[sl]]  # [E, S], padded with P
        vals = pixels[:, pix.clamp(max=P - 1), n[sl, None]].to(F64) / 127.5 - 1  # [C, E, S]
        target = (b[sl, None] * (P + 1) + pix).flatten()
        out.index_add_(1, target, (vals * w[sl, None]).flatten(1))
    return out.view(C, B, P + 1)[:, :, :P].permute(1, 0, 2)


def _dense_composite(zt, m, s, flagged, pixels, crops, scale, chunk_size) -> torch.Tensor:
    """Pass 2 over the images some latent flagged: exp(ℓ - m) / s spread back to pixels, times x: [B, C, P]."""
    C, P, B = zt.shape
    out = torch.zeros(C, P, B, dtype=F64, device=zt.device)
    used = flagged.any(0).nonzero().squeeze(1)
    everything = len(used) == pixels.shape[-1]
    per_chunk = max(1, chunk_size // B)
    inv_s = (1.0 / s).unsqueeze(-1)
    for start in range(0, len(used), per_chunk):
        v = pixels[:, :, start : start + per_chunk] if everything else pixels.index_select(2, used[start : start + per_chunk])
        x = _to_data_units(v)  # [C, P, n]
        logits = _logits(zt.unsqueeze(-1), x.unsqueeze(2), crops, scale)  # [K, B, n]
        w = _exp_shifted(logits, m.unsqueeze(-1)).double().mul_(inv_s)  # exp(ℓ - m) / s
        wbar = crops.pixel_sums(w.view(crops.n_crops, -1)).view(P, B, -1).float()  # Σ_{C∋p} w_C
        for c in range(C):
            out[c] += torch.linalg.vecdot(wbar, x[c].unsqueeze(1))  # Σ_n wbar x, float32 per chunk
    return out.permute(2, 0, 1)


def pixels_first(images: torch.Tensor) -> torch.Tensor:
    """uint8 images [N, C, R, R] -> [C, R², N], the layout the engine streams (done once per device)."""
    N, C = images.shape[0], images.shape[1]
    return images.reshape(N, C, -1).permute(1, 2, 0).contiguous()


def _to_data_units(v: torch.Tensor) -> torch.Tensor:
    """uint8 v -> x = v/127.5 - 1 (float32, as the paper's preprocessing), contiguous."""
    return v.float().div_(127.5).sub_(1)


def _logits(zt: torch.Tensor, xt: torch.Tensor, crops, scale: float) -> torch.Tensor:
    """ℓ = -d / 2t² (float64) with d the crop sums of e_p = Σ_c (z_cp - x_cp)² (channel-first, broadcast).

    Squared differences (no expansion): each e_p is exact to float32 rounding, and the crop sums add them in
    float64 directly, so d keeps e's relative precision whatever the crop size (float32 accumulation would lose
    ~k·ε; cumulative sums would cancel catastrophically at small t).
    """
    e = torch.sub(zt[0], xt[0]).square_()
    for c in range(1, zt.shape[0]):
        diff = torch.sub(zt[c], xt[c])
        e.addcmul_(diff, diff)
    shape = e.shape[1:]
    return crops.crop_sums(e.reshape(e.shape[0], -1), scale).view(-1, *shape)


def _exp_shifted(logits: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """exp(ℓ - m) in float32 (ℓ - m formed in float64), exponents below EXP_FLOOR giving exactly 0."""
    arg = torch.sub(logits, m).float().clamp_(min=EXP_FLOOR).exp_()
    return torch.threshold_(arg, TINY, 0.0)


class PatchDenoiser(Denoiser):
    """Shared by PSPC-Square and PSPC-Flex: subclasses choose the crops for a noise level (`crops_for`).

    Latents are grouped by their own t (`split_by_t`): crops differ between noise levels.
    """

    def __init__(self, dataset, chunk_size: int | None):
        from pspc_core.dataset import as_dataset

        if chunk_size is not None and int(chunk_size) < 1:
            raise ParameterError(f"chunk_size must be at least 1, got {chunk_size}")
        self.dataset = as_dataset(dataset)
        self.pixels = pixels_first(self.dataset.images)  # uint8 [C, R², N], moved to the device once by .to()
        self.resolution, self.channels = self.dataset.resolution, self.dataset.channels
        self.chunk_size = None if chunk_size is None else int(chunk_size)
        self._crops: dict = {}

    def crops_for(self, t: float):
        raise NotImplementedError

    def _cached(self, key, build):
        if key not in self._crops:
            self._crops[key] = build()
        return self._crops[key]

    def to(self, device) -> "PatchDenoiser":
        super().to(device)
        self.pixels = self.pixels.to(self.device)
        self._crops.clear()
        return self

    def denoise(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if not bool(torch.isfinite(t).all()) or bool((t <= 0).any()):
            raise ParameterError(f"noise levels must be positive and finite, got min t = {float(t.min())}; "
                                 "PSPC is undefined at t = 0 (samplers never call it there)")
        return split_by_t(z, t, self._denoise_level)

    def _denoise_level(self, z: torch.Tensor, t: float) -> torch.Tensor:
        chunk = self.chunk_size or DEFAULT_CHUNK.get(self.device.type, DEFAULT_CHUNK["cpu"])
        return patch_composite(z, t, self.pixels, self.crops_for(t), chunk)
