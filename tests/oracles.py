"""Slow, obviously-right implementations kept as correctness oracles (run them in float64).

They follow the paper's formulation literally: squared differences computed directly (no expansion), a
streaming softmax over chunks of 100 training images, and for PSPC one posterior per crop. They are not a speed
yardstick: speed is measured against the authors' own code (benchmarks/bench_speed.py).
"""

from __future__ import annotations

import torch


def empirical_direct(images_u8: torch.Tensor, z: torch.Tensor, t: torch.Tensor, chunk: int = 100) -> torch.Tensor:
    """D(z, t) = Σ w_n x_n, w = softmax(-‖z - x_n‖² / 2t²), streamed over chunks with a running max (in z's dtype)."""
    zf = z.flatten(1)
    scale = 1.0 / (2 * t.to(z.dtype) ** 2)
    m = torch.full((zf.shape[0], 1), -torch.inf, dtype=z.dtype, device=z.device)
    s = torch.zeros(zf.shape[0], 1, dtype=z.dtype, device=z.device)
    acc = torch.zeros_like(zf)
    for start in range(0, images_u8.shape[0], chunk):
        x = images_u8[start : start + chunk].flatten(1).to(z.dtype) / 127.5 - 1
        logits = -((zf[:, None, :] - x[None]) ** 2).sum(-1) * scale[:, None]
        m_new = torch.maximum(m, logits.max(1, keepdim=True).values)
        w = torch.exp(logits - m_new)
        r = torch.exp(m - m_new)
        s = s * r + w.sum(1, keepdim=True)
        acc = acc * r + w @ x
        m = m_new
    return (acc / s).view_as(z)


# ---------------------------------------------------------------------------------------------------------------
# PSPC oracles: one empirical posterior per crop, exactly as the paper's code loops (slow on purpose).


def square_crop_masks(resolution: int, patch_size: int) -> torch.Tensor:
    """All k×k windows that fit inside an R×R image (stride 1, no padding) as bool masks [(R-k+1)², R, R]."""
    masks = []
    for x in range(resolution - patch_size + 1):
        for y in range(resolution - patch_size + 1):
            m = torch.zeros(resolution, resolution, dtype=torch.bool)
            m[y : y + patch_size, x : x + patch_size] = True
            masks.append(m)
    return torch.stack(masks)


def flex_mask_direct(heatmap: torch.Tensor, threshold: float) -> torch.Tensor:
    """Keep the most sensitive pixels until their mass reaches λ: sort ascending, cumsum, keep cumsum ≥ 1 - λ."""
    h = heatmap.float().flatten()
    h = h / h.sum()
    order = torch.sort(h, stable=True).indices
    cumulative = torch.cumsum(h[order], 0)
    keep_sorted = cumulative >= 1 - torch.tensor(threshold, dtype=torch.float32)
    mask = torch.zeros_like(keep_sorted)
    mask[order] = keep_sorted
    return mask.view_as(heatmap)


def flex_crop_masks_direct(heatmaps_t: torch.Tensor, threshold: float) -> torch.Tensor:
    """One crop per output pixel (x, y) from its heatmap hm[y, x]: bool masks [R², R, R] (row-major over (y, x))."""
    R = heatmaps_t.shape[0]
    return torch.stack([flex_mask_direct(heatmaps_t[y, x], threshold) for y in range(R) for x in range(R)])


def pspc_direct(images_u8: torch.Tensor, z: torch.Tensor, t: torch.Tensor, masks: torch.Tensor,
                chunk: int = 100) -> torch.Tensor:
    """PSPC composite: every pixel averages the patch posterior means of the crops (bool masks [K, R, R]) holding it.

    For each crop: restrict z and the training images to the crop's pixels (all channels) and run the empirical
    denoiser on those patches (`empirical_direct`, per-sample t). Pixels that no crop covers take the empirical
    estimate over whole images (the toolkit's documented choice).
    """
    B, C, R, _ = z.shape
    composite = torch.zeros(B, C, R * R, dtype=z.dtype)
    coverage = torch.zeros(R * R, dtype=z.dtype)
    for mask in masks:
        idx = mask.flatten().nonzero().squeeze(1)
        if len(idx) == 0:
            continue
        zc = z.flatten(2)[:, :, idx]
        xc = images_u8.flatten(2)[:, :, idx]
        composite[:, :, idx] += empirical_direct(xc, zc, t, chunk)
        coverage[idx] += 1
    out = composite / coverage.clamp_min(1)
    uncovered = coverage == 0
    if uncovered.any():
        out[:, :, uncovered] = empirical_direct(images_u8, z, t, chunk).flatten(2)[:, :, uncovered]
    return out.view_as(z)


# ---------------------------------------------------------------------------------------------------------------
# Peer denoisers: PCA-locality (Lukoianov et al.) and the kNN estimator (Niedoba et al. 2024), literally.


def wiener_mask_direct(images_u8: torch.Tensor, t: float, threshold: float) -> torch.Tensor:
    """M[n, m] = 1{|W[n, m] / W[n, n]| ≥ τ max |W / diag W|}, W = Σ (Σ + t² I)⁻¹ with Σ the N-1 covariance
    of the flattened images, by a dense float64 solve (no eigendecomposition)."""
    x = images_u8.flatten(1).double() / 127.5 - 1
    xc = x - x.mean(0)
    cov = xc.T @ xc / (x.shape[0] - 1)
    w = torch.linalg.solve(cov + t * t * torch.eye(cov.shape[0], dtype=torch.float64), cov)  # (Σ + t²)⁻¹Σ = W
    ratio = (w / w.diagonal()[:, None]).abs()
    return ratio >= threshold * ratio.max()


def pca_locality_direct(images_u8: torch.Tensor, z: torch.Tensor, t: float, mask: torch.Tensor,
                        temperature: float = 1.0) -> torch.Tensor:
    """D_m = Σ_k softmax_k(-Σ_n mask[n, m] (z_n - x_kn)² / 2t²T) x_km in float64, all N images at once: direct
    squared differences [B, N, D] summed through the mask as a 0/1 matrix."""
    x = images_u8.flatten(1).double() / 127.5 - 1
    sq = (z.flatten(1).double()[:, None, :] - x[None]) ** 2  # [B, N, D]
    w = torch.softmax(-(sq @ mask.double()) / (2 * t * t * temperature), dim=1)  # [B, N, D]: one softmax per m
    return (w * x[None]).sum(1).view_as(z)


def knn_estimate_direct(images_u8: torch.Tensor, z: torch.Tensor, t: float, k: int, draws) -> torch.Tensor:
    """The kNN estimator for given draws (image indices per latent), literally and in float64: neighbours by
    direct distances (ties: lower index), p_i = exp(-(d_i - d_1)/2t²), u = min p, Z = Σp + (N-k)u, q = p/Z on the
    neighbours and u/Z elsewhere, w_j ∝ (c_j / q_j) exp(-d_j/2t²) over the distinct draws j (counts c_j)."""
    x = images_u8.flatten(1).double() / 127.5 - 1
    N = x.shape[0]
    out = []
    for b, mine in enumerate(draws):
        d = ((z[b].flatten().double() - x) ** 2).sum(1)
        neighbours = torch.sort(d, stable=True).indices[:k]
        log_p = -(d - d[neighbours[0]]) / (2 * t * t)  # log p for every image; the neighbours' are the p_i
        log_u = log_p[neighbours[-1]]
        tail = log_u + torch.log(torch.tensor(float(N - k), dtype=torch.float64))  # log((N - k) u)
        log_Z = torch.logsumexp(torch.cat([log_p[neighbours], tail[None]]), 0)
        log_q = torch.full((N,), float(log_u - log_Z), dtype=torch.float64)
        log_q[neighbours] = log_p[neighbours] - log_Z
        index, counts = torch.unique(torch.as_tensor(mine), return_counts=True)
        log_w = torch.log(counts.double()) - log_q[index] + log_p[index]  # log(c/q · π) + const
        out.append(torch.softmax(log_w, 0) @ x[index])
    return torch.stack(out).view_as(z)


# ---------------------------------------------------------------------------------------------------------------
# Local score machines (Kamb & Ganguli): one softmax per pixel over the training patches it may be compared with.


def local_score_direct(images_u8: torch.Tensor, z: torch.Tensor, t: torch.Tensor, k: int, model: str) -> torch.Tensor:
    """ELS / bbELS / LS in float64, every pixel against every training window (slow on purpose, for small images).

    For pixel p = (i, j): its k×k window of z (wrapped around for `circular`, zero-padded otherwise) is compared
    with the k×k windows of every zero-padded training image centred on the allowed centres q; weights are the
    softmax over (n, q) of -‖z_k(p) - x_{n,k}(q)‖² / 2t², the output Σ w x_n[q].
    Allowed centres, per axis: `circular` every centre whose window fits the image; `zeros` the same for an
    interior coordinate (h ≤ i < R-h, h = k // 2) and only q = i within h of a border; `ls` only q = i.
    """
    B, C, R, _ = z.shape
    h = k // 2
    x = images_u8.double() / 127.5 - 1
    xpad = torch.nn.functional.pad(x, (h, h, h, h))
    zpad = torch.nn.functional.pad(z.double(), (h, h, h, h), mode="circular" if model == "circular" else "constant")
    # windows of every training image centred on every pixel q: [N, R², C·k²]; of z centred on every p: [B, R², C·k²]
    windows = xpad.unfold(2, k, 1).unfold(3, k, 1).permute(0, 2, 3, 1, 4, 5).reshape(len(x), R * R, -1)
    zwin = zpad.unfold(2, k, 1).unfold(3, k, 1).permute(0, 2, 3, 1, 4, 5).reshape(B, R * R, -1)
    values = x.reshape(len(x), C, R * R)  # x_n[q]

    def allowed_axis(i, q):
        inside = h <= q <= R - 1 - h  # the training window fits the image along this axis
        if model == "ls" or (model == "zeros" and not h <= i < R - h):
            return q == i
        return inside

    axis = torch.tensor([[allowed_axis(i, q) for q in range(R)] for i in range(R)])
    allowed = (axis[:, None, :, None] & axis[None, :, None, :]).reshape(R * R, R * R)  # [p, q]
    out = torch.empty(B, C, R * R, dtype=torch.float64)
    for b in range(B):
        for p in range(R * R):  # one pixel at a time, its allowed centres only: memory N·|q|·C·k²
            q = allowed[p].nonzero()[:, 0]
            d = ((zwin[b, p] - windows[:, q]) ** 2).sum(-1)  # [n, q]
            w = torch.softmax((-d / (2 * t[b].double() ** 2)).reshape(-1), dim=0).reshape(d.shape)
            out[b, :, p] = torch.einsum("nq,ncq->c", w, values[:, :, q])
    return out.view(B, C, R, R)
