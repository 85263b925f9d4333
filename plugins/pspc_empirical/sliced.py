"""The empirical denoiser on the CPU through exact integer products: int8 slices of the latents and the weights.

D(z, t) = Σ_n w_n x_n / Σ_n w_n with w_n = exp(ℓ_n), ℓ_n = -‖z - x_n‖² / (2t²), x_n = v_n / 127.5 - 1 for the
uint8 pixels v_n. The images are kept once as int8 u_n = v_n - 128 (exact: one byte per value, the dataset's own
size). With a = 127.5·z (exact in float64 for float32 z), z - x_n = (a - 0.5 - u_n) / 127.5, so up to a term
common to all n
    ℓ_n = c·(2 P_n - h_n),   P_n = a·u_n,   h_n = Σ_i u_ni (u_ni + 1),   c = 1 / (2 t² 127.5²)
with h_n an exact integer per image, computed once.

Slices. a = Σ_{k<K} 2^-s_k q_k + r_K with int8 q_k ∈ [-64, 64], s_k = s_0 + 7k (s_0 from max|a|: 7 bits per
slice), all exact in float64, and |r_K| ≤ 2^-(s_{K-1}+1). Each q_k·u_n is an exact int32 (|q·u| ≤ 64·128·D < 2^31;
int8 matrix products, AVX-512 VNNI on x86), so P_n is exact up to r_K·u_n, |r_K·u_n| ≤ 128‖r_K‖₁, and the float64
rounding of adding K exact terms. That bound δ on each logit's error is computed per latent; a logit error ≤ δ
moves the output by at most 2(e^{2δ} - 1) (each normalised weight moves by a factor within e^{±2δ}, |x| ≤ 1).

* Where δ ≤ DELTA_FINAL (5e-9: output error ≤ 2e-8) the screened logits are final. Slices are added (up to
  K_MAX) until this holds: 5 to 6 of them for t from 0.05 to 80.
* Otherwise (small t: c reaches ~1e5 per data unit², and even float64 rounding of ℓ is ~1e-7) the screen only
  selects candidates, every n with ℓ̃_n ≥ max ℓ̃ - 2δ - LOG_DROP; every other weight is below e^-LOG_DROP of the
  largest (LOG_DROP = 50 + ln N: in total ≤ 2e-22 of output). Candidates get their logits recomputed as the
  float64 oracle computes them, differences z - x_n squared and summed in float64, and a float64 softmax:
  near-ties at t = 0.002 are resolved as the oracle resolves them. At t = 0.002 on CIFAR-10 a latent has one or
  two candidates.

Weights p_n = exp(ℓ̃_n - m) ≤ 1 against the running maximum m over chunks of images (dropped below e^-LOG_DROP).
Where few images carry weight (small t) Σ p x is a float64 gather. Otherwise p is sliced the same way,
p = p̂ + ρ with p̂ = Σ_k 2^-σ_k w_k, and Σ_n p̂_n u_n and Σ_n p̂_n are exact int32 sums: the output is the softmax
mean with weights p̂, off the one with weights p by at most 2‖ρ‖₁ / Σ p̂; each chunk adds slices until its share of
that is within TOL_WEIGHTS (2e-8 in all; 3 to 4 slices at t = 80). The K partial results are added in float64.

Together: within ~5e-8 of the exact posterior mean before the float32 output rounding, at every t, with the bound
computed on every call, not assumed (measured: ~1e-10 from the float64 oracle; the exponential's own relative
error, ~1e-14, adds nothing visible). Only the int8 products use several threads; the elementwise work runs in
numpy and fused single-threaded compiled loops (numba): on a busy machine every multi-threaded step waits for its
slowest thread, and many small torch operations (index_add_ on a [10, 3072] tensor: 10 µs on one thread, 20 ms
on two of a loaded machine) wait many times.
Memory: the int8 copy of the images (N·D bytes) and h (8 bytes per image), cached once per dataset; per call,
buffers of [slices × latents, chunk] int32 and float64 for a chunk of PAIRS // B images, never [latents, N].
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np
import torch
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

F64 = torch.float64
UNIT = 127.5
STEP = 7  # bits per slice: |q| ≤ 64
K_MAX = 8  # slices of a latent or of a chunk's weights (56 bits below the largest value)
K_SCREEN = 4  # slices of a latent whose logits will be finished exactly anyway (small t)
DELTA_FINAL = 5e-9  # logit error bound under which the screened logits are final
TOL_WEIGHTS = 2e-8  # bound on the output error from slicing the weights
PAIRS = 1 << 20  # latent × image pairs per chunk (default): ~50 bytes each
INT32_TERMS = 2**31 // (64 * 128)  # terms of an int8 product an int32 sum holds exactly: 262144
CANDIDATE_BUDGET = 1_000_000  # candidate (latent, image) pairs beyond which the caller's float64 path runs
FINISH_BLOCK = 1024  # candidates whose distances are recomputed at once
EPS = 2.0**-53


@functools.cache
def available() -> bool:
    """Whether torch has exact int8 matrix products on the CPU (torch._int_mm; torch ≥ 2.3)."""
    try:
        a = torch.tensor([[3, -2]], dtype=torch.int8)
        return torch._int_mm(a, torch.tensor([[5], [7]], dtype=torch.int8)).item() == 1
    except (AttributeError, RuntimeError, TypeError):
        return False


def int8_images(dataset):
    """(u [N, D] int8 = v - 128, h [N] float64 = Σ u(u + 1)): computed once per dataset, kept in its cache."""
    key = "empirical_int8"
    if key not in dataset.cache:
        v = dataset.images.reshape(len(dataset), -1)
        u = torch.empty(v.shape, dtype=torch.int8)
        h = torch.empty(v.shape[0], dtype=F64)
        for start in range(0, v.shape[0], 4096):
            block = v[start : start + 4096].to(torch.int64) - 128
            u[start : start + 4096] = block.to(torch.int8)
            h[start : start + 4096] = (block * (block + 1)).sum(1).to(F64)  # exact integers
        dataset.cache[key] = (u, h)
    return dataset.cache[key]


def denoise(z: torch.Tensor, t: torch.Tensor, u: torch.Tensor, h: torch.Tensor, chunk: int | None):
    """D(z, t) [B, D] float64 (numpy) for latents z [B, ...] float32 and t [B] on the CPU, or None when the
    candidates of the small-t finish exceed CANDIDATE_BUDGET (the caller then runs its float64 path). Only the
    int8 products run in torch (on its threads); everything else is numpy or compiled single-threaded loops."""
    B, N, D = z.shape[0], u.shape[0], u.shape[1]
    chunk = max(1, min(chunk or max(256, PAIRS // B), INT32_TERMS))
    a = z.detach().reshape(B, -1).numpy().astype(np.float64) * UNIT  # exact
    c = 1.0 / (2.0 * t.detach().numpy().astype(np.float64) ** 2 * UNIT**2)
    log_drop = 50.0 + math.log(N)
    u_np, h_np = u.numpy(), h.numpy()

    # Screen slices: ‖r‖₁ small enough that δ ≤ DELTA_FINAL, where reachable.
    magnitude = 2 * 128 * np.abs(a).sum(1) * 1.01 + float(h_np.max())  # ≥ |2 P̃ - h|
    rounding = EPS * 4 * (K_MAX + 2) * magnitude  # float64 rounding of forming ℓ̃ / c
    limit = (DELTA_FINAL / c - rounding - 1e-12 / c) / 256
    reachable = limit > 2.0**-(STEP * K_MAX) * np.abs(a).sum(1)  # else: K_SCREEN slices and the exact finish
    rest = a.copy()
    q = np.empty((K_MAX, B, D), np.int8)
    scale, rest_l1, k_used = np.empty((K_MAX, B)), np.empty(B), np.empty(B, np.int64)
    _slice_rows(rest, limit, np.where(reachable, K_MAX, K_SCREEN), q, scale, np.empty((K_MAX, B), np.int64),
                k_used, rest_l1)
    K = int(k_used.max())
    dlt = c * (256 * rest_l1 + rounding) + 1e-12
    final = dlt <= DELTA_FINAL
    q_flat = torch.from_numpy(q[:K].reshape(K * B, D))
    scale = scale[:K].copy()

    m = np.full(B, -np.inf)  # running maximum of the logits
    num = np.zeros((B, D))  # Σ p̂ u, relative to m
    den = np.zeros(B)  # Σ p̂
    cand, n_cand = [], 0  # (latent, image, screened logit) for latents that are not final
    w = np.empty((K_MAX, B, chunk), np.int8)
    for start in range(0, N, chunk):
        uc = u[start : start + chunk]
        n = uc.shape[0]
        logit = np.empty((B, n))
        m_new = m.copy()
        _logits(_int_mm(q_flat, uc.T).numpy().reshape(K, B, n), scale, c, h_np[start : start + n], logit, m_new)
        if not final.all():
            keep = (~final)[:, None] & (logit >= (m_new - 2 * dlt - log_drop)[:, None])
            b_idx, n_idx = keep.nonzero()
            n_cand += len(b_idx)
            if n_cand > CANDIDATE_BUDGET:
                return None
            cand.append((b_idx, n_idx + start, logit[b_idx, n_idx]))
        rescale = np.exp(m - m_new)  # 0 for a first chunk (m = -inf)
        m = m_new
        psum, nnz = np.empty(B), np.empty(B, np.int64)
        _weights(logit, m, final, math.exp(-log_drop), psum, nnz)  # logit now holds p
        if nnz.sum() == 0:
            continue
        if nnz.sum() * 8 <= n:  # few images carry weight: float64 gather
            used = np.flatnonzero((logit > 0).any(0))
            num *= rescale[:, None]
            num += logit[:, used] @ u_np[start + used].astype(np.float64)
            den *= rescale
            den += logit[:, used].sum(1)
            continue
        limit = 0.49 * TOL_WEIGHTS * (n / N) * (den * rescale + psum)  # 0.49: Σ p̂ may fall short of Σ p by ‖ρ‖₁
        wv = w[:, :, :n] if n == chunk else np.empty((K_MAX, B, n), np.int8)
        w_scale, w_sums, kw = np.empty((K_MAX, B)), np.empty((K_MAX, B), np.int64), np.empty(B, np.int64)
        _slice_rows(logit, limit, np.full(B, K_MAX), wv, w_scale, w_sums, kw, np.empty(B))
        Kw = int(kw.max())
        prod = _int_mm(torch.from_numpy(np.ascontiguousarray(wv[:Kw]).reshape(Kw * B, n)), uc)
        _combine(num, den, rescale, prod.numpy().reshape(Kw, B, D), w_scale[:Kw], w_sums[:Kw])
    with np.errstate(invalid="ignore", divide="ignore"):  # latents that are not final: 0 / 0, replaced below
        out = num / (UNIT * den[:, None]) + 1.0 / 255.0  # Σ p̂ v / (127.5 Σ p̂) - 1
    if cand:
        lost = np.flatnonzero(~final)
        out[lost] = _finish(z.detach().reshape(B, -1).numpy()[lost], t.detach().numpy()[lost], lost, cand, m, dlt,
                            log_drop, u_np)
    return out


def _int_mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b for int8 a [M, K], b [K, n], exact: int32, or int64 sums of int32 parts where K > INT32_TERMS."""
    if a.shape[1] <= INT32_TERMS:
        return torch._int_mm(a, b)
    return sum(torch._int_mm(a[:, i : i + INT32_TERMS], b[i : i + INT32_TERMS]).to(torch.int64)
               for i in range(0, a.shape[1], INT32_TERMS))


@numba.njit(cache=True)
def _slice_rows(values, limit, k_max, q, scale, sums, k_used, rest_l1):
    """Slice each row b of float64 `values` [B, M] in place: values = Σ_k scale[k, b] q[k, b] + rest, int8 q with
    |q| ≤ 64, adding slices until ‖rest‖₁ ≤ limit[b] (or k_max[b] of them); later slices are zero. Exact: scaling by powers
    of two, rounding to integers |y| < 64 as floor(y + 0.5), exact subtractions. Also sums[k, b] = Σ q[k, b]."""
    K, B, M = q.shape
    for b in range(B):
        row = values[b]
        top = 0.0
        for j in range(M):
            top = max(top, abs(row[j]))
        shift = 0
        if top > 0:
            shift = 6 - math.frexp(top)[1]  # top < 2^e, so |row · 2^shift| < 64
        norm = 0.0
        for j in range(M):
            norm += abs(row[j])
        k = 0
        while k < k_max[b] and (k == 0 or norm > limit[b]):
            up = math.ldexp(1.0, shift + STEP * k)
            down = math.ldexp(1.0, -(shift + STEP * k))
            norm, total = 0.0, 0
            for j in range(M):
                y = row[j] * up
                qv = math.floor(y + 0.5)
                q[k, b, j] = np.int8(qv)
                total += np.int64(qv)
                row[j] = (y - qv) * down
                norm += abs(row[j])
            scale[k, b], sums[k, b] = down, total
            k += 1
        k_used[b], rest_l1[b] = k, norm * (1.0 + 1e-12)
        for kk in range(k, K):
            scale[kk, b], sums[kk, b] = 0.0, 0
            for j in range(M):
                q[kk, b, j] = 0


@numba.njit(cache=True)
def _logits(prod, scale, c, h, logit, top):
    """logit[b, n] = c_b (2 Σ_k scale[k, b] prod[k, b, n] - h_n) (the K exact terms added largest first) and
    top[b] = max(top[b], max_n logit[b, n])."""
    K, B, n = prod.shape
    for b in range(B):
        row = logit[b]
        for j in range(n):
            row[j] = scale[0, b] * prod[0, b, j]
        for k in range(1, K):
            sk, pk = scale[k, b], prod[k, b]
            for j in range(n):
                row[j] += sk * pk[j]
        best = top[b]
        for j in range(n):
            v = c[b] * (2.0 * row[j] - h[j])
            row[j] = v
            best = max(best, v)
        top[b] = best


@numba.njit(cache=True)
def _weights(logit, m, final, floor, psum, nnz):
    """In place: logit[b] -> p = exp(logit - m_b), 0 below `floor` and for latents that are not final; psum[b]
    = Σ p, nnz[b] = how many are nonzero."""
    B, n = logit.shape
    for b in range(B):
        row = logit[b]
        if not final[b]:
            row[:] = 0.0
            psum[b], nnz[b] = 0.0, 0
            continue
        mb = m[b]
        for j in range(n):
            row[j] = _exp(row[j] - mb)
        total, count = 0.0, 0
        for j in range(n):
            p = row[j] if row[j] >= floor else 0.0
            row[j] = p
            total += p
            count += p > 0.0
        psum[b], nnz[b] = total, count


@intrinsic
def _float_from_bits(typingctx, bits):
    """The float64 whose IEEE bits are the int64 `bits` (vectorisable, unlike a table lookup)."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


@numba.njit(inline="always")
def _exp(a):
    """exp(a) for a ≤ 0 (clamped at -700, where it is 0 to any weight here): 2^n · e^r, |r| ≤ ln2/2, e^r by its
    Taylor series to r^11 (relative error ~1e-14, far inside the bounds above), 2^n from its exponent bits."""
    a = max(a, -700.0)
    n = math.floor(a * 1.4426950408889634 + 0.5)
    r = a - n * 0.6931471805599453
    r2 = r * r
    r4 = r2 * r2
    p03 = (1.0 + r) + r2 * (0.5 + r * 0.16666666666666666)
    p47 = (0.041666666666666664 + r * 0.008333333333333333) + r2 * (0.001388888888888889 + r * 1.984126984126984e-4)
    p8b = (2.48015873015873e-05 + r * 2.7557319223985893e-06) + r2 * (2.755731922398589e-07 + r * 2.505210838544172e-08)
    return (p03 + r4 * (p47 + r4 * p8b)) * _float_from_bits((np.int64(n) + 1023) << 52)


@numba.njit(cache=True)
def _combine(num, den, rescale, prod, scale, sums):
    """num[b] = num[b]·rescale[b] + Σ_k scale[k, b] prod[k, b] and den[b] likewise with the slices' sums."""
    K, B, D = prod.shape
    for b in range(B):
        r = rescale[b]
        d = den[b] * r
        for k in range(K):
            d += scale[k, b] * sums[k, b]
        den[b] = d
        row = num[b]
        for i in range(D):
            row[i] *= r
        for k in range(K):
            sk, pk = scale[k, b], prod[k, b]
            for i in range(D):
                row[i] += sk * pk[i]


def _finish(z, t, latents, cand, m, dlt, log_drop, u):
    """Exact float64 softmax over the candidates of the latents whose screen is not final (small t): distances
    as the float64 oracle computes them (differences, squared, summed), in blocks of FINISH_BLOCK candidates."""
    b, n, screened = (np.concatenate(parts) for parts in zip(*cand))
    keep = screened >= (m - 2 * dlt - log_drop)[b]  # against the final maximum
    rank = np.full(m.shape[0], -1)
    rank[latents] = np.arange(len(latents))
    order = np.argsort(rank[b[keep]], kind="stable")
    b, n = rank[b[keep]][order], n[keep][order]  # grouped by latent
    zf = z.astype(np.float64)
    two_t2 = 2.0 * t.astype(np.float64) ** 2
    blocks = [slice(i, i + FINISH_BLOCK) for i in range(0, len(b), FINISH_BLOCK)]
    logit = np.concatenate([-np.square(zf[b[s]] - _data(u, n[s])).sum(1) / two_t2[b[s]] for s in blocks])
    top = np.full(len(latents), -np.inf)
    np.maximum.at(top, b, logit)
    w = np.exp(logit - top[b])
    total = np.bincount(b, weights=w, minlength=len(latents))
    out = np.zeros_like(zf)
    for s in blocks:
        bs = b[s]
        starts = np.flatnonzero(np.r_[True, bs[1:] != bs[:-1]])
        out[bs[starts]] += np.add.reduceat(_data(u, n[s]) * w[s, None], starts, axis=0)
    return out / total[:, None]


def _data(u, n):
    """x_n = v_n / 127.5 - 1 in float64 (as the float64 oracle converts), from the int8 copy."""
    return (u[n].astype(np.float64) + 128.0) / UNIT - 1.0
