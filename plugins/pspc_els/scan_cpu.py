"""The local score machines on the CPU as compiled, fused loops (numba), in float64.

For a latent z and a block of nl training images x (SIMD lanes run over the images; `block_lanes`), every pair
of options of the plan (`plan.py`: a row shift and a column shift) pairs each output pixel with one training
window per image.
With z' = (z + 1)·127.5 and x in uint8 units (the pixels need no conversion beyond uint8 -> float64):

1. Logits by the expansion -c‖z'_w - x_w‖² = 2c z'_w·x_w - c‖x_w‖² - c‖z'_w‖², c = 1 / (2t²·127.5²), in float64.
   The last term is the same for every window of an output pixel, so it cancels in that pixel's softmax and is
   never formed; c‖x_w‖² is computed once per image block. The cross terms 2c z'_w·x_w are window sums of the
   products of z' (shifted by the option) and x: running sums down the columns (the entering row added and the
   leaving row subtracted, each row's products computed once) and along each row: O(1) per (pixel, window)
   whatever k is.
   Float64 keeps the rounding of a logit near 1e-16 × (the largest partial sum, ~2c·k²·C·255·|z'|) × (the number
   of running steps, ≤ 2R): ~1e-7 at t = 0.002 for k = 15 in the worst case, far below what moves an output
   (float32, as in the authors' code, is off by ~1e-3 at t = 0.01).
2. Softmax per output pixel, streamed: a running best logit `top` per pixel and S = Σ e^(L - top) and
   A_c = Σ e^(L - top)·x_c[centre], each window's lanes summed before they are added (per-lane sums, read and
   written back for every window, were 1.2-1.3x slower). A window whose best lane beats `top` rescales what was
   accumulated (one scalar exp); every other exponent is ≤ 0, so nothing overflows. Exponentials are a degree-7
   polynomial times 2^n built from exponent bits (relative error 4e-11, vectorised; exp() is not).
3. Left out, exactly enough: a window whose every lane lies SKIP = 60 below its pixel's running best (the best only
   grows, so each such weight ends below e^-60 ≈ 1e-26 of the largest, and 10^9 of them move an output by < 1e-16),
   and single weights below e^-CUT = e^-300 of the running best (set to 0, so no slow denormal numbers ever
   appear). At small t this leaves out almost every exponential.

LS (a single, position-locked option) runs its own kernel, `_ls_scan`: each pixel meets one window per image, so
the distances are box sums of Σ_c (x - z')² themselves (float64 differences, no expansion) and each pixel's
softmax step takes a block of LS_LANES images at once.

Loop order (ELS): per image block, row option, column option, window row. Each training row's products with the
shifted z' are computed once per pair of options into a ring of k + 1 rows, from which the column sums add the
entering row and subtract the leaving one (recomputing the leaving row's products instead was 1.1-1.2x slower at
t ≥ 0.3); the accumulators (R²·(1 + C) numbers per task) stay in L1 whatever order the windows come in.
Work is split into tasks (latent × range of image blocks; the blocks' width and the tasks' number fixed by N, B
and the machine's logical CPU count) with their own accumulators, merged in order at the end with their own
running bests: results do not depend on the thread count.

One file on purpose: numba's on-disk cache is invalidated only by changes to the file that defines a cached
function, so the helpers of the cached kernel live beside it.
"""

from __future__ import annotations

import math
import os

import numba
import numpy as np
import torch
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from pspc_core.runtime.compiling import first_call
from pspc_core.runtime.threads import match_torch_threads

from .plan import AxisPlan

FLAGS = {"nnan", "nsz", "reassoc", "contract"}  # no NaN in the data; the order of additions is free
BIG = 1e300  # -BIG: no window yet; BIG/2: the norm of a lane without an image (finite: cheap to vectorise)
CUT = 300.0  # weights below e^-CUT of a pixel's running best are 0: no denormal numbers ever (point 3)
SKIP = 60.0  # a window whose every lane lies SKIP below its pixel's running best logit is left out (point 3)
VEC = 64  # lanes per explicit vector step of `_window_logits`; a block's lanes are a multiple of it
BLOCK_LANES = (256, 128, 64)  # training images per block, widest first (`block_lanes`)
PAD_MAX = 1.125  # a wider block may pad the training set to at most this times the lanes of the narrowest
TASK_TARGET = 16  # latent × image-range tasks, at least, where there are enough blocks (whatever the thread count)
LS_LANES = 128  # images per block of the LS kernel (one window per pixel and image: wide blocks amortise a step)
LS_MIN_BLOCKS = 2  # LS blocks per task, at least
LOG2E, LN2 = 1.4426950408889634, 0.6931471805599453
TWO52, SHIFT = 4503599627370496.0, 4503599627371519.0  # 2^52, 2^52 + 1023: an integer n < 2^51 added to 2^52 + 1023
# lands in the mantissa bits, so bits(n + SHIFT) - bits(2^52) = n + 1023, the exponent field of 2^n
UNIT = 127.5
U = np.uint64  # indices cast to unsigned skip numba's negative-index wrap-around (which defeats vectorising)
LOW = -700.0  # exp(-700) ~ 1e-304: below it a weight is 0 to float64 and to any output
# e^r on |r| ≤ ln2/2, degree 7, fitted for relative error (4e-11)
P0, P1, P2, P3 = 0.999999999961943, 1.00000000025808, 0.5000000104139765, 0.16666665024161664
P4, P5, P6, P7 = 0.04166622631052427, 0.008333578290049937, 0.0013948134043054242, 0.00019766918939033445


@intrinsic
def _bits(typingctx, x):
    """The IEEE bits of a float64 as an int64 (free, and vectorisable)."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return types.int64(types.float64), codegen


@intrinsic
def _from_bits(typingctx, bits):
    """The float64 whose IEEE bits are the int64 `bits`."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


def _float_op(name):
    """An intrinsic calling llvm.`name`.f64 on two float64s: maxnum / minnum reductions over a loop vectorise, where
    numba's max() and min() leave them scalar (and with them the whole loop): 1.9x for a 64-lane window."""

    @intrinsic
    def op(typingctx, a, b):
        def codegen(context, builder, signature, args):
            d = ir.DoubleType()
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(d, [d, d]), f"llvm.{name}.f64")
            return builder.call(fn, args)

        return types.float64(types.float64, types.float64), codegen

    return op


_fmax, _fmin = _float_op("maxnum"), _float_op("minnum")


@intrinsic
def _window_logits(typingctx, col, enter, gone, xw, at, rs, lv, g):
    """One window's step along a row for lanes g .. g+VEC, as explicit VEC-wide vectors (col, xw, rs, lv flat;
    enter, gone, at: element offsets of lane g): rs += col[enter] - col[gone] (col[enter] alone when gone < 0),
    lv = rs - xw[at]; returns the largest of these lanes of lv. Numba's lane loops for the same step, each with its
    own checks and remainder, took 1.04-1.14x as long over a whole call."""
    sig = types.float64(col, types.int64, types.int64, xw, types.int64, rs, lv, types.int64)

    def codegen(context, builder, signature, args):
        col_a, xw_a, rs_a, lv_a = [context.make_array(signature.args[i])(context, builder, args[i])
                                   for i in (0, 3, 5, 6)]
        _, enter, gone, _, at, _, _, g = args
        vector = ir.VectorType(ir.DoubleType(), VEC)
        fast = ("fast",)
        has = builder.icmp_signed(">=", gone, ir.Constant(ir.IntType(64), 0))
        leaving = builder.load(_lanes_at(builder, col_a, builder.select(has, gone, enter)), align=8)
        step = builder.fsub(builder.load(_lanes_at(builder, col_a, enter), align=8),
                            builder.select(has, leaving, ir.Constant(vector, [0.0] * VEC)), flags=fast)
        sums = builder.fadd(builder.load(_lanes_at(builder, rs_a, g), align=8), step, flags=fast)
        builder.store(sums, _lanes_at(builder, rs_a, g), align=8)
        logits = builder.fsub(sums, builder.load(_lanes_at(builder, xw_a, at), align=8), flags=fast)
        builder.store(logits, _lanes_at(builder, lv_a, g), align=8)
        largest = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.DoubleType(), [vector]),
                                                 f"llvm.vector.reduce.fmax.v{VEC}f64")
        return builder.call(largest, [logits])

    return sig, codegen


def _lanes_at(builder, array, offset):
    """Pointer to the VEC doubles of `array` (a numba array struct) from element `offset`, as one vector."""
    return builder.bitcast(builder.gep(array.data, [offset]), ir.VectorType(ir.DoubleType(), VEC).as_pointer())


@numba.njit(fastmath=FLAGS)
def _exp_neg(a):
    """exp(a) for a ≤ 0 (clamped at LOW), relative error 4e-11: 2^n · p(r), n = floor(a / ln2 + 1/2) (a packed
    rounding, no float->int conversion, which AVX2 lacks), r = a - n ln2, p a degree-7 fit (Estrin's scheme), 2^n
    from the bits of the exact sum n + 2^52 + 1023 (no cancellation for reassociation to undo)."""
    a = max(a, LOW)
    n = np.floor(a * LOG2E + 0.5)
    r = a - n * LN2
    r2 = r * r
    p = (P0 + P1 * r) + (P2 + P3 * r) * r2 + ((P4 + P5 * r) + (P6 + P7 * r) * r2) * (r2 * r2)
    return p * _from_bits((_bits(n + SHIFT) - _bits(TWO52)) << 52)


@numba.njit(fastmath=FLAGS)
def _load(pixels, n0, w, h, c, xb, xw, sq, cs):
    """Images n0 .. n0+w (of pixels [C, R, R, N], uint8) into the block xb [C, R+2h, R+2h, nl] (uint8, zero-padded
    by h: a quarter of float32's bytes, so a block of 128 images stays in a 1 MiB L2; 1.02-1.1x), and xw [R, R, nl]
    = c Σ_c x_c² over the k×k window centred on each pixel (zero-padded), by running sums of squared integers (exact
    in float64). Lanes w .. nl-1 hold no image: their xw is BIG/2, so their logits sit far below anything real.
    sq [R+2h, R+2h, nl] and cs [R+2h, nl] are scratch."""
    C, R, nl = pixels.shape[0], pixels.shape[1], xb.shape[-1]
    k, W = 2 * h + 1, R + 2 * h
    xb[:] = 0
    for ch in range(C):
        for i in range(R):
            for j in range(R):  # a row of lanes at a time (indexing each lane's pixel does not vectorise: 5x)
                src, dst = pixels[ch, i, j, n0:n0 + w], xb[ch, i + h, j + h]
                for lane in range(w):
                    dst[lane] = src[lane]
    for i in range(W):
        for j in range(W):
            out = sq[i, j]
            if C == 3:  # RGB in one sweep (3x)
                x0, x1, x2 = xb[0, i, j], xb[1, i, j], xb[2, i, j]
                for lane in range(nl):
                    v0, v1, v2 = np.float64(x0[lane]), np.float64(x1[lane]), np.float64(x2[lane])
                    out[lane] = v0 * v0 + v1 * v1 + v2 * v2
                continue
            for lane in range(nl):
                out[lane] = 0.0
            for ch in range(C):
                x = xb[ch, i, j]
                for lane in range(nl):
                    v = np.float64(x[lane])
                    out[lane] += v * v
    for j in range(W):
        for lane in range(nl):
            cs[j, lane] = 0.0
        for i in range(k - 1):
            for lane in range(nl):
                cs[j, lane] += sq[i, j, lane]
    for i in range(R):  # cs: sums over rows i .. i + k - 1 of the padded image, then along the row
        for j in range(W):
            for lane in range(nl):
                cs[j, lane] += sq[i + k - 1, j, lane]
            if i > 0:
                for lane in range(nl):
                    cs[j, lane] -= sq[i - 1, j, lane]
        for lane in range(nl):
            xw[i, 0, lane] = 0.0
        for j in range(k):
            for lane in range(nl):
                xw[i, 0, lane] += cs[j, lane]
        for j in range(1, R):
            for lane in range(nl):
                xw[i, j, lane] = xw[i, j - 1, lane] + cs[j + k - 1, lane] - cs[j - 1, lane]
        for j in range(R):
            for lane in range(nl):
                xw[i, j, lane] = xw[i, j, lane] * c if lane < w else BIG / 2


@numba.njit(fastmath=FLAGS)
def _products(z, xb, R, h, ys, x0, nx, xs, y, out):
    """out[j] = Σ_c z_c[(y - ys) mod R, (x0 + j - xs) mod R] · x_c[y, x0 + j], j < nx, every lane: one training row's
    terms of the window sums for one pair of options."""
    C, nl = xb.shape[0], xb.shape[-1]
    zi, yi, zx = _wrap(y - ys, R), U(y + h), _wrap(x0 - xs, R)
    for j in range(nx):
        xj, o = U(x0 + h + j), out[j]
        if C == 3:
            a0, a1, a2 = z[0, zi, zx], z[1, zi, zx], z[2, zi, zx]
            r0, r1, r2 = xb[0, yi, xj], xb[1, yi, xj], xb[2, yi, xj]
            for lane in range(nl):
                o[lane] = a0 * r0[lane] + a1 * r1[lane] + a2 * r2[lane]
        else:
            for lane in range(nl):
                o[lane] = 0.0
            for ch in range(C):
                a, rc = z[ch, zi, zx], xb[ch, yi, xj]
                for lane in range(nl):
                    o[lane] += a * rc[lane]
        zx = zx + 1 if zx < R - 1 else 0


@numba.njit(fastmath=FLAGS)
def _add_rows(col, enter, leave, nx, leaving):
    """col[j] += enter[j] (- leave[j] when `leaving`), j < nx, every lane: the window's column sums move down."""
    nl = col.shape[-1]
    for j in range(nx):
        c, e, o = col[j], enter[j], leave[j]
        if leaving:
            for lane in range(nl):
                c[lane] += e[lane] - o[lane]
        else:
            for lane in range(nl):
                c[lane] += e[lane]


@numba.njit(inline="always")
def _wrap(i, R):
    """i mod R for -R ≤ i < 2R, without a division."""
    i = i + R if i < 0 else i
    return i - R if i >= R else i


@numba.njit(inline="always")
def _reference(top, sums, p, most):
    """(pixel p's reference logit, whether to leave the window out) for a window whose best lane's logit is
    `most`: left out when it lies SKIP below the running best top[p]; when it beats it, what was accumulated in
    sums[p] moves to the new reference (one scalar exp) and top[p] follows."""
    best = top[p]
    if most < best - SKIP:
        return best, True
    if most > best:
        shrink = math.exp(best - most) if most - best < CUT else 0.0
        for i in range(sums.shape[1]):
            sums[p, i] *= shrink
        top[p] = most
        return most, False
    return best, False


@numba.njit(fastmath=FLAGS)
def _windows(col, nw, k, xw, yc, xc0, top, acc, xb, row, px0, R, cy, cx0, rs, lv):
    """The windows v < nw of one row enter their pixels' softmax. Logit per lane: L = Σ_{j<k} col[v + j] (a running
    sum along the row) - xw[yc, xc0 + v]; pixel p = row·R + px, px = px0 + v mod R, centre values
    xb[:, cy, cx0 + v]. top[p] is the pixel's running best logit; acc[p] holds S = Σ e^(L - top) and
    A_c = Σ e^(L - top) x_c over the windows and lanes so far. A window whose every lane lies SKIP below top is
    left out."""
    C, nl = xb.shape[0], xb.shape[-1]
    for lane in range(nl):
        rs[lane] = 0.0
    for j in range(k - 1):
        for lane in range(nl):
            rs[lane] += col[j, lane]
    px = px0
    flat, cols = xw.reshape(-1), col.reshape(-1)
    for v in range(nw):
        enter, gone, at = (v + k - 1) * nl, (v - 1) * nl, (yc * R + xc0 + v) * nl  # gone + g < 0 at v = 0: none
        most = -BIG
        for g in range(0, nl, VEC):
            most = _fmax(most, _window_logits(cols, enter + g, gone + g, flat, at + g, rs, lv, g))
        p = U(row * R + px)
        px = px + 1 if px < R - 1 else 0
        best, skip = _reference(top, acc, p, most)
        if skip:
            continue
        xc = U(cx0 + v)
        if C == 3:
            s0 = s1 = s2 = s3 = 0.0
            for lane in range(nl):
                a = lv[lane] - best
                w = _exp_neg(a)
                w = w if a > -CUT else 0.0
                s0 += w
                s1 += w * xb[0, cy, xc, lane]
                s2 += w * xb[1, cy, xc, lane]
                s3 += w * xb[2, cy, xc, lane]
            acc[p, 0] += s0
            acc[p, 1] += s1
            acc[p, 2] += s2
            acc[p, 3] += s3
        else:
            for lane in range(nl):
                a = lv[lane] - best
                w = _exp_neg(a)
                w = w if a > -CUT else 0.0
                acc[p, 0] += w
                for ch in range(C):
                    acc[p, 1 + ch] += w * xb[ch, cy, xc, lane]


@numba.njit(parallel=True, fastmath=FLAGS, cache=True)
def _scan(zl, pixels, k, shift, lo, hi, c, n_ranges, nl):
    """Per task (latent b, range r of blocks of nl images): each pixel's running best logit top [R²] and S, A_c
    relative to it [R², 1 + C]."""
    B, C, R = zl.shape[0], zl.shape[1], zl.shape[2]
    N = pixels.shape[-1]
    h = k // 2
    n_opt = len(shift)
    span = R + 2 * h  # the most training coordinates one option's windows cover
    n_blocks = -(-N // nl)
    n_tasks = B * n_ranges
    top = np.full((n_tasks, R * R), -BIG)
    sums = np.zeros((n_tasks, R * R, 1 + C))
    for task in numba.prange(n_tasks):
        b, r = task // n_ranges, task % n_ranges
        xb = np.empty((C, span, span, nl), np.uint8)
        xw = np.empty((R, R, nl))
        sq, cs = np.empty((span, span, nl)), np.empty((span, nl))
        col, ring = np.empty((span, nl)), np.empty((k + 1, span, nl))
        rs, lv = np.empty(nl), np.empty(nl)
        z = zl[b]
        ttop, tsum = top[task], sums[task]
        for blk in range(r * n_blocks // n_ranges, (r + 1) * n_blocks // n_ranges):
            n0 = blk * nl
            _load(pixels, n0, min(nl, N - n0), h, c, xb, xw, sq, cs)
            for oy in range(n_opt):
                ys, y0, nwy = shift[oy], lo[oy], hi[oy] - lo[oy] + 1
                for ox in range(n_opt):
                    xs, x0, nwx = shift[ox], lo[ox], hi[ox] - lo[ox] + 1
                    nx = nwx + k - 1
                    for j in range(nx):
                        for lane in range(nl):
                            col[j, lane] = 0.0
                    for i in range(k - 1):  # column sums over the first k - 1 rows of the first window row
                        _products(z, xb, R, h, ys, x0, nx, xs, y0 + i, ring[i])
                        _add_rows(col, ring[i], ring[i], nx, False)
                    for wy in range(nwy):
                        ay = y0 + wy
                        enter, leave = (wy + k - 1) % (k + 1), (wy - 1) % (k + 1)
                        _products(z, xb, R, h, ys, x0, nx, xs, ay + k - 1, ring[enter])
                        _add_rows(col, ring[enter], ring[leave], nx, wy > 0)
                        _windows(col, nwx, k, xw, ay + h, x0 + h, ttop, tsum, xb, _wrap(ay + h - ys, R),
                                 _wrap(x0 + h - xs, R), R, ay + 2 * h, x0 + 2 * h, rs, lv)
    return top, sums


@numba.njit(parallel=True, fastmath=FLAGS, cache=True)
def _ls_scan(zu, pixels, k, c, n_ranges):
    """LS (position-locked windows), per task (latent b, range r of blocks of LS_LANES images): each pixel's running
    best logit top [R²] and S, A_c relative to it [R², 1 + C]. The distance of pixel p's window to image n's window
    at p is the k×k box sum of e_n = Σ_c (x_n,c - z'_c)² (zero-padded: 0 outside the image), by running sums down
    the columns (rows leave from a ring of k + 1) and along the rows: O(1) per (pixel, image) whatever k is."""
    B, C, R = zu.shape[0], zu.shape[1], zu.shape[2]
    N = pixels.shape[-1]
    h = k // 2
    n_blocks = -(-N // LS_LANES)
    n_tasks = B * n_ranges
    top = np.full((n_tasks, R * R), -BIG)
    sums = np.zeros((n_tasks, R * R, 1 + C))
    for task in numba.prange(n_tasks):
        b, r = task // n_ranges, task % n_ranges
        ring, col = np.empty((k + 1, R, LS_LANES)), np.empty((R, LS_LANES))
        d = np.empty(LS_LANES)
        z, ttop, tsum = zu[b], top[task], sums[task]
        for blk in range(r * n_blocks // n_ranges, (r + 1) * n_blocks // n_ranges):
            n0 = blk * LS_LANES
            w = min(LS_LANES, N - n0)
            for j in range(R):
                for lane in range(w):
                    col[j, lane] = 0.0
            for i in range(R + h):  # row i enters the column sums; output row i - h is complete
                if i < R:
                    slot = ring[i % (k + 1)]
                    for j in range(R):
                        e, cj = slot[j], col[j]
                        _row_distances(pixels, z, i, j, n0, w, e)
                        for lane in range(w):
                            cj[lane] += e[lane]
                if i >= k:  # row i - k leaves
                    gone = ring[(i - k) % (k + 1)]
                    for j in range(R):
                        cj, ej = col[j], gone[j]
                        for lane in range(w):
                            cj[lane] -= ej[lane]
                if i >= h:
                    _ls_row(pixels, col, i - h, h, n0, w, c, d, ttop, tsum)
    return top, sums


@numba.njit(inline="always", fastmath=FLAGS)
def _row_distances(pixels, z, i, j, n0, w, e):
    """e [lanes] = Σ_c (x_c - z'_c)² at pixel (i, j) for images n0 .. n0+w."""
    C = pixels.shape[0]
    if C == 3:
        x0, x1, x2 = pixels[0, i, j, n0:n0 + w], pixels[1, i, j, n0:n0 + w], pixels[2, i, j, n0:n0 + w]
        a0, a1, a2 = z[0, i, j], z[1, i, j], z[2, i, j]
        for lane in range(w):
            v0, v1, v2 = np.float64(x0[lane]) - a0, np.float64(x1[lane]) - a1, np.float64(x2[lane]) - a2
            e[lane] = v0 * v0 + v1 * v1 + v2 * v2
        return
    for lane in range(w):
        e[lane] = 0.0
    for ch in range(C):
        x, a = pixels[ch, i, j, n0:n0 + w], z[ch, i, j]
        for lane in range(w):
            v = np.float64(x[lane]) - a
            e[lane] += v * v


@numba.njit(fastmath=FLAGS)
def _ls_row(pixels, col, o, h, n0, w, c, d, ttop, tsum):
    """Output row o: d = the column sums' running sum over columns j - h .. j + h (clipped), logits -c·d, and
    each pixel's streamed softmax (as `_windows`: a running best, blocks SKIP below it left out, weights below
    e^-CUT set to 0) accumulating S and A_c = Σ w x_c at the pixel itself."""
    C, R = pixels.shape[0], col.shape[0]
    for lane in range(w):
        d[lane] = 0.0
    for j in range(min(h, R)):
        cj = col[j]
        for lane in range(w):
            d[lane] += cj[lane]
    for j in range(R):
        if j + h < R:
            add = col[j + h]
            for lane in range(w):
                d[lane] += add[lane]
        if j - h - 1 >= 0:
            sub = col[j - h - 1]
            for lane in range(w):
                d[lane] -= sub[lane]
        near = BIG
        for lane in range(w):
            near = _fmin(near, d[lane])
        p = o * R + j
        best, skip = _reference(ttop, tsum, p, -c * near)
        if skip:
            continue
        if C == 3:
            x0, x1, x2 = pixels[0, o, j, n0:n0 + w], pixels[1, o, j, n0:n0 + w], pixels[2, o, j, n0:n0 + w]
            s = a0 = a1 = a2 = 0.0
            for lane in range(w):
                a = -c * d[lane] - best
                u = _exp_neg(a)
                u = u if a > -CUT else 0.0
                s += u
                a0 += u * np.float64(x0[lane])
                a1 += u * np.float64(x1[lane])
                a2 += u * np.float64(x2[lane])
            tsum[p, 0] += s
            tsum[p, 1] += a0
            tsum[p, 2] += a1
            tsum[p, 3] += a2
            continue
        for lane in range(w):
            a = -c * d[lane] - best
            u = _exp_neg(a)
            u = u if a > -CUT else 0.0
            tsum[p, 0] += u
            for ch in range(C):
                tsum[p, 1 + ch] += u * np.float64(pixels[ch, o, j, n0 + lane])


_READY: set = set()


def _ready(kernel, *args) -> None:
    """Compile `kernel` (or load it from numba's cache) on a one-image input first: the first use on a machine
    compiles for ~20 s, said on stderr and interruptible (`first_call`)."""
    first_call(kernel, args, "the ELS CPU kernel", _READY)


def lanes_last(images: torch.Tensor) -> np.ndarray:
    """uint8 images [N, C, R, R] -> [C, R, R, N], the layout the kernel streams (made once per dataset)."""
    return np.ascontiguousarray(images.permute(1, 2, 3, 0).numpy())


def scan(z: torch.Tensor, pixels: np.ndarray, plan: AxisPlan, t: float) -> torch.Tensor:
    """D(z, t) [B, C, R, R] float64 for latents z [B, C, R, R] (one noise level t) against uint8 training pixels
    [C, R, R, N] (`lanes_last`) on the CPU, the model given by `plan`."""
    B, C, R, _ = z.shape
    N = pixels.shape[-1]
    c = 1.0 / (2.0 * float(t) ** 2 * UNIT**2)  # logit = -c · d, d in uint8 units²
    match_torch_threads()
    if plan.position_locked:
        return _merge(*_run_ls(z, pixels, plan.k, c), B, C, R)
    zl = z.detach().double().add(1).mul(2 * c * UNIT).contiguous().numpy()  # 2c z' (z' in uint8 units)
    nl = block_lanes(N, B)
    n_ranges = max(1, min(-(-TASK_TARGET // B), -(-N // nl)))
    one = np.zeros(1, np.int64)
    _ready(_scan, np.zeros((1, C, R, R)), np.zeros((C, R, R, 1), np.uint8), 1, one, one, one, 1.0, 1, VEC)
    return _merge(*_scan(zl, pixels, plan.k, plan.shift, plan.lo, plan.hi, c, n_ranges, nl), B, C, R)


def block_lanes(N: int, B: int) -> int:
    """Training images per block (the SIMD lanes run over them) for B latents against N images: the widest of
    BLOCK_LANES that leaves at least two (latent, block) pairs per logical CPU of this machine and pads the N images
    to no more than PAD_MAX times the lanes of the narrowest. Wider blocks share a window's fixed costs (its
    reference step and lane sums) among more images: A/B on an AVX-512 Zen 5 (1 MiB L2), ELS and bbELS, k = 3-15,
    t = 0.3-20: 128 against 64 1.0-1.15x, 256 against 128 1.0-1.09x (0.92x once at k = 15); 64 was 1.05-1.2x over
    32. The choice depends on the machine, never on the thread count, and so do the results."""
    cpus, narrowest = os.cpu_count() or 1, BLOCK_LANES[-1]
    for w in BLOCK_LANES:
        blocks = -(-N // w)
        if B * blocks >= 2 * cpus and blocks * w <= PAD_MAX * -(-N // narrowest) * narrowest:
            return w
    return narrowest


def _run_ls(z: torch.Tensor, pixels: np.ndarray, k: int, c: float):
    """`_ls_scan` for latents z against pixels [C, R, R, N]: (top, sums) per task."""
    B, C, R, _ = z.shape
    zu = z.detach().double().add(1).mul(UNIT).contiguous().numpy()  # z' (uint8 units)
    n_ranges = max(1, min(-(-TASK_TARGET // B), -(-pixels.shape[-1] // LS_LANES) // LS_MIN_BLOCKS))
    _ready(_ls_scan, np.zeros((1, C, R, R)), np.zeros((C, R, R, 1), np.uint8), 1, 1.0, 1)
    return _ls_scan(zu, pixels, k, c, n_ranges)


def _merge(top, sums, B, C, R) -> torch.Tensor:
    """D [B, C, R, R] from the tasks' running bests top [B·n_ranges, R²] and sums [.., R², 1 + C], merged in
    order."""
    top = top.reshape(B, -1, R * R)
    sums = sums.reshape(B, top.shape[1], R * R, 1 + C)
    scale = np.exp(top - top.max(1, keepdims=True))
    sums = (sums * scale[..., None]).sum(1)  # [B, R², 1 + C]
    num, den = sums[..., 1:].transpose(0, 2, 1), sums[..., 0]
    return torch.from_numpy(num / den[:, None] / UNIT - 1.0).view(B, C, R, R)
