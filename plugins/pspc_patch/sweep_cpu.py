"""Compiled CPU kernels (numba) for `sweep.py`: one stream of the training set serves every candidate scale.

Square crops, all patch sizes k at once. Per latent b and image n, the per-pixel squared differences
e_p = Σ_c (x_cp - z'_cp)² (float64, uint8 units) are rounded to a fixed-point grid of step δ_b = 2^-q_b and
summed into an integer summed-area table S (int64), S[i, j] = Σ_{i'<i, j'<j} ẽ_{i'j'}. Every k×k window's
distance is then four lookups, d = δ_b (S[u+k, v+k] - S[u, v+k] - S[u+k, v] + S[u, v]), for every k from the
same table. Integer arithmetic is exact, so the subtractions cancel nothing: the only error is the rounding of
each term, |d - Σ_{p∈C} e_p| ≤ k²·δ_b/2 (plus e's own float64 rounding, as in the per-candidate kernels).
q_b is the largest integer with 2^q_b · E_b ≤ 2^62, E_b = Σ_{c,p} max(z'_cp², (255 - z'_cp)²) ≥ any image's full
distance, so no partial sum can overflow. At t = 0.002 on 32×32 RGB (E_b ≈ 2e8, δ_b ≈ 5e-11) a 3×3 window is
within 2.5e-10 uint8 units², a logit within 2e-9; a float64 table would cancel up to 4·2R·2^-53·E_b ≈ 6e-6 there.
Weights go back to pixels through the transposed table (each window's weight at its four corners with signs,
then 2D prefix sums: bounded terms, absolute error ~2R·2^-53 per unit of weight).

Flex crops, all masses λ at once. A pixel's crops for every λ are prefixes of one order (its heatmap's pixels by
descending sensitivity), so one running float64 sum along that order gives every λ's distance at the lengths
where its crops stop: non-negative terms, relative error ≤ m·2^-53 for a crop of m pixels, as the per-candidate
kernel. Weights come back per crop (`flex_weights`); their spread onto pixels is a matrix product (`sweep.py`).

Both streams keep, per crop, a reference distance and s = Σ_n exp(c·(ref - d_n)) as `composite_cpu` does, and
skip a block's exponentials for a crop when all its weights are below e^-SKIP of the reference term (which is
exp(0) = 1 inside s): at most N·e^-60 ≈ N·1e-26 of s goes missing, far below float64's resolution.

One file on purpose: numba's on-disk cache is invalidated only by changes to the file that defines a cached
function, so the helpers (copied from `composite_cpu`: the exponential, block loads) live beside the kernels.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

LANES = 64  # images per block (SIMD lanes run over them)
FLAGS = {"nnan", "nsz", "reassoc", "contract"}
BIG = 1e300  # "no reference yet"
LOG2E, LN2 = 1.4426950408889634, 0.6931471805599453
LOW, HIGH = -700.0, 700.0
RESHIFT = math.exp(500.0)  # a block sum above it may hold clamped terms: move the reference
SKIP = 60.0  # weights below e^-SKIP of the reference term are left out (a relative 1e-26 each)
_INV_FACT = np.array([1.0 / math.factorial(i) for i in range(12)])


@intrinsic
def _float_from_bits(typingctx, bits):
    """The float64 whose IEEE bits are the int64 `bits`."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


@numba.njit(fastmath=FLAGS)
def _exp(a):
    """exp(a) for LOW ≤ a ≤ HIGH (clamped): 2^n · e^r, |r| ≤ ln2/2, e^r by its Taylor series to r^11 (~1e-14)."""
    a = min(max(a, LOW), HIGH)
    n = math.floor(a * LOG2E + 0.5)
    r = a - n * LN2
    p = _INV_FACT[11]
    for i in range(10, -1, -1):
        p = p * r + _INV_FACT[i]
    return p * _float_from_bits((np.int64(n) + 1023) << 52)


@numba.njit
def _load(pixels, n0, w, xb):
    """Copy images n0 .. n0+w into the contiguous block xb [C, P, LANES] (uint8)."""
    for ch in range(xb.shape[0]):
        for p in range(xb.shape[1]):
            src, dst = pixels[ch, p, n0 : n0 + w], xb[ch, p]
            for lane in range(w):
                dst[lane] = src[lane]


@numba.njit
def _task_range(task, n_tasks, N):
    return task * N // n_tasks, (task + 1) * N // n_tasks


@numba.njit(fastmath=FLAGS)
def _squared(zu, xb, w, p, out):
    """out[lane] = Σ_c (x_cp - z'_cp)² for the block's images (float64)."""
    for lane in range(w):
        out[lane] = 0.0
    for ch in range(xb.shape[0]):
        x, a = xb[ch, p], zu[ch, p]
        for lane in range(w):
            v = np.float64(x[lane]) - a
            out[lane] += v * v


@intrinsic
def _fmin(typingctx, a, b):
    """llvm.minnum.f64: a minimum over a loop vectorises, where numba's min() leaves it (and the loop) scalar."""

    def codegen(context, builder, signature, args):
        d = ir.DoubleType()
        return builder.call(cgutils.get_or_insert_function(builder.module, ir.FunctionType(d, [d, d]),
                                                           "llvm.minnum.f64"), args)

    return types.float64(types.float64, types.float64), codegen


@numba.njit(fastmath=FLAGS)
def _block_min(d, w):
    """The block's smallest distance (vectorised: 1.14-1.19x for a whole PSPC-Square sweep)."""
    m = BIG
    for lane in range(w):
        m = _fmin(m, d[lane])
    return m


@numba.njit(fastmath=FLAGS)
def _accumulate(d, w, c, ref, s, at):
    """Add the block's exp(c·(ref - d)) to s[at] against the reference ref[at] (set by a first block, moved
    when a block comes so close that the sum could hold clamped terms); blocks entirely below e^-SKIP of the
    reference term are skipped."""
    m = _block_min(d, w)
    old = ref[at]
    if old == BIG:
        old = m
        ref[at] = m
    elif c * (old - m) < -SKIP:
        return
    total = 0.0
    for lane in range(w):
        total += _exp(c * (old - d[lane]))
    if total > RESHIFT:
        s[at] *= _exp(c * (m - old))
        ref[at] = m
        total = 0.0
        for lane in range(w):
            total += _exp(c * (m - d[lane]))
    s[at] += total


# ---------------------------------------------------------------------------------------------------------------
# Square crops: every patch size from one integer summed-area table per (latent, block of images).


@numba.njit(fastmath=FLAGS)
def _table(zu, scale, xb, w, R, e, sat):
    """sat[(i+1)·(R+1) + j+1] = Σ_{i'≤i, j'≤j} round(e_{i'j'} · scale) (int64, exact); row 0 and column 0 stay 0."""
    R1 = R + 1
    row = np.zeros(LANES, np.int64)
    for i in range(R):
        for lane in range(w):
            row[lane] = 0
        above, here = i * R1, (i + 1) * R1
        for j in range(R):
            _squared(zu, xb, w, i * R + j, e)
            up, out = sat[above + j + 1], sat[here + j + 1]
            for lane in range(w):
                row[lane] += np.int64(e[lane] * scale + 0.5)
                out[lane] = up[lane] + row[lane]


@numba.njit(fastmath=FLAGS)
def _window(sat, R1, u, v, k, w, step, d):
    """d[lane] = step · (k×k window sum with top-left corner (u, v)), from the integer table (exact difference)."""
    a, b = sat[(u + k) * R1 + v + k], sat[u * R1 + v + k]
    cc, dd = sat[(u + k) * R1 + v], sat[u * R1 + v]
    for lane in range(w):
        d[lane] = np.float64((a[lane] - b[lane]) - (cc[lane] - dd[lane])) * step


@numba.njit(parallel=True, fastmath=FLAGS, cache=True)
def square_pass1(zu, scale, pixels, R, ks, offsets, c, n_ranges):
    """Per latent, image range and window of every size: ref and s = Σ_n exp(c·(ref - d_n)) [B, ranges, Kt]."""
    B, C, P = zu.shape
    N = pixels.shape[2]
    R1 = R + 1
    Kt = offsets[len(ks)]
    ref = np.full((B, n_ranges, Kt), BIG)
    s = np.zeros((B, n_ranges, Kt))
    for task in numba.prange(B * n_ranges):
        b, r = task // n_ranges, task % n_ranges
        lo, hi = _task_range(r, n_ranges, N)
        xb = np.empty((C, P, LANES), np.uint8)
        sat = np.zeros((R1 * R1, LANES), np.int64)
        e, d = np.empty(LANES), np.empty(LANES)
        step = 1.0 / scale[b]
        for n0 in range(lo, hi, LANES):
            w = min(LANES, hi - n0)
            _load(pixels, n0, w, xb)
            _table(zu[b], scale[b], xb, w, R, e, sat)
            for v in range(len(ks)):
                k = ks[v]
                nW = R - k + 1
                for u in range(nW):
                    for x in range(nW):
                        _window(sat, R1, u, x, k, w, step, d)
                        _accumulate(d, w, c, ref[b, r], s[b, r], offsets[v] + u * nW + x)
    return ref, s


@numba.njit(parallel=True, fastmath=FLAGS, cache=True)
def square_pass2(zu, scale, pixels, R, ks, offsets, c, ref, log_s, n_ranges):
    """Per latent, image range and patch size: Σ_n x_{ncp} Σ_{C∋p} w_{bnC} [B, ranges, V, C, P] (x in uint8 units),
    w = exp(c·(ref - d) - log s); windows whose block weights are all below e^-SKIP are left out."""
    B, C, P = zu.shape
    N = pixels.shape[2]
    R1 = R + 1
    V = len(ks)
    out = np.zeros((B, n_ranges, V, C, P))
    for task in numba.prange(B * n_ranges):
        b, r = task // n_ranges, task % n_ranges
        lo, hi = _task_range(r, n_ranges, N)
        xb = np.empty((C, P, LANES), np.uint8)
        sat = np.zeros((R1 * R1, LANES), np.int64)
        spread = np.empty((R1 * R1, LANES))
        e, d, wl = np.empty(LANES), np.empty(LANES), np.empty(LANES)
        step = 1.0 / scale[b]
        for n0 in range(lo, hi, LANES):
            w = min(LANES, hi - n0)
            _load(pixels, n0, w, xb)
            _table(zu[b], scale[b], xb, w, R, e, sat)
            for v in range(V):
                k = ks[v]
                nW = R - k + 1
                started = False
                for u in range(nW):
                    for x in range(nW):
                        _window(sat, R1, u, x, k, w, step, d)
                        crop = offsets[v] + u * nW + x
                        base, shift = ref[b, crop], log_s[b, crop]
                        if c * (base - _block_min(d, w)) - shift < -SKIP:
                            continue
                        if not started:
                            spread[:, :w] = 0.0
                            started = True
                        for lane in range(w):
                            wl[lane] = _exp(c * (base - d[lane]) - shift)
                        _corners(spread, R1, u, x, k, w, wl)
                if started:
                    _prefix_2d(spread, R, w)
                    for p in range(P):
                        _dot(spread[(p // R) * R1 + p % R], xb, p, w, out[b, r, v])
    return out


@numba.njit(inline="always", fastmath=FLAGS)
def _corners(spread, R1, u, v, k, w, wl):
    """The transposed window sum's impulses: +w at (u, v) and (u+k, v+k), -w at (u, v+k) and (u+k, v)."""
    a, b = spread[u * R1 + v], spread[(u + k) * R1 + v + k]
    cc, dd = spread[u * R1 + v + k], spread[(u + k) * R1 + v]
    for lane in range(w):
        a[lane] += wl[lane]
        b[lane] += wl[lane]
        cc[lane] -= wl[lane]
        dd[lane] -= wl[lane]


@numba.njit(fastmath=FLAGS)
def _prefix_2d(spread, R, w):
    """In place over the R×R corner: spread[i, j] = Σ_{i'≤i, j'≤j} spread[i', j'] (pixel (i, j)'s summed weight)."""
    R1 = R + 1
    row = np.empty(LANES)
    for i in range(R):
        for lane in range(w):
            row[lane] = 0.0
        for j in range(R):
            cell = spread[i * R1 + j]
            if i == 0:
                for lane in range(w):
                    row[lane] += cell[lane]
                    cell[lane] = row[lane]
            else:
                up = spread[(i - 1) * R1 + j]
                for lane in range(w):
                    row[lane] += cell[lane]
                    cell[lane] = row[lane] + up[lane]


@numba.njit(inline="always", fastmath=FLAGS)
def _dot(weight, xb, p, w, out):
    """out[c, p] += Σ_lanes weight · x_c (this block's images at pixel p)."""
    for ch in range(xb.shape[0]):
        xp, acc = xb[ch, p], 0.0
        for lane in range(w):
            acc += weight[lane] * np.float64(xp[lane])
        out[ch, p] += acc


# ---------------------------------------------------------------------------------------------------------------
# Flex crops: every mass λ from one running sum per (pixel's order, latent, block of images).


@numba.njit(fastmath=FLAGS)
def _advance(e, walk_pix, base, j, m, acc):
    """acc += e[walk_pix[base + i]] for i = j .. m-1 (all LANES lanes; unused lanes hold finite junk), four rows
    per update of acc (its store and reload bound the speed, not the additions); returns m."""
    while j + 4 <= m:
        p0, p1, p2, p3 = walk_pix[base + j], walk_pix[base + j + 1], walk_pix[base + j + 2], walk_pix[base + j + 3]
        for lane in range(LANES):
            acc[lane] += (e[p0, lane] + e[p1, lane]) + (e[p2, lane] + e[p3, lane])
        j += 4
    while j < m:
        p0 = walk_pix[base + j]
        for lane in range(LANES):
            acc[lane] += e[p0, lane]
        j += 1
    return m


@numba.njit(fastmath=FLAGS)
def _errors(zu, xb, w, e):
    """e [P, LANES]: Σ_c (x_cp - z'_cp)² for every pixel (float64)."""
    for p in range(e.shape[0]):
        _squared(zu, xb, w, p, e[p])


@numba.njit(parallel=True, fastmath=FLAGS, cache=True)
def flex_pass1(zu, pixels, walk_ptr, walk_pix, crop_ptr, crop_m, crop_id, Kt, c, n_ranges):
    """Per latent, image range and crop (every λ): ref and s = Σ_n exp(c·(ref - d_n)) [B, ranges, Kt].

    Walk q visits walk_pix[walk_ptr[q]:walk_ptr[q+1]] (a pixel's order by descending sensitivity); its crops
    crop_ptr[q]:crop_ptr[q+1], by increasing length crop_m, take the running sum when it has crop_m terms."""
    B, C, P = zu.shape
    N = pixels.shape[2]
    ref = np.full((B, n_ranges, Kt), BIG)
    s = np.zeros((B, n_ranges, Kt))
    for task in numba.prange(B * n_ranges):
        b, r = task // n_ranges, task % n_ranges
        lo, hi = _task_range(r, n_ranges, N)
        xb = np.empty((C, P, LANES), np.uint8)
        e, acc = np.zeros((P, LANES)), np.empty(LANES)
        for n0 in range(lo, hi, LANES):
            w = min(LANES, hi - n0)
            _load(pixels, n0, w, xb)
            _errors(zu[b], xb, w, e)
            for q in range(len(walk_ptr) - 1):
                acc[:] = 0.0
                j, base = 0, walk_ptr[q]
                for ci in range(crop_ptr[q], crop_ptr[q + 1]):
                    j = _advance(e, walk_pix, base, j, crop_m[ci], acc)
                    _accumulate(acc, w, c, ref[b, r], s[b, r], crop_id[ci])
    return ref, s


@numba.njit(parallel=True, fastmath=FLAGS, cache=True)
def flex_weights(zu, pixels, n0, n1, walk_ptr, walk_pix, crop_ptr, crop_m, crop_id, Kt, c, ref, log_s):
    """W [Kt, B, n1 - n0]: w_{bnC} = exp(c·(ref - d) - log s) for images n0..n1 (0 where below e^-SKIP for the
    whole block), and active [Kt] (some weight kept)."""
    B, C, P = zu.shape
    n = n1 - n0
    n_blocks = (n + LANES - 1) // LANES
    W = np.zeros((Kt, B, n))
    hit = np.zeros((B * n_blocks, Kt), np.bool_)
    for task in numba.prange(B * n_blocks):
        b, blk = task // n_blocks, task % n_blocks
        start = n0 + blk * LANES
        w = min(LANES, n1 - start)
        xb = np.empty((C, P, LANES), np.uint8)
        e, acc = np.zeros((P, LANES)), np.empty(LANES)
        _load(pixels, start, w, xb)
        _errors(zu[b], xb, w, e)
        for q in range(len(walk_ptr) - 1):
            acc[:] = 0.0
            j, base = 0, walk_ptr[q]
            for ci in range(crop_ptr[q], crop_ptr[q + 1]):
                j = _advance(e, walk_pix, base, j, crop_m[ci], acc)
                crop = crop_id[ci]
                top, shift = ref[b, crop], log_s[b, crop]
                if c * (top - _block_min(acc, w)) - shift < -SKIP:
                    continue
                hit[task, crop] = True
                dst = W[crop, b, blk * LANES : blk * LANES + w]
                for lane in range(w):
                    dst[lane] = _exp(c * (top - acc[lane]) - shift)
    active = np.zeros(Kt, np.bool_)
    for task in range(B * n_blocks):
        for crop in range(Kt):
            active[crop] |= hit[task, crop]
    return W, active
