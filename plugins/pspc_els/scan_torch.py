"""The local score machines as whole-tensor torch operations (CUDA, or CPUs without numba), in float64.

The same plan and logits as the compiled CPU kernel (`scan_cpu.py`): for each row option, every column option
and a chunk of training images at once, the cross terms 2c z'·x are summed over each window (products summed
over channels, then windows by `unfold(...).sum`, so nothing is subtracted), the logit is
L = 2c z'_w·x_w - c‖x_w‖² (‖z'_w‖² is the same for all of a pixel's windows and cancels), and every output pixel
keeps a streamed softmax: running maximum m, S = Σ e^(L - m), A_c = Σ e^(L - m) x_c[centre], rescaled when m
grows. Float64 throughout: a logit's rounding stays near 1e-16 of its partial sums.

Memory per step is about 5 · (2R) · (R + 2h)² · 8 bytes per latent×image pair (`chunk` pairs per step: ~1.3 MB
each at 32×32): bounded whatever N is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .plan import AxisPlan

UNIT = 127.5
F64 = torch.float64


def scan(z: torch.Tensor, images: torch.Tensor, plan: AxisPlan, t: float, chunk: int) -> torch.Tensor:
    """D(z, t) [B, C, R, R] float64 for latents z [B, C, R, R] (one noise level t) against uint8 images
    [N, C, R, R] on z's device, the model given by `plan`; `chunk` latent×image pairs per step."""
    B, C, R, _ = z.shape
    k, h, dev = plan.k, plan.h, z.device
    c = 1.0 / (2.0 * float(t) ** 2 * UNIT**2)  # logit = -c · d, d in uint8 units²
    zl = z.to(F64).add(1).mul(2 * c * UNIT)  # 2c z'
    shift, lo, hi = (torch.as_tensor(a, device=dev) for a in (plan.shift, plan.lo, plan.hi))
    nw = hi - lo + 1
    wmax = int(nw.max())
    wx = torch.arange(wmax, device=dev)
    valid = wx < nw[:, None]  # [O, wmax]: windows that exist (the options of zero padding differ in length)
    ax = lo[:, None] + wx * valid  # window starts (the option's first one where padded)
    jj = torch.arange(wmax + k - 1, device=dev)
    ux = (lo[:, None] + jj).clamp(-h, R - 1 + h)  # training columns the windows cover [O, wmax + k - 1]
    zx = torch.remainder(ux - shift[:, None], R)  # the latent's column paired with each
    px = torch.remainder(ax + h - shift[:, None], R)  # output column of each window
    m = torch.full((B, R * R), -torch.inf, dtype=F64, device=dev)
    s = torch.zeros(B, R * R, dtype=F64, device=dev)
    a = torch.zeros(B, C, R * R, dtype=F64, device=dev)
    per = max(1, chunk // B)
    for start in range(0, images.shape[0], per):
        xp = F.pad(images[start : start + per].to(F64), (h, h, h, h))  # [n, C, R+2h, R+2h] uint8 units
        n = xp.shape[0]
        xw = c * F.avg_pool2d(xp.square().sum(1, keepdim=True), k, stride=1) * k * k  # [n, 1, R, R] by centre
        xw = xw[:, 0]
        for oy in range(len(plan.shift)):
            ys, y0, nwy = int(plan.shift[oy]), int(plan.lo[oy]), int(nw[oy])
            uy = torch.arange(y0, y0 + nwy + k - 1, device=dev)  # training rows covered
            zrows = zl[:, :, torch.remainder(uy - ys, R)]  # [B, C, ny, R]
            zg = zrows[:, :, :, zx].permute(1, 0, 3, 2, 4)[:, :, None]  # [C, B, 1, O, ny, nx]
            xg = xp[:, :, uy + h][:, :, :, ux + h].permute(1, 0, 3, 2, 4)  # [C, n, O, ny, nx]
            prod = zg[0] * xg[0]  # [B, n, O, ny, nx]: Σ_c z'_c x_c
            for ch in range(1, C):
                prod.addcmul_(zg[ch], xg[ch])
            cross = prod.unfold(3, k, 1).sum(-1).unfold(4, k, 1).sum(-1)  # [B, n, O, nwy, wmax]
            ay = torch.arange(y0, y0 + nwy, device=dev)
            logit = cross - xw[:, ay + h][:, :, ax + h].permute(0, 2, 1, 3)  # [B, n, O, nwy, wmax]
            logit = logit.masked_fill(~valid[:, None, :], -torch.inf)
            py = torch.remainder(ay + h - ys, R)
            pix = (py[None, :, None] * R + px[:, None, :]).expand(n, -1, -1, -1).reshape(-1)  # [n·O·nwy·wmax]
            flat = logit.reshape(B, -1)
            m_new = m.scatter_reduce(1, pix.expand(B, -1), flat, "amax")
            grow = torch.exp(m - m_new).nan_to_num_(0.0)  # -inf - -inf: nothing accumulated yet
            s *= grow
            a *= grow[:, None]
            m = m_new
            w = torch.exp(flat - m.gather(1, pix.expand(B, -1)))  # 0 where the window does not exist
            s.index_add_(1, pix, w)
            centre = xp[:, :, ay + 2 * h][:, :, :, ax + 2 * h].permute(0, 1, 3, 2, 4)  # [n, C, O, nwy, wmax]
            a.index_add_(2, pix, w[:, None, :] * centre.transpose(0, 1).reshape(C, -1))
    return (a / s[:, None] / UNIT - 1.0).view(B, C, R, R)
