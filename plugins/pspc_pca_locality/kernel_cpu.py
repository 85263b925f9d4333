"""The masked softmax of PCA-locality on the CPU as compiled loops (numba), float64, ~1e-12 from a float64 oracle.

Each (latent, training image) pair needs, for every output m, d_m = Σ_{n ∈ S_m} e_n with e_n = (z_n - x_n)² and
S_m the mask's column m: Σ_m |S_m| additions, up to 0.87·D² at t = 80 (the masks are dense at large t and a few
percent dense at small t). But the sets of neighbouring outputs are alike, so each column is computed from an
earlier one as d_m = d_p + Σ_{S_m \\ S_p} e - Σ_{S_p \\ S_m} e. Outputs go in raster order, and the parent p of
each is the earlier neighbour (same pixel's earlier channels; every channel of the pixels left, up-left, up and
up-right) whose set differs least, or the empty set: within 6% of a minimum spanning tree over all columns. On
CIFAR-10 (N = 1000, 32x32, τ = 0.05) that is ~30 additions per output at t = 0.01, ~80 at t = 0.3, ~250..280 at
t = 2..5, ~120 at t = 20 and ~80 at t = 80, against 46, 102, 530..1245, 2440 and 2676 members. The masks are
speckled at their edges, not blobs: runs, tiles or cluster centres do no better than this.

The additions are arithmetic, not memory traffic: a task holds a group of up to GROUP latents, and each member's
LANES pixels (uint8, from a block copied to be contiguous) are loaded and converted once for the group, then
one subtraction and one fused multiply-add per latent, as explicit LANES-wide LLVM vectors (numba leaves a
fixed-width lane loop scalar): ~27 G lane-additions per second per core here, where reading a precomputed
float64 row of e per member and latent ran at ~9 G. Only the distances of the last outputs that can still be
parents are kept (a ring of rows).

Precision: e in float64 in uint8 units (z' = (z + 1)·127.5 against the integer pixels); a tree path of length L
adds rounding ~L·1.1e-16 times the distances it passes through, which moves a logit by < 1e-9 at t = 0.002. The
softmax keeps a reference distance per output (its first block's minimum, lowered when a later block comes so
close that exp would overflow) and exponentials are a degree-11 polynomial times 2^n built from its exponent bits
(relative error ≤ 4e-14; it vectorises, unlike exp()).

Work is split into tasks (a group of latents × a range of images, the ranges fixed by N alone) with their own
sums, merged in order, and a latent's arithmetic does not depend on its group: results do not depend on the
thread count or the batch size.

One file on purpose: numba's on-disk cache is invalidated only by changes to the file that defines a cached
function, so helpers shared by cached kernels live beside them.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from pspc_core.runtime.compiling import first_call
from pspc_core.runtime.threads import match_torch_threads

LANES = 32  # images per block (16 lanes: the same time at 5 latents, 0.8-0.9x at 1)
GROUP = 6  # latents per task sharing each member's load and conversion (one accumulator each: 6·LANES/8 of the
# 32 AVX-512 registers; 5 latents as one group: 1.4x over groups of 2 and 3)
RANGES = 8  # image ranges per latent, fixed by N alone (at most one per block)
FLAGS = {"nnan", "nsz", "reassoc", "contract"}  # no NaN in the data; the order of additions is free (in the
# softmax's sums, which every latent runs alike; `_tree_step` sets its own flags)
BIG = 1e300  # "no reference yet"
RESHIFT = 500.0  # a block whose nearest image beats the reference by more (in logits) becomes the reference
LOW = -700.0  # exp(-700) ~ 1e-304: a weight of 0 to float64 and to any output
LOG2E, LN2 = 1.4426950408889634, 0.6931471805599453
UNIT = 127.5
F0, F1, F2, F3, F4, F5, F6, F7, F8, F9, F10, F11 = (1.0 / math.factorial(i) for i in range(12))  # e^r's Taylor series
TWO52, SHIFT = 4503599627370496.0, 4503599627371519.0  # 2^52 and 2^52 + 1023 (`_exp`)
_I64 = ir.IntType(64)


@intrinsic
def _bits(typingctx, x):
    """The IEEE bits of a float64 as an int64 (free, and vectorisable)."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], _I64)

    return types.int64(types.float64), codegen


@intrinsic
def _float_from_bits(typingctx, bits):
    """The float64 whose IEEE bits are the int64 `bits` (vectorisable, unlike a table lookup)."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


def _float_op(name):
    """An intrinsic calling llvm.`name`.f64 on two float64s: numba's max() and min() leave a loop around them
    scalar (a reduction over lanes, or the exponentials' clamp), these vectorise."""

    @intrinsic
    def op(typingctx, a, b):
        def codegen(context, builder, signature, args):
            d = ir.DoubleType()
            return builder.call(cgutils.get_or_insert_function(builder.module, ir.FunctionType(d, [d, d]),
                                                               f"llvm.{name}.f64"), args)

        return types.float64(types.float64, types.float64), codegen

    return op


_fmax, _fmin = _float_op("maxnum"), _float_op("minnum")


@numba.njit(inline="always", fastmath=FLAGS)
def _exp(a):
    """exp(a) for a ≤ RESHIFT (below LOW: ~0): 2^n · e^r, |r| ≤ ln2/2, e^r by its Taylor series to r^11 in
    Estrin's scheme; 2^n from the bits of the exact sum n + SHIFT, whose low mantissa bits hold n + 1023 (no
    float->int conversion, no cancellation for reassociation to undo). Written so that a loop over it vectorises
    (1.4 -> 0.5 ns per exponential here)."""
    a = _fmax(a, LOW)
    n = np.floor(a * LOG2E + 0.5)
    r = a - n * LN2
    r2 = r * r
    r4 = r2 * r2
    low = (F0 + F1 * r) + (F2 + F3 * r) * r2
    mid = (F4 + F5 * r) + (F6 + F7 * r) * r2
    high = (F8 + F9 * r) + (F10 + F11 * r) * r2
    return (low + mid * r4 + high * (r4 * r4)) * _float_from_bits((_bits(n + SHIFT) - _bits(TWO52)) << 52)


@intrinsic
def _tree_step(typingctx, ring, m_off, p_off, xb, zg, group, add_idx, add_lo, add_hi, sub_idx, sub_lo, sub_hi):
    """For g < group (1 ≤ group ≤ GROUP): ring[m_off + g·LANES ...] = ring[p_off + g·LANES ...] (0 if p_off < 0)
    + Σ_add (x_n - z_gn)² - Σ_sub (x_n - z_gn)², as explicit LANES-wide vectors (numba's loops leave a fixed-width
    lane loop scalar). Each member's LANES pixels (uint8, xb [D·LANES]) are loaded and converted once for the
    whole group; z_gn = zg[n·GROUP + g]. Per latent the operations and their order (the parent's distance, then
    one fused multiply-add per member in list order, no reassociation) do not depend on `group`: a latent's
    result does not depend on the batch it came in."""
    sig = types.void(ring, types.int64, types.int64, xb, zg, types.int64, add_idx, types.int64, types.int64,
                     sub_idx, types.int64, types.int64)

    def codegen(context, builder, signature, args):
        arrays = [context.make_array(signature.args[i])(context, builder, args[i]) for i in (0, 3, 4, 6, 9)]
        ring_a, xb_a, zg_a, add_a, sub_a = arrays
        _, m_off, p_off, _, _, group, _, add_lo, add_hi, _, sub_lo, sub_hi = args
        done = builder.append_basic_block("step_done")
        switch = builder.switch(group, done)
        for size in range(1, GROUP + 1):  # code for each group size, so that the accumulators stay in registers
            block = builder.append_basic_block(f"step_{size}")
            switch.add_case(ir.Constant(_I64, size), block)
            builder.position_at_end(block)
            accs = _parent_rows(builder, ring_a, p_off, size)
            _add_members(builder, xb_a, zg_a, add_a, add_lo, add_hi, accs, 1.0)
            _add_members(builder, xb_a, zg_a, sub_a, sub_lo, sub_hi, accs, -1.0)
            for g, acc in enumerate(accs):
                builder.store(builder.load(acc), _vector_at(builder, ring_a, _plus(builder, m_off, g * LANES)), align=8)
            builder.branch(done)
        builder.position_at_end(done)
        return context.get_dummy_value()

    return sig, codegen


def _parent_rows(builder, ring_a, p_off, group):
    """One accumulator per latent of the group, holding the parent's distances (zeros where p_off < 0)."""
    vector = ir.VectorType(ir.DoubleType(), LANES)
    accs = [cgutils.alloca_once_value(builder, ir.Constant(vector, [0.0] * LANES)) for _ in range(group)]
    with builder.if_then(builder.icmp_signed(">=", p_off, ir.Constant(_I64, 0))):
        for g, acc in enumerate(accs):
            builder.store(builder.load(_vector_at(builder, ring_a, _plus(builder, p_off, g * LANES)), align=8), acc)
    return accs


def _add_members(builder, xb_a, zg_a, index_a, lo, hi, accs, sign):
    """accs[g] += sign·(x_n - z_gn)² for the members n = index[lo ... hi), in order, one fused multiply-add each."""
    vector = ir.VectorType(ir.DoubleType(), LANES)
    fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vector, [vector] * 3),
                                         f"llvm.fma.v{LANES}f64")
    with cgutils.for_range_slice(builder, lo, hi, ir.Constant(_I64, 1)) as (i, _):
        n = builder.load(builder.gep(index_a.data, [i]))
        pixels = builder.load(_vector_at(builder, xb_a, builder.mul(n, ir.Constant(_I64, LANES)), ir.IntType(8)),
                              align=1)
        x = builder.uitofp(pixels, vector)
        for g, acc in enumerate(accs):
            z = builder.load(builder.gep(zg_a.data, [_plus(builder, builder.mul(n, ir.Constant(_I64, GROUP)), g)]))
            v = builder.fsub(x, _splat(builder, z), flags=("nnan",))  # flagged: numba's fastmath pass then adds none
            builder.store(builder.call(fma, [v if sign > 0 else builder.fneg(v), v, builder.load(acc)]), acc)


def _vector_at(builder, array, offset, element=ir.DoubleType()):
    """Pointer to the LANES elements of `array` (a numba array struct) from element `offset`, as one vector."""
    return builder.bitcast(builder.gep(array.data, [offset]), ir.VectorType(element, LANES).as_pointer())


def _plus(builder, value, constant):
    """value + constant (int64)."""
    return builder.add(value, ir.Constant(_I64, constant))


def _splat(builder, scalar):
    """A LANES-vector of `scalar`."""
    vector = ir.VectorType(scalar.type, LANES)
    one = builder.insert_element(ir.Constant(vector, ir.Undefined), scalar, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(one, ir.Constant(vector, ir.Undefined),
                                  ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES))


@numba.njit(parallel=True, fastmath=FLAGS, cache=True)
def _softmax_sums(zu, pixels, order, parent, position, add_ptr, add_idx, sub_ptr, sub_idx, c, n_ranges, n_groups,
                  ring_rows):
    """Per (latent, image range, output m): the reference distance ref, s = Σ_k exp(c·(ref - d_km)) and
    a = Σ_k exp(c·(ref - d_km)) x'_km (x' in uint8 units). A task is a group of latents and an image range; the
    distances of the last ring_rows outputs (in `order`) are kept, enough to hold every parent."""
    B, D = zu.shape
    N = pixels.shape[1]
    ref = np.full((B, n_ranges, D), BIG)
    s = np.zeros((B, n_ranges, D))
    acc = np.zeros((B, n_ranges, D))
    for task in numba.prange(n_groups * n_ranges):
        grp, r = task // n_ranges, task % n_ranges
        b0, b1 = grp * B // n_groups, (grp + 1) * B // n_groups
        lo, hi = r * N // n_ranges, (r + 1) * N // n_ranges
        zg = np.zeros(D * GROUP)
        for g in range(b1 - b0):
            for n in range(D):
                zg[n * GROUP + g] = zu[b0 + g, n]
        xb = np.zeros(D * LANES, np.uint8)
        ring = np.zeros(ring_rows * GROUP * LANES)
        for n0 in range(lo, hi, LANES):
            w = min(LANES, hi - n0)
            for n in range(D):  # this block's pixels, contiguous (lanes past w keep old values: finite)
                src = pixels[n, n0 : n0 + w]
                for lane in range(w):
                    xb[n * LANES + lane] = src[lane]
            for j in range(D):
                m = order[j]
                p = parent[m]
                m_off = (j % ring_rows) * GROUP * LANES
                p_off = (position[p] % ring_rows) * GROUP * LANES if p >= 0 else -1
                a0, a1, s0, s1 = add_ptr[j], add_ptr[j + 1], sub_ptr[j], sub_ptr[j + 1]
                _tree_step(ring, m_off, p_off, xb, zg, b1 - b0, add_idx, a0, a1, sub_idx, s0, s1)
                for g in range(b1 - b0):
                    row = m_off + g * LANES
                    _accumulate(ring[row : row + w], xb[m * LANES : m * LANES + w], c, ref[b0 + g, r],
                                s[b0 + g, r], acc[b0 + g, r], m)
    return ref, s, acc


@numba.njit(inline="always", fastmath=FLAGS)
def _accumulate(dm, xm, c, ref, s, acc, m):
    """Add one block's terms exp(c·(ref - d)) and exp(c·(ref - d))·x' for output m, moving the reference to the
    block's nearest image first if it is the first block or beats the reference by more than RESHIFT."""
    nearest = BIG
    for lane in range(len(dm)):
        nearest = _fmin(nearest, dm[lane])
    old = ref[m]
    if old == BIG or c * (old - nearest) > RESHIFT:
        if old != BIG:
            scale = _exp(c * (nearest - old))
            s[m] *= scale
            acc[m] *= scale
        ref[m] = nearest
    base = ref[m]
    total, weighted = 0.0, 0.0
    for lane in range(len(dm)):
        u = _exp(c * (base - dm[lane]))
        total += u
        weighted += u * np.float64(xm[lane])
    s[m] += total
    acc[m] += weighted


class MaskPlan:
    """A mask [D, D] bool [n, m] as a tree of its columns (each from its parent by set differences), ready for
    `__call__` on the CPU."""

    def __init__(self, mask: torch.Tensor, channels: int, resolution: int):
        words = _packed_columns(mask)
        match_torch_threads()
        _ready_plan()
        members = _members(words)
        self.order, self.parent = _raster_tree(words, members, channels, resolution)
        self.add_ptr, self.add_idx, self.sub_ptr, self.sub_idx = _differences(words, self.order, self.parent)
        self.position = np.empty_like(self.order)
        self.position[self.order] = np.arange(len(self.order))
        has = self.parent[self.order] >= 0
        back = np.arange(len(self.order))[has] - self.position[self.parent[self.order][has]]
        self.ring_rows = int(back.max(initial=0)) + 1  # outputs whose distances are kept: every parent's
        self.members = int(members.sum())

    @property
    def additions(self) -> int:
        """Additions per (latent, image) pair: Σ over columns of their differences to their parents."""
        return len(self.add_idx) + len(self.sub_idx)

    def __call__(self, z: torch.Tensor, pixels: torch.Tensor, c: float) -> torch.Tensor:
        """Σ_k softmax_k(-c Σ_n M[n, m] (z_n - x_kn)²) x_km [B, D] float64 for z [B, D] float64 (data units),
        pixels [D, N] uint8 (transposed images), c = 1/(2t²T)."""
        zu = z.add(1).mul(UNIT).numpy()
        x = pixels.numpy()
        cu = c / (UNIT * UNIT)
        n_ranges = max(1, min(RANGES, -(-x.shape[1] // LANES)))
        match_torch_threads()
        _ready(zu.shape[1])
        ref, s, acc = _softmax_sums(zu, x, self.order, self.parent, self.position, self.add_ptr, self.add_idx,
                                    self.sub_ptr, self.sub_idx, cu, n_ranges, -(-zu.shape[0] // GROUP),
                                    self.ring_rows)
        scale = np.exp(cu * (ref.min(1, keepdims=True) - ref))  # every range holds images: every ref is a distance
        out = (acc * scale).sum(1) / (s * scale).sum(1)
        return torch.from_numpy(out / UNIT - 1)


def _packed_columns(mask: torch.Tensor) -> np.ndarray:
    """[D, words] uint64: column m of the mask (output m) as bits, input n at bit n % 64 of word n // 64."""
    packed = np.packbits(mask.T.contiguous().numpy(), axis=1, bitorder="little")
    packed = np.pad(packed, ((0, 0), (0, -packed.shape[1] % 8)))
    return packed.view("<u8")


@intrinsic
def _popcount(typingctx, x):
    """The number of set bits of a uint64 (llvm.ctpop: one instruction)."""

    def codegen(context, builder, signature, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_I64, [_I64]), "llvm.ctpop.i64")
        return builder.call(fn, args)

    return types.int64(types.uint64), codegen


@intrinsic
def _lowest_bit(typingctx, x):
    """The index of the lowest set bit of a nonzero uint64 (llvm.cttz)."""

    def codegen(context, builder, signature, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_I64, [_I64, ir.IntType(1)]),
                                            "llvm.cttz.i64")
        return builder.call(fn, [args[0], ir.Constant(ir.IntType(1), 1)])

    return types.int64(types.uint64), codegen


def _raster_tree(words: np.ndarray, members: np.ndarray, channels: int,
                 resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """(order, parent) for the columns' bits and their member counts: outputs in raster order (row, column, channel)
    and for each the earlier output whose set differs least from its own (-1: the empty set, when that is cheaper).
    Candidates: the same pixel's earlier channels, and every channel of the pixels left, up-left, up and up-right.
    On CIFAR-10 this is within 6% of a minimum spanning tree over all columns. Every parent lies fewer than (R + 2)·C
    outputs back in this order, which bounds the rows of distances the kernel keeps (`ring_rows`)."""
    C, R = channels, resolution
    D = words.shape[0]
    y, x = np.divmod(np.arange(R * R), R)
    cand, valid = [], []
    for dc in range(1, C):  # the same pixel, channel c - dc
        cand.append(np.repeat(np.arange(R * R)[None], C, 0) + (np.arange(C)[:, None] - dc) * R * R)
        valid.append(np.repeat((np.arange(C) >= dc)[:, None], R * R, 1))
    for dy, dx in ((0, -1), (-1, -1), (-1, 0), (-1, 1)):
        ok = (y + dy >= 0) & (x + dx >= 0) & (x + dx < R)
        for c2 in range(C):
            cand.append(np.repeat((c2 * R * R + (y + dy) * R + x + dx)[None], C, 0))
            valid.append(np.repeat(ok[None], C, 0))
    cand = np.stack([a.reshape(D) for a in cand], 1)  # [D, K] indexed by output m = c·R² + y·R + x
    valid = np.stack([a.reshape(D) for a in valid], 1)
    cost = np.where(valid, _set_differences(words, np.where(valid, cand, 0)), np.iinfo(np.int64).max)
    best = cost.argmin(1)
    cheaper = cost[np.arange(D), best] < members
    parent = np.where(cheaper, cand[np.arange(D), best], -1).astype(np.int64)
    order = (np.arange(C)[None, :] * R * R + np.arange(R * R)[:, None]).reshape(D).astype(np.int64)
    return order, parent


@numba.njit(parallel=True, cache=True)
def _set_differences(words, cand):
    """[D, K]: |column m Δ column cand[m, j]| (the additions to make one from the other)."""
    D, K = cand.shape
    out = np.zeros((D, K), np.int64)
    for m in numba.prange(D):
        for j in range(K):
            other = cand[m, j]
            for w in range(words.shape[1]):
                out[m, j] += _popcount(words[m, w] ^ words[other, w])
    return out


@numba.njit(parallel=True, cache=True)
def _members(words):
    """[D]: the number of members of each column."""
    out = np.zeros(words.shape[0], np.int64)
    for m in numba.prange(words.shape[0]):
        for w in range(words.shape[1]):
            out[m] += _popcount(words[m, w])
    return out


@numba.njit(parallel=True, cache=True)
def _differences(words, order, parent):
    """For each column in `order`: the members it has and its parent lacks (added) and the reverse (subtracted),
    as CSR lists (ptr [D + 1], indices ascending), from the columns' bits."""
    D = len(order)
    n_add, n_sub = np.zeros(D + 1, np.int64), np.zeros(D + 1, np.int64)
    for j in numba.prange(D):
        m, p = order[j], parent[order[j]]
        for w in range(words.shape[1]):
            above = words[p, w] if p >= 0 else np.uint64(0)
            n_add[j + 1] += _popcount(words[m, w] & ~above)
            n_sub[j + 1] += _popcount(above & ~words[m, w])
    add_ptr, sub_ptr = np.cumsum(n_add), np.cumsum(n_sub)
    add_idx, sub_idx = np.empty(add_ptr[D], np.int64), np.empty(sub_ptr[D], np.int64)
    for j in numba.prange(D):
        m, p = order[j], parent[order[j]]
        ia, isub = add_ptr[j], sub_ptr[j]
        for w in range(words.shape[1]):
            above = words[p, w] if p >= 0 else np.uint64(0)
            bits = words[m, w] & ~above
            while bits:
                add_idx[ia] = 64 * w + _lowest_bit(bits)
                ia += 1
                bits &= bits - np.uint64(1)
            bits = above & ~words[m, w]
            while bits:
                sub_idx[isub] = 64 * w + _lowest_bit(bits)
                isub += 1
                bits &= bits - np.uint64(1)
    return add_ptr, add_idx, sub_ptr, sub_idx


_READY: set = set()


def _ready_plan() -> None:
    """Compile the plan's kernels (or load them from numba's cache) on a tiny mask first (`first_call`)."""
    words = _packed_columns(torch.ones(2, 2, dtype=torch.bool))
    first_call(_plan_kernels, (words,), "the PCA-locality plan kernels", _READY)


def _plan_kernels(words):
    one = np.zeros(words.shape[0], np.int64)
    return _set_differences(words, one[:, None]), _members(words), _differences(words, one, one - 1)


def _ready(D: int) -> None:
    """Compile the kernel (or load it from numba's cache) on a tiny input first: the first use on a machine
    compiles for a while, said on stderr and interruptible (`first_call`)."""
    one = np.zeros(1, np.int64)
    tiny = (np.zeros((1, 1)), np.zeros((1, 1), np.uint8), np.zeros(1, np.int64), -one, np.zeros(1, np.int64),
            np.zeros(2, np.int64), np.zeros(0, np.int64), np.zeros(2, np.int64), np.zeros(0, np.int64), 1.0, 1, 1,
            1)
    first_call(_softmax_sums, tiny, "the PCA-locality CPU kernel", _READY)
