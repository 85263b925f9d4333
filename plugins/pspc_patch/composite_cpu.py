"""The PSPC composite on the CPU as compiled, fused loops (numba): every t, float64, ~1e-15 from a float64 oracle.

Where most weights matter (k = 3 at t = 0.3: ~75% of them) every (latent, image, crop) triple costs a distance,
a crop sum and an exponential. As whole-tensor torch operations every step streams [pixels, latents, images]
arrays through memory; here a block of LANES images stays in cache while it is used, nothing larger than
[crops, LANES] is written, and the SIMD lanes run over the block's images.

Distances are squared differences in float64, in uint8 units (z' = (z + 1)·127.5 against the integer pixels).
Square crops (PSPC-Square) sum them as running window sums down the columns and along the rows (cost
independent of k; the rounding is bounded by float64's 1.1e-16 times a column's terms, ≤ 32·3·255²: a logit moves
by < 1e-8 even at t = 0.002, where neighbouring images are near-ties). Arbitrary crops (PSPC-Flex's masks) add
their members' terms from lists. Exponentials are a degree-9 polynomial times 2^n built from its exponent bits
(relative error 1.8e-14; it vectorises, unlike exp()). They are taken against a reference distance per crop: the
first distance seen, replaced by a block's minimum when that block's sum could hold clamped terms (earlier sums
are rescaled then).

Two strategies, the same numbers:
* `two_pass` (any crops): pass 1 gives per crop its reference and s = Σ_n exp(c·(ref - d_n)); pass 2 spreads
  w = exp(c·(ref - d) - log s) back to pixels (transposed window sums, or per pixel the weights of the crops
  holding it) and multiplies them into the images. Masks whose images fit one range (N < RANGE_MIN) and whose
  weights per latent fit KEPT_MAX keep pass 1's weights instead of recomputing them (`_masks_kept`). Kept weights
  and per-pixel gathers (the crops' weights used to be scattered onto their pixels): 1.5x for PSPC-Flex at
  16x16, N = 400, 100 latents.
* `one_pass_square` (square crops, k ≤ ONE_PASS_MAX_K): each crop accumulates its own Σ_n exp(c·(ref - d_n))
  x_{n,C} (k²·C values), cheaper than a second pass while k²·C is small; the composite is assembled at the end.
  For k = 3 (the paper's schedule at small t) `_one_pass3` fuses the row-by-row distance sums, the weights and
  the accumulators while three pixel rows are in cache, and sweeps three adjacent crops at once (1.2-1.3x the
  generic pass, measured on one thread), for two latents at a time (1.2x more at 10 and at 100 latents).
Work is split into tasks, each a range of images (two passes: ranges of at least RANGE_MIN images, in full
blocks) and a group of latents, their number fixed by N and the batch size alone; each range has its own sums,
merged in order: results do not depend on the thread count. Tasks are handed out one at a time to torch's thread
count of Python threads running the GIL-free kernels: on a shared machine a descheduled thread holds up one task,
not a fixed share of the work.

One file on purpose: numba's on-disk cache is invalidated only by changes to the file that defines a cached
function, so helpers shared by cached kernels must live beside them.
"""

from __future__ import annotations

import math
import threading

import numba
import numpy as np
import torch
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

from pspc_core.runtime.compiling import first_call

from .crops import BoxCrops

LANES = 256  # images per block (SIMD lanes run over them): 1.1x over 128 (k = 23, fused k = 3); 64 or less: slower
TASKS = 32  # image ranges with their own accumulators, merged in order (two passes)
RANGE_MIN = 4 * LANES  # images per range at least (two passes): a range's blocks are full, latents split instead
TASK_TARGET = 16  # latent × image-range tasks (one pass), at least, whatever the thread count
KEPT_MAX = 1 << 20  # masks over one image range: a latent's weights (K × N, 8 MB at most) are kept for pass 2
GROUP = 2  # latents per task of the k = 3 pass: they share each block's float64 rows and the loads of
# its accumulation sweeps (1.05-1.3x over one latent; more need more registers than there are)
ONE_PASS_MAX_K = 3  # k²·C multiply-adds per weight against a second pass: 1.5x at k = 2, 1.2-1.3x at k = 3 (fused)
FLAGS = {"nnan", "nsz", "reassoc", "contract"}  # no NaN in the data; the order of additions is free
BIG = 1e300  # "no minimum yet" (finite: comparisons stay cheap to vectorise)
LOG2E, LN2 = 1.4426950408889634, 0.6931471805599453
UNIT = 127.5
LOW = -700.0  # exp(-700) ~ 1e-304: below it a weight is 0 to float64 and to any output
HIGH = 700.0
RESHIFT = math.exp(500.0)  # a block sum above it may hold clamped terms
TWO52, SHIFT = 4503599627370496.0, 4503599627371519.0  # 2^52 and 2^52 + 1023 (`_exp`)
# e^r on |r| ≤ ln2/2: Chebyshev interpolation of degree 9 in monomial form (relative error 1.8e-14)
E0, E1, E2, E3 = 1.000000000000014, 1.0000000000000107, 0.49999999999420225, 0.16666666666506608
E4, E5, E6, E7 = 0.04166666704928857, 0.008333333403076093, 0.0013888800476772423, 0.00019841147895541356
E8, E9 = 2.4885022797049967e-05, 2.76494059758538e-06


@intrinsic
def _bits(typingctx, x):
    """The IEEE bits of a float64 as an int64 (free, and vectorisable)."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return types.int64(types.float64), codegen


@intrinsic
def _float_from_bits(typingctx, bits):
    """The float64 whose IEEE bits are the int64 `bits` (free, and vectorisable unlike a table lookup)."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


@numba.njit(fastmath=FLAGS)
def _exp(a):
    """exp(a) for LOW ≤ a ≤ HIGH (clamped): 2^n · e^r with |r| ≤ ln2/2, e^r a degree-9 polynomial (relative error
    1.8e-14) in Estrin's scheme (short dependency chains); 2^n from the bits of the exact sum n + SHIFT, whose low
    mantissa bits hold n + 1023, the exponent field of 2^n (no float->int conversion, no cancellation for
    reassociation to undo)."""
    a = min(max(a, LOW), HIGH)
    n = np.floor(a * LOG2E + 0.5)
    r = a - n * LN2
    r2 = r * r
    r4 = r2 * r2
    p03 = (E0 + r * E1) + r2 * (E2 + r * E3)
    p47 = (E4 + r * E5) + r2 * (E6 + r * E7)
    return (p03 + r4 * (p47 + r4 * (E8 + r * E9))) * _float_from_bits((_bits(n + SHIFT) - _bits(TWO52)) << 52)


@numba.njit
def _load(pixels, n0, w, xb):
    """Copy images n0 .. n0+w into the contiguous block xb [C, P, LANES] (uint8)."""
    for ch in range(xb.shape[0]):
        for p in range(xb.shape[1]):
            src, dst = pixels[ch, p, n0 : n0 + w], xb[ch, p]
            for lane in range(w):
                dst[lane] = src[lane]


@numba.njit(fastmath=FLAGS)
def _crop_distances(zu, xb, w, R, k, ring, col, d):
    """d [K, LANES]: squared distances of one latent (zu = z' [C, P]) to the block's crops. Row by row, e_p =
    Σ_c (x_cp - z'_cp)² goes into a ring of k + 1 rows [(k+1)·R, LANES]; the vertical window sum col [R, LANES]
    adds the entering row and subtracts the one leaving (read back from the ring, so each e is computed once),
    and once k rows are in, each of its positions is summed along the row into d."""
    nW, live, C = R - k + 1, k + 1, xb.shape[0]
    for i in range(R):
        now, gone = (i % live) * R, ((i - k) % live) * R
        for j in range(R):
            e, p, acc = ring[now + j], i * R + j, col[j]
            if C == 3:  # RGB in one loop
                x0, x1, x2, a0, a1, a2 = xb[0, p], xb[1, p], xb[2, p], zu[0, p], zu[1, p], zu[2, p]
                for lane in range(w):
                    e[lane] = _sq(x0[lane], a0) + _sq(x1[lane], a1) + _sq(x2[lane], a2)
            else:
                for lane in range(w):
                    e[lane] = 0.0
                for ch in range(C):
                    x, a = xb[ch, p], zu[ch, p]
                    for lane in range(w):
                        e[lane] += _sq(x[lane], a)
            if i == 0:
                for lane in range(w):
                    acc[lane] = e[lane]
            elif i < k:
                for lane in range(w):
                    acc[lane] += e[lane]
            else:
                old = ring[gone + j]
                for lane in range(w):
                    acc[lane] += e[lane] - old[lane]
        if i >= k - 1:
            _row_windows(col, w, R, k, d, (i - k + 1) * nW)


@numba.njit(inline="always", fastmath=FLAGS)
def _sq(x, a):
    v = np.float64(x) - a
    return v * v


@numba.njit(inline="always", fastmath=FLAGS)
def _row_windows(col, w, R, k, d, row):
    """d[row + v] = Σ_{j<k} col[v + j], v = 0 .. R-k (running)."""
    first = d[row]
    for lane in range(w):
        first[lane] = col[0, lane]
    for j in range(1, k):
        add = col[j]
        for lane in range(w):
            first[lane] += add[lane]
    for v in range(1, R - k + 1):
        out, prev, add, sub = d[row + v], d[row + v - 1], col[v + k - 1], col[v - 1]
        for lane in range(w):
            out[lane] = prev[lane] + (add[lane] - sub[lane])


@numba.njit(inline="always", fastmath=FLAGS)
def _spread_step(add, sub, w, k, nW, i, out, prev):
    """out = prev + add - sub: step i of a running window sum clipped at the edges (the transpose of
    `_row_windows`: add is source i, sub source i - k); terms that do not exist are left out (prev at i = 0)."""
    if i == 0:
        for lane in range(w):
            out[lane] = add[lane]
    elif i < nW and i >= k:
        for lane in range(w):
            out[lane] = prev[lane] + (add[lane] - sub[lane])
    elif i < nW:
        for lane in range(w):
            out[lane] = prev[lane] + add[lane]
    elif i >= k:
        for lane in range(w):
            out[lane] = prev[lane] - sub[lane]
    else:
        for lane in range(w):
            out[lane] = prev[lane]


@numba.njit
def _buffers(C, P, R, k, K, masks):
    """A task's scratch: the image block, the column sums, the crop distances, the ring of rows (square crops) or
    the per-pixel terms (masks), one crop's weights (all [.., LANES])."""
    rows = P if masks else (k + 1) * R
    return (np.empty((C, P, LANES), np.uint8), np.empty((R, LANES)), np.empty((K, LANES)),
            np.empty((rows, LANES)), np.empty(LANES))


@numba.njit
def _task_range(task, n_tasks, N):
    return task * N // n_tasks, (task + 1) * N // n_tasks


@numba.njit
def _task_span(task, n_ranges, n_groups, N, B):
    """Task = (latent group, image range): its images lo .. hi-1, its latents b0 .. b1-1 and its range r."""
    g, r = task // n_ranges, task % n_ranges
    lo, hi = _task_range(r, n_ranges, N)
    return lo, hi, g * B // n_groups, (g + 1) * B // n_groups, r


@numba.njit(nogil=True, fastmath=FLAGS, cache=True)
def _pass1(zu, pixels, R, k, ptr, members, c, n_ranges, n_groups, first, last, ref, s):
    """Tasks first .. last-1 (`_task_span`): per image range, latent and crop the reference distance ref and
    s = Σ_n exp(c·(ref - d_n)) (ref [n_ranges, B, K] filled with BIG and s with 0 by the caller)."""
    B, C, P = zu.shape
    N = pixels.shape[2]
    K = _n_crops(R, k, ptr)
    for task in range(first, last):
        lo, hi, b0, b1, r = _task_span(task, n_ranges, n_groups, N, B)
        xb, col, d, ring, u = _buffers(C, P, R, k, K, len(ptr) > 0)
        for n0 in range(lo, hi, LANES):
            w = min(LANES, hi - n0)
            _load(pixels, n0, w, xb)
            for b in range(b0, b1):
                _distances(zu[b], xb, w, R, k, ptr, members, ring, col, d)
                for crop in range(K):
                    old = ref[r, b, crop]
                    total, new = _weights(d[crop], w, c, old, u, False)
                    if new != old:  # a first or a far closer block: earlier sums (if any) move to the new reference
                        s[r, b, crop] *= _exp(c * (new - old))
                        ref[r, b, crop] = new
                    s[r, b, crop] += total


@numba.njit
def _n_crops(R, k, ptr):
    return len(ptr) - 1 if len(ptr) > 0 else (R - k + 1) ** 2


@numba.njit(fastmath=FLAGS)
def _distances(zu, xb, w, R, k, ptr, members, ring, col, d):
    """d [K, LANES]: the crops' squared distances, by window sums (square crops) or membership lists (masks)."""
    if len(ptr) > 0:
        _mask_distances(zu, xb, w, ptr, members, ring, d)
    else:
        _crop_distances(zu, xb, w, R, k, ring, col, d)


@numba.njit(fastmath=FLAGS)
def _mask_distances(zu, xb, w, ptr, members, e, d):
    """Arbitrary crops (PSPC-Flex): e_p for every pixel into e [P, LANES], then each crop adds its members'."""
    C = xb.shape[0]
    for p in range(xb.shape[1]):
        out = e[p]
        if C == 3:  # RGB in one sweep
            x0, x1, x2, a0, a1, a2 = xb[0, p], xb[1, p], xb[2, p], zu[0, p], zu[1, p], zu[2, p]
            for lane in range(w):
                out[lane] = _sq(x0[lane], a0) + _sq(x1[lane], a1) + _sq(x2[lane], a2)
            continue
        for lane in range(w):
            out[lane] = 0.0
        for ch in range(C):
            x, a = xb[ch, p], zu[ch, p]
            for lane in range(w):
                out[lane] += _sq(x[lane], a)
    for crop in range(len(ptr) - 1):
        _row_sum(e, members, ptr[crop], ptr[crop + 1], None, w, d[crop])


@numba.njit(inline="always", fastmath=FLAGS)
def _row_sum(rows, index, lo, hi, scale, w, out):
    """out[:w] = Σ_{lo ≤ j < hi} rows[index[j]] (times scale[index[j]] unless scale is None), four rows per
    sweep."""
    for lane in range(w):
        out[lane] = 0.0
    j = lo
    while j + 3 < hi:
        i0, i1, i2, i3 = index[j], index[j + 1], index[j + 2], index[j + 3]
        r0, r1, r2, r3 = rows[i0], rows[i1], rows[i2], rows[i3]
        if scale is None:
            for lane in range(w):
                out[lane] += (r0[lane] + r1[lane]) + (r2[lane] + r3[lane])
        else:
            s0, s1, s2, s3 = scale[i0], scale[i1], scale[i2], scale[i3]
            for lane in range(w):
                out[lane] += (s0 * r0[lane] + s1 * r1[lane]) + (s2 * r2[lane] + s3 * r3[lane])
        j += 4
    while j < hi:
        r0 = rows[index[j]]
        if scale is None:
            for lane in range(w):
                out[lane] += r0[lane]
        else:
            s0 = scale[index[j]]
            for lane in range(w):
                out[lane] += s0 * r0[lane]
        j += 1


@numba.njit(fastmath=FLAGS)
def _weights(dc, w, c, ref, u, keep):
    """Σ exp(c·(ref - d)) over a block's lanes (kept in u if `keep`), against the crop's reference distance: the
    block's first distance for a first block (ref = BIG), or the block's minimum where the sum would hold clamped
    terms (a block far closer than the reference; sums below RESHIFT hold none, and no weight is lost against a
    reference above the minimum). Returns (sum, the reference used)."""
    if ref == BIG:
        ref = dc[0]
    total = _exp_sum(dc, w, c, ref, u, keep)
    if total > RESHIFT:
        ref = _block_min(dc, w)
        total = _exp_sum(dc, w, c, ref, u, keep)
    return total, ref


@numba.njit(fastmath=FLAGS)
def _exp_sum(dc, w, c, ref, u, keep):
    total = 0.0
    if keep:
        for lane in range(w):
            u[lane] = _exp(c * (ref - dc[lane]))
            total += u[lane]
    else:
        for lane in range(w):
            total += _exp(c * (ref - dc[lane]))
    return total


@numba.njit
def _block_min(dc, w):
    m = BIG
    for lane in range(w):
        m = min(m, dc[lane])
    return m


@numba.njit(nogil=True, fastmath=FLAGS, cache=True)
def _pass2(zu, pixels, R, k, ptr, members, mult, tptr, tcrops, c, ref, log_s, n_ranges, n_groups, first, last,
           out):
    """Per task (`_task_span`): Σ_n Σ_{C∋p} mult_C w_{bnC} x_{ncp} (x in uint8 units), w = exp(c·(ref - d_n) -
    log s). Square crops spread their weights along each crop row (into a ring of k + 1 rows), then down the
    columns one pixel row at a time, each pixel row multiplied into the images as soon as it is complete; masks
    gather each pixel's crop weights (`_gather_dot`)."""
    B, C, P = zu.shape
    N = pixels.shape[2]
    K = _n_crops(R, k, ptr)
    nW = R - k + 1
    for task in range(first, last):
        lo, hi, b0, b1, r = _task_span(task, n_ranges, n_groups, N, B)
        xb, col, d, ering, _ = _buffers(C, P, R, k, K, len(ptr) > 0)
        ring_rows = k + 1
        ring, wsum = np.empty((ring_rows * R, LANES)), np.empty((2 * R, LANES))
        for n0 in range(lo, hi, LANES):
            w = min(LANES, hi - n0)
            _load(pixels, n0, w, xb)
            for b in range(b0, b1):
                _distances(zu[b], xb, w, R, k, ptr, members, ering, col, d)
                for crop in range(K):
                    base, shift, wc = ref[b, crop], log_s[b, crop], d[crop]
                    for lane in range(w):
                        wc[lane] = _exp(c * (base - wc[lane]) - shift)
                if len(ptr) > 0:
                    _gather_dot(d, mult, tptr, tcrops, xb, w, ering[0], out[r, b])
                    continue
                for i in range(R):
                    if i < nW:  # spread crop row i along the image row into the ring (k + 1 rows are live)
                        row, slot = i * nW, (i % ring_rows) * R
                        for j in range(R):
                            _spread_step(d[row + min(j, nW - 1)], d[row + max(j - k, 0)], w, k, nW, j,
                                         ring[slot + j], ring[slot + j - 1])
                    now, before = (i % 2) * R, ((i + 1) % 2) * R
                    enter, leave = (min(i, nW - 1) % ring_rows) * R, (max(i - k, 0) % ring_rows) * R
                    for j in range(R):
                        _spread_step(ring[enter + j], ring[leave + j], w, k, nW, i, wsum[now + j], wsum[before + j])
                        _dot(wsum[now + j], xb, i * R + j, w, out[r, b])


@numba.njit(fastmath=FLAGS)
def _gather_dot(wts, scale, tptr, tcrops, xb, w, acc, out):
    """Masks, pass 2: per pixel p, acc [LANES] = Σ_{crops ∋ p} scale[crop] · wts[crop] (tcrops[tptr[p] ..
    tptr[p + 1]]: the crops holding p), then out[c, p] += Σ_lanes acc · x_c (this block's images). Gathered per
    pixel, each sum stays in L1 and is used at once (scattering crops onto pixels wrote every row twice)."""
    for p in range(len(tptr) - 1):
        if tptr[p] < tptr[p + 1]:
            _row_sum(wts, tcrops, tptr[p], tptr[p + 1], scale, w, acc)
            _dot(acc, xb, p, w, out)


@numba.njit(nogil=True, fastmath=FLAGS, cache=True)
def _masks_kept(zu, xb, N, ptr, members, mult, tptr, tcrops, c, n_groups, first, last, out):
    """Masks, every image in one range (its N images in blocks xb [blocks, C, P, LANES], `_blocks`): per task (a
    group of latents) and latent, pass 1 keeps each block's weights u = exp(c·(ref_blk - d)) [blocks, K, LANES]
    and the reference ref_blk they were taken against, so pass 2 only rescales them by exp(c·(ref - ref_blk)) / s
    per crop (ref ≤ ref_blk: no overflow) instead of computing the distances and exponentials again. out [1, B, C,
    P] as `_pass2`."""
    B, C, P = zu.shape
    K = len(ptr) - 1
    n_blocks = xb.shape[0]
    for task in range(first, last):
        _, _, b0, b1, r = _task_span(task, 1, n_groups, N, B)
        _, _, d, e, _ = _buffers(C, P, 1, 1, K, True)
        u, used = np.empty((n_blocks, K, LANES)), np.empty((n_blocks, K))
        ref, s, scale = np.empty(K), np.empty(K), np.empty(K)
        for b in range(b0, b1):
            ref[:] = BIG
            s[:] = 0.0
            for blk in range(n_blocks):
                w = min(LANES, N - blk * LANES)
                _mask_distances(zu[b], xb[blk], w, ptr, members, e, d)
                for crop in range(K):
                    old = ref[crop]
                    total, new = _weights(d[crop], w, c, old, u[blk, crop], True)
                    if new != old:
                        s[crop] *= _exp(c * (new - old))
                        ref[crop] = new
                    s[crop] += total
                    used[blk, crop] = new
            for blk in range(n_blocks):
                for crop in range(K):
                    scale[crop] = mult[crop] * _exp(c * (ref[crop] - used[blk, crop])) / s[crop]
                _gather_dot(u[blk], scale, tptr, tcrops, xb[blk], min(LANES, N - blk * LANES), e[0], out[r, b])


@numba.njit(inline="always", fastmath=FLAGS)
def _dot(weight, xb, p, w, out):
    """out[c, p] += Σ_lanes weight · x_c (this block's images at pixel p)."""
    for ch in range(xb.shape[0]):
        xp, acc = xb[ch, p], 0.0
        for lane in range(w):
            acc += weight[lane] * np.float64(xp[lane])
        out[ch, p] += acc


_POOL = None


def _run_tasks(kernel, n_tasks: int, *args) -> None:
    """kernel(*args, first, last, *outputs) over tasks 0 .. n_tasks-1, handed out one at a time to
    torch.get_num_threads() threads (the kernels release the GIL): a thread that the machine deschedules delays
    only the task it holds, not a fixed half of the work. Each task writes its own outputs, so results do not
    depend on the thread count."""
    global _POOL
    threads = max(1, min(torch.get_num_threads(), n_tasks))
    head, outputs = args[:-1], args[-1]
    if threads == 1:
        kernel(*head, 0, n_tasks, *outputs)
        return
    if _POOL is None or _POOL._max_workers < threads:
        from concurrent.futures import ThreadPoolExecutor

        _POOL = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="pspc-cpu")
    tasks = iter(range(n_tasks))  # next() on it is atomic under the GIL
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                task = next(tasks, None)
            if task is None:
                return
            kernel(*head, task, task + 1, *outputs)

    for future in [_POOL.submit(worker) for _ in range(threads)]:
        future.result()


_READY: set = set()


def _ready(kernel, *args) -> None:
    """Compile `kernel` (or load it from numba's cache) on a one-image input `args` before the real call: the
    first use on a machine compiles for ~20 s, said on stderr and interruptible (`first_call`)."""
    first_call(kernel, args, "the PSPC CPU kernel", _READY)


def _members(crops):
    """(ptr, members, mult, tptr, tcrops): the crops' pixels as lists (CSR) for masks, and the crops holding each
    pixel (CSR, the transpose); empty for square crops (window sums)."""
    if isinstance(crops, BoxCrops):
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0), empty, empty
    index = crops.pixel_index.cpu()
    keep = index < crops.coverage.shape[0]  # rows are padded with P
    ptr = np.concatenate([[0], np.cumsum(keep.sum(1).numpy())]).astype(np.int64)
    members = index[keep].numpy().astype(np.int64)
    owner = np.repeat(np.arange(len(ptr) - 1), np.diff(ptr))
    tptr = np.concatenate([[0], np.cumsum(np.bincount(members, minlength=crops.coverage.shape[0]))]).astype(np.int64)
    return ptr, members, crops.multiplicity.cpu().numpy(), tptr, owner[np.argsort(members, kind="stable")]


def _blocks(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels [C, P, N] as blocks [ceil(N / LANES), C, P, LANES], the last one zero-padded (made once per
    call, shared by every task)."""
    C, P, N = pixels.shape
    n_blocks = -(-N // LANES)
    padded = np.zeros((C, P, n_blocks * LANES), np.uint8)
    padded[:, :, :N] = pixels
    return np.ascontiguousarray(padded.reshape(C, P, n_blocks, LANES).transpose(2, 0, 1, 3))


def _uint8_units(z: torch.Tensor) -> np.ndarray:
    """z' = (z + 1)·127.5 [B, C, R²] float64 (numpy: no multi-threaded torch step around the kernels)."""
    B, C = z.shape[:2]
    return (z.detach().reshape(B, C, -1).numpy().astype(np.float64) + 1.0) * UNIT


def two_pass(z: torch.Tensor, pixels: torch.Tensor, crops, c: float) -> np.ndarray:
    """Σ_{C∋p} mult_C Σ_n w_{bnC} x_{ncp} [B, C, P] float64 numpy (x in data units; the caller divides by the
    coverage) for latents z [B, C, R, R], uint8 pixels [C, P, N] on the CPU, crops (BoxCrops or MaskCrops) and
    the logit scale c of uint8 units (ℓ = -c · d)."""
    B, C, R, _ = z.shape
    P, N = R * R, pixels.shape[2]
    zu = _uint8_units(z)  # z' (uint8 units)
    x = pixels.numpy()
    k = getattr(crops, "k", 1)
    ptr, members, mult, tptr, tcrops = _members(crops)
    n_ranges = max(1, min(TASKS, N // RANGE_MIN))  # fixed by N, so results do not depend on the thread count
    n_groups = max(1, min(B, -(-TASK_TARGET // n_ranges)))  # latents split where ranges are few
    n_tasks = n_ranges * n_groups
    K = ptr.shape[0] - 1 if len(ptr) else (R - k + 1) ** 2
    if len(ptr) and n_ranges == 1 and K * -(-N // LANES) * LANES <= KEPT_MAX:
        _ready(_masks_kept, np.zeros((1, C, P)), np.zeros((1, C, P, LANES), np.uint8), 1, ptr[:1], members[:0],
               mult[:0], np.zeros(P + 1, np.int64), tcrops[:0], 1.0, 1, 0, 1, np.zeros((1, 1, C, P)))
        out = np.zeros((1, B, C, P))
        _run_tasks(_masks_kept, n_groups, zu, _blocks(x), N, ptr, members, mult, tptr, tcrops, c, n_groups, (out,))
        return out[0] / UNIT - crops.coverage.cpu().numpy()
    one = (np.zeros((1, C, P)), np.zeros((C, P, 1), np.uint8), R, 1, ptr[:0], members[:0])
    _ready(_pass1, *one, 1.0, 1, 1, 0, 1, np.full((1, 1, P), BIG), np.zeros((1, 1, P)))
    _ready(_pass2, *one, mult[:0], tptr[:0], tcrops[:0], 1.0, np.zeros((1, P)), np.zeros((1, P)), 1, 1, 0, 1,
           np.zeros((1, 1, C, P)))
    ref_t, s_t = np.full((n_ranges, B, K), BIG), np.zeros((n_ranges, B, K))
    _run_tasks(_pass1, n_tasks, zu, x, R, k, ptr, members, c, n_ranges, n_groups, (ref_t, s_t))
    ref = ref_t.min(0)  # every range holds images, so every ref is a distance
    log_s = np.log((s_t * np.exp(c * (ref - ref_t))).sum(0))  # Σ_n exp(c·(ref - d_n)) over all ranges
    out = np.zeros((n_ranges, B, C, P))
    _run_tasks(_pass2, n_tasks, zu, x, R, k, ptr, members, mult, tptr, tcrops, c, ref, log_s, n_ranges, n_groups,
               (out,))
    out = out.sum(0)
    cov = crops.coverage.cpu().numpy()  # = Σ_n W: each crop's weights sum to 1
    return out / UNIT - cov  # Σ_n W (x / 127.5 - 1)


@numba.njit(nogil=True, fastmath=FLAGS, cache=True)
def _one_pass(zu, pixels, R, k, c, n_ranges, first, last, ref, s, acc):
    """Tasks first .. last-1 of (latent, range): per crop, ref, s = Σ_n exp(c·(ref - d_n)) and
    A = Σ_n exp(c·(ref - d_n)) x_{n,C} [k², C] (uint8 units) (ref filled with BIG, s and acc with 0 by the
    caller)."""
    B, C, P = zu.shape
    N = pixels.shape[2]
    nW = R - k + 1
    K = nW * nW
    for task in range(first, last):
        b, r = task // n_ranges, task % n_ranges
        lo, hi = _task_range(r, n_ranges, N)
        xb, col, d, ering, u = _buffers(C, P, R, k, K, False)
        for n0 in range(lo, hi, LANES):
            w = min(LANES, hi - n0)
            _load(pixels, n0, w, xb)
            _crop_distances(zu[b], xb, w, R, k, ering, col, d)
            for crop in range(K):
                old = ref[b, r, crop]
                total, new = _weights(d[crop], w, c, old, u, True)
                if new != old:
                    scale = _exp(c * (new - old))
                    s[b, r, crop] *= scale
                    acc[b, r, crop] *= scale
                    ref[b, r, crop] = new
                s[b, r, crop] += total
                corner = (crop // nW) * R + crop % nW
                for i in range(k):
                    for j in range(k):
                        p = corner + i * R + j
                        for ch in range(C):
                            xp, a = xb[ch, p], 0.0
                            for lane in range(w):
                                a += u[lane] * np.float64(xp[lane])
                            acc[b, r, crop, i * k + j, ch] += a


@numba.njit(inline="always", fastmath=FLAGS)
def _tile3(q0, q1, q2, c0, c1, c2, c3, c4, w, a0, a1, a2, ch):
    """Crops i = 0, 1, 2 (adjacent in a crop row) against one channel of one pixel row: a_i[oj·3 + ch] (an
    offset row's slots) += Σ_l q_i[l] x[col v + i + oj, l]; columns c0 .. c4 are each read once."""
    t00 = t01 = t02 = t10 = t11 = t12 = t20 = t21 = t22 = 0.0
    for l in range(w):
        x0, x1, x2, x3, x4 = c0[l], c1[l], c2[l], c3[l], c4[l]
        u0, u1, u2 = q0[l], q1[l], q2[l]
        t00 += u0 * x0
        t01 += u0 * x1
        t02 += u0 * x2
        t10 += u1 * x1
        t11 += u1 * x2
        t12 += u1 * x3
        t20 += u2 * x2
        t21 += u2 * x3
        t22 += u2 * x4
    _add3(a0, ch, t00, t01, t02)
    _add3(a1, ch, t10, t11, t12)
    _add3(a2, ch, t20, t21, t22)


@numba.njit(inline="always", fastmath=FLAGS)
def _tile3x2(q0, q1, q2, p0, p1, p2, c0, c1, c2, c3, c4, w, a0, a1, a2, b0, b1, b2, ch):
    """`_tile3` for two latents at once (weights q_i into a_i, p_i into b_i): 11 loads per 18 multiply-adds, which
    is all that two floating-point units take in."""
    t00 = t01 = t02 = t10 = t11 = t12 = t20 = t21 = t22 = 0.0
    s00 = s01 = s02 = s10 = s11 = s12 = s20 = s21 = s22 = 0.0
    for l in range(w):
        x0, x1, x2, x3, x4 = c0[l], c1[l], c2[l], c3[l], c4[l]
        u0, u1, u2, v0, v1, v2 = q0[l], q1[l], q2[l], p0[l], p1[l], p2[l]
        t00 += u0 * x0
        t01 += u0 * x1
        t02 += u0 * x2
        t10 += u1 * x1
        t11 += u1 * x2
        t12 += u1 * x3
        t20 += u2 * x2
        t21 += u2 * x3
        t22 += u2 * x4
        s00 += v0 * x0
        s01 += v0 * x1
        s02 += v0 * x2
        s10 += v1 * x1
        s11 += v1 * x2
        s12 += v1 * x3
        s20 += v2 * x2
        s21 += v2 * x3
        s22 += v2 * x4
    _add3(a0, ch, t00, t01, t02)
    _add3(a1, ch, t10, t11, t12)
    _add3(a2, ch, t20, t21, t22)
    _add3(b0, ch, s00, s01, s02)
    _add3(b1, ch, s10, s11, s12)
    _add3(b2, ch, s20, s21, s22)


@numba.njit(inline="always")
def _add3(a, ch, t0, t1, t2):
    a[0, ch] += t0
    a[1, ch] += t1
    a[2, ch] += t2


@numba.njit(inline="always", fastmath=FLAGS)
def _float_row(xb, p, w, xr, slot, j):
    """Pixel p of the block's images in float64 into xr[slot, :, j] (indexed whole: a row taken from a sliced
    view loses numba's knowledge that it is contiguous, and with it the vector code)."""
    for ch in range(xb.shape[0]):
        src = xb[ch, p]
        for l in range(w):
            xr[slot, ch, j, l] = np.float64(src[l])


@numba.njit(inline="always", fastmath=FLAGS)
def _sq_row(xr, slot, j, z, p, w, e):
    """e [lanes] = Σ_c (x_c - z'_c)² for pixel p's float64 values xr[slot, :, j] and the latent's z' [C, P]."""
    if xr.shape[1] == 3:  # RGB in one sweep
        x0, x1, x2, a0, a1, a2 = xr[slot, 0, j], xr[slot, 1, j], xr[slot, 2, j], z[0, p], z[1, p], z[2, p]
        for l in range(w):
            e[l] = (x0[l] - a0) * (x0[l] - a0) + (x1[l] - a1) * (x1[l] - a1) + (x2[l] - a2) * (x2[l] - a2)
        return
    for l in range(w):
        e[l] = 0.0
    for ch in range(xr.shape[1]):
        x, a = xr[slot, ch, j], z[ch, p]
        for l in range(w):
            e[l] += (x[l] - a) * (x[l] - a)


@numba.njit(nogil=True, fastmath=FLAGS, cache=True)
def _one_pass3(zu, pixels, R, c, n_ranges, n_groups, first, last, ref, s, acc):
    """3×3 crops, tasks first .. last-1 (`_task_span`: a group of latents, a range of images), as `_one_pass` (same
    outputs) but fused row by row: each pixel row of a block is converted to float64 once for the whole group and
    each latent's squared differences summed; once three rows are in, each latent's crop-row distances and weights
    follow, then the accumulators while those rows are in L1/L2. Three adjacent crops of two latents share one
    sweep over the lanes (their 3×3 windows span five columns: 11 loads per 18 FMAs)."""
    B, C, P = zu.shape
    N = pixels.shape[2]
    nW = R - 2
    for task in range(first, last):
        lo, hi, b0, b1, r = _task_span(task, n_ranges, n_groups, N, B)
        G = b1 - b0
        xb = np.empty((C, P, LANES), np.uint8)
        xr = np.empty((3, C, R, LANES))  # pixel rows i % 3 in float64
        er = np.empty((G, 3, R, LANES))  # each latent's e = Σ_c (x - z')² on those rows
        col = np.empty((R, LANES))
        d = np.empty((nW, LANES))
        wt = np.empty((G, nW, LANES))
        for n0 in range(lo, hi, LANES):
            w = min(LANES, hi - n0)
            _load(pixels, n0, w, xb)
            for i in range(R):
                slot = i % 3
                for j in range(R):
                    _float_row(xb, i * R + j, w, xr, slot, j)
                for g in range(G):
                    for j in range(R):
                        _sq_row(xr, slot, j, zu[b0 + g], i * R + j, w, er[g, slot, j])
                if i < 2:
                    continue
                cu = i - 2
                for g in range(G):
                    b = b0 + g
                    for j in range(R):
                        cj, e0, e1, e2 = col[j], er[g, 0, j], er[g, 1, j], er[g, 2, j]
                        for l in range(w):
                            cj[l] = e0[l] + e1[l] + e2[l]
                    for v in range(nW):
                        dv, c0, c1, c2 = d[v], col[v], col[v + 1], col[v + 2]
                        for l in range(w):
                            dv[l] = c0[l] + c1[l] + c2[l]
                    for v in range(nW):
                        crop = cu * nW + v
                        old = ref[b, r, crop]
                        total, new = _weights(d[v], w, c, old, wt[g, v], True)
                        if new != old:
                            scale = _exp(c * (new - old))
                            s[b, r, crop] *= scale
                            acc[b, r, crop] *= scale
                            ref[b, r, crop] = new
                        s[b, r, crop] += total
                _crop_row3(xr, wt, cu, nW, w, b0, G, acc, r)


@numba.njit(inline="always", fastmath=FLAGS)
def _crop_row3(xr, wt, cu, nW, w, b0, G, acc, r):
    """Crop row cu of latents b0 .. b0+G-1 (image range r): acc[b, r, crop, oi·3 + oj, ch] += Σ_l wt[b - b0, v, l]
    · x(cu + oi, v + oj, ch)[l], three crops (and two latents) per sweep, then the crops left over one at a time.
    Arrays are indexed whole in the calls: every view held in a variable costs reference counting per call."""
    C = xr.shape[1]
    v = 0
    while v + 2 < nW:
        c0, c1, c2 = cu * nW + v, cu * nW + v + 1, cu * nW + v + 2
        for oi in range(3):
            sl, o = (cu + oi) % 3, 3 * oi
            for ch in range(C):
                g = 0
                while g + 1 < G:
                    b, n = b0 + g, b0 + g + 1
                    _tile3x2(wt[g, v], wt[g, v + 1], wt[g, v + 2], wt[g + 1, v], wt[g + 1, v + 1], wt[g + 1, v + 2],
                             xr[sl, ch, v], xr[sl, ch, v + 1], xr[sl, ch, v + 2], xr[sl, ch, v + 3],
                             xr[sl, ch, v + 4], w, acc[b, r, c0, o:o + 3], acc[b, r, c1, o:o + 3],
                             acc[b, r, c2, o:o + 3], acc[n, r, c0, o:o + 3], acc[n, r, c1, o:o + 3],
                             acc[n, r, c2, o:o + 3], ch)
                    g += 2
                if g < G:
                    b = b0 + g
                    _tile3(wt[g, v], wt[g, v + 1], wt[g, v + 2], xr[sl, ch, v], xr[sl, ch, v + 1], xr[sl, ch, v + 2],
                           xr[sl, ch, v + 3], xr[sl, ch, v + 4], w, acc[b, r, c0, o:o + 3], acc[b, r, c1, o:o + 3],
                           acc[b, r, c2, o:o + 3], ch)
        v += 3
    while v < nW:
        crop = cu * nW + v
        for g in range(G):
            q = wt[g, v]
            for oi in range(3):
                for oj in range(3):
                    for ch in range(C):
                        xp, t = xr[(cu + oi) % 3, ch, v + oj], 0.0
                        for l in range(w):
                            t += q[l] * xp[l]
                        acc[b0 + g, r, crop, oi * 3 + oj, ch] += t
        v += 1


def one_pass_square(z: torch.Tensor, pixels: torch.Tensor, crops, c: float) -> np.ndarray:
    """Σ_{C∋p} Σ_n w_{bnC} x_{ncp} [B, C, P] float64 numpy (x in data units; the caller divides by the coverage),
    as `two_pass`; meant for crops.k ≤ ONE_PASS_MAX_K (exact for any k)."""
    B, C, R, _ = z.shape
    k, nW = crops.k, R - crops.k + 1
    zu = _uint8_units(z)  # z' (uint8 units)
    n_ranges = max(1, min(-(-TASK_TARGET // B), -(-pixels.shape[2] // LANES)))
    K = nW * nW
    _ready(_one_pass, np.zeros((1, C, R * R)), np.zeros((C, R * R, 1), np.uint8), R, 1, 1.0, 1, 0, 1,
           np.full((1, 1, R * R), BIG), np.zeros((1, 1, R * R)), np.zeros((1, 1, R * R, 1, C)))
    if k == 3:  # tasks: pairs of latents x image ranges
        n_groups = -(-B // GROUP)
        n_ranges = max(1, min(-(-TASK_TARGET // n_groups), -(-pixels.shape[2] // LANES)))
    ref, s, acc = np.full((B, n_ranges, K), BIG), np.zeros((B, n_ranges, K)), np.zeros((B, n_ranges, K, k * k, C))
    if k == 3:
        _ready(_one_pass3, np.zeros((1, C, 9)), np.zeros((C, 9, 1), np.uint8), 3, 1.0, 1, 1, 0, 1,
               np.full((1, 1, 1), BIG), np.zeros((1, 1, 1)), np.zeros((1, 1, 1, 9, C)))
        _run_tasks(_one_pass3, n_groups * n_ranges, zu, pixels.numpy(), R, c, n_ranges, n_groups, (ref, s, acc))
    else:
        _run_tasks(_one_pass, B * n_ranges, zu, pixels.numpy(), R, k, c, n_ranges, (ref, s, acc))
    scale = np.exp(c * (ref.min(1, keepdims=True) - ref))  # every range holds images: every ref is a distance
    est = (acc * scale[..., None, None]).sum(1) / (s * scale).sum(1)[..., None, None]  # [B, K, k², C] Σ w x
    est = est.reshape(B, nW, nW, k, k, C)  # crop (u, v), offset (i, j) inside it
    out = np.zeros((B, C, R, R))
    for i in range(k):
        for j in range(k):  # pixel (u + i, v + j) of crop (u, v)
            out[:, :, i : i + nW, j : j + nW] += est[:, :, :, i, j].transpose(0, 3, 1, 2)
    return out.reshape(B, C, R * R) / UNIT - crops.coverage.cpu().numpy()  # each crop's weights sum to 1


def kernel_for(crops):
    """The kernel for a crop family: one pass for small square crops, else two."""
    return one_pass_square if isinstance(crops, BoxCrops) and crops.k <= ONE_PASS_MAX_K else two_pass
