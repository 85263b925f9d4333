"""Every candidate locality scale of PSPC at one noise level in one sweep, sharing the work (`pspc calibrate`).

`scale_sweep(z, t, values)` -> [V, B, C, R, R] float32: for each candidate value v, D(z, t) of the denoiser built
with that single value (PSPCSquare(patch_sizes=[v]), PSPCFlex(thresholds=[v])), to float64 level (measured: the
float32 outputs equal or one float32 step apart, ≤ 3e-8; before that rounding ~3e-15 from the per-candidate
kernels, near-ties at t = 0.002 included). The composite for each candidate is the one of
`composite.py`: d_{bnC} = Σ_{p∈C} e_{bnp}, w = softmax_n(-d / 2t²) per crop, D[p] = Σ_{C∋p} Σ_n w x_n[p] / |{C∋p}|.
What the candidates share:

* the per-pixel squared differences e_{bnp} = Σ_c (z'_{bcp} - x_{ncp})² (float64, uint8 units), computed once per
  latent and image for all candidates;
* PSPC-Square: one integer summed-area table of e (fixed point, exact sums) per latent and image gives every k×k
  window of every k in four lookups; k = R is the empirical denoiser (its own exact float64 path, as for the
  single-k denoiser);
* PSPC-Flex: the crops of every λ are prefixes of the same descending-sensitivity order of each pixel's heatmap
  (`masks.flex_order`; the prefix lengths are read off the very float32 comparisons `flex_masks` makes, so the
  crops are identical, ties included), so one running sum along each order gives all λ's distances. Identical
  crops are merged with their multiplicity and uncovered pixels take the empirical estimate, as PSPCFlex does; a
  λ whose family is the whole image is the empirical denoiser.

Each candidate's crops still need their own softmax normaliser before weights spread back: pass 1 streams the
training set for every crop's reference distance and normaliser, pass 2 streams it again for the weights. Memory
is bounded by the latent group (GROUP), the crops and a chunk of images, never by N. Weights below e^-60 of a
crop's largest are left out of both passes (they change s and the output by < N·1e-26, relative).

CPU: compiled kernels (`sweep_cpu.py`, numba; its docstring bounds the summed-area table's rounding); PSPC-Flex
spreads its weights back with one matrix product per λ (dense, or CSR for small crops). CUDA, or a CPU without
numba: the same maths as whole-tensor torch operations in float64 (`_square_torch`, `_flex_torch`), chunked by
the denoiser's chunk size; kept simple, PSPC-Flex's distances there are one mask product per λ (e is shared, the
prefix walks are not).
"""

from __future__ import annotations

import math
import warnings

import torch

from pspc_core.errors import ParameterError, ShapeError

from .chunking import DEFAULT_CHUNK
from .composite import UNIT, patch_composite
from .crops import BoxCrops, MaskCrops
from .masks import flex_keep, flex_order

F64 = torch.float64
GROUP = 16  # latents per kernel call: bounds the per-crop sums [latents, crops] and the outputs
TASK_TARGET = 16  # latent × image-range tasks per call, at least (fixed by B and N: thread-count independent)
WEIGHT_BUDGET = 1 << 24  # float64 entries of one chunk of PSPC-Flex weights [crops, latents, images] (128 MB)
SPARSE_BELOW = 0.1  # mean crop size / R² under which PSPC-Flex may spread through a CSR matrix


# ---------------------------------------------------------------------------------------------------------------
# Entry points (PSPCSquare.scale_sweep, PSPCFlex.scale_sweep).


def square_sweep(den, z: torch.Tensor, t: float, values) -> torch.Tensor:
    """[V, B, C, R, R]: PSPC-Square at noise level t for each patch size in `values`."""
    z, t = _checked(den, z, t)
    R = den.resolution
    ks = _candidates(values, int)
    bad = [k for k in ks if not 1 <= k <= R]
    if bad:
        raise ParameterError(f"patch size {bad[0]} does not fit {R}x{R} images; sweep sizes from 1 to {R}")
    out = torch.empty(len(ks), *z.shape, device=z.device)
    if R in ks:
        _fill(out, ks, R, _empirical(den, z, t))
    sizes = sorted({k for k in ks if k < R})
    if sizes:
        c = 1.0 / (2.0 * t**2 * UNIT**2)
        if z.device.type == "cpu" and (kernels := _kernels()) is not None:
            num = _square_cpu(kernels, z, den.pixels, R, sizes, c)
        else:
            num = _square_torch(z, den.pixels, R, sizes, c, _chunk(den))
        for k, n in zip(sizes, num):
            cov = _box_coverage(R, k).to(z.device)
            _fill(out, ks, k, ((n / UNIT - cov) / cov).view_as(z).float())
    return out


def flex_sweep(den, z: torch.Tensor, t: float, values) -> torch.Tensor:
    """[V, B, C, R, R]: PSPC-Flex at noise level t for each mass λ in `values` (heatmap level: the nearest point
    of the heatmaps' own grid, as a single-threshold PSPCFlex picks it)."""
    z, t = _checked(den, z, t)
    lams = _candidates(values, float)
    bad = [v for v in lams if not 0 < v <= 1]
    if bad:
        raise ParameterError(f"threshold {bad[0]} is outside (0, 1]; sweep masses such as 0.05, 0.1, ..., 1")
    level = den.sweep_levels.index(t)
    unique = tuple(sorted(set(lams)))
    plan = den._cached(("sweep", level, unique), lambda: FlexPlan(den.heatmaps[level], unique, den.device))
    out = torch.empty(len(lams), *z.shape, device=z.device)
    empirical = _empirical(den, z, t) if plan.needs_empirical else None
    for lam in plan.whole:
        _fill(out, lams, lam, empirical)
    for lam, crops in plan.fallback.items():  # crops that are not prefixes of the order (never seen): one by one
        _fill(out, lams, lam, _composite(den, z, t, crops))
    if plan.families:
        c = 1.0 / (2.0 * t**2 * UNIT**2)
        if z.device.type == "cpu" and (kernels := _kernels()) is not None:
            num = _flex_cpu(kernels, z, den.pixels, plan, c)
        else:
            num = _flex_torch(z, den.pixels, plan, c, _chunk(den))
        for fam, n in zip(plan.families, num):
            res = (n / UNIT - fam.coverage) / torch.where(fam.coverage > 0, fam.coverage, 1.0)
            res = res.view_as(z).float()
            if fam.uncovered.any():
                res.flatten(2)[:, :, fam.uncovered] = empirical.flatten(2)[:, :, fam.uncovered]
            _fill(out, lams, fam.lam, res)
    return out


def _checked(den, z: torch.Tensor, t) -> tuple[torch.Tensor, float]:
    """The denoiser's own argument checks (`Denoiser.__call__`) for latents z and one noise level t."""
    if z.ndim != 4 or z.shape[-1] != z.shape[-2]:
        raise ShapeError(f"z has shape {tuple(z.shape)}; expected [B, C, R, R]")
    if (z.shape[1], z.shape[-1]) != (den.channels, den.resolution):
        raise ShapeError(f"latents are {z.shape[1]}x{z.shape[-1]}x{z.shape[-1]} but the denoiser expects "
                         f"{den.channels}x{den.resolution}x{den.resolution}; use data of the denoiser's size")
    z = z.to(den.device, torch.float32)
    if not bool(torch.isfinite(z).all()):
        raise ShapeError("latents hold NaN or infinite values; pass finite latents")
    t = float(torch.as_tensor(t, dtype=torch.float32))  # the denoisers see t as float32
    if not math.isfinite(t) or t <= 0:
        raise ParameterError(f"noise level t = {t:g} is not a positive finite number; sweep at t > 0")
    return z, t


def _candidates(values, kind) -> list:
    values = [kind(v) for v in values]
    if not values:
        raise ParameterError("no candidate values to sweep; give at least one")
    return values


def _fill(out, keys, key, value) -> None:
    for i, k in enumerate(keys):
        if k == key:
            out[i] = value


def _empirical(den, z, t):
    return den.empirical().denoise(z, torch.full((z.shape[0],), t, device=z.device))


def _composite(den, z, t, crops):
    """One crop family the way `PatchDenoiser._denoise_level` computes it."""
    if crops.whole:
        return _empirical(den, z, t)
    out = patch_composite(z, t, den.pixels, den.images.reshape(den.images.shape[0], -1), crops, _chunk(den))
    if bool(crops.uncovered.any()):
        out.flatten(2)[:, :, crops.uncovered] = _empirical(den, z, t).flatten(2)[:, :, crops.uncovered]
    return out


def _chunk(den) -> int:
    return den.chunk_size or DEFAULT_CHUNK.get(den.device.type, DEFAULT_CHUNK["cpu"])


def _box_coverage(R: int, k: int) -> torch.Tensor:
    """[R²] float64: how many k×k windows hold each pixel (exact small integers)."""
    i = torch.arange(R)
    n = (torch.clamp(i, max=R - k) - torch.clamp(i - k + 1, min=0) + 1).to(F64)
    return (n[:, None] * n[None, :]).flatten()


def _fixed_point_scale(zu: torch.Tensor) -> torch.Tensor:
    """[B] float64 2^q_b, the largest power of two with 2^q_b · E_b ≤ 2^62, E_b = Σ max(z'², (255 - z')²) (with a
    1e-6 margin for e's own rounding) bounding every image's full squared distance: sums of rounded terms ≤ 2^63."""
    E = torch.maximum(zu.square(), (255.0 - zu).square()).flatten(1).sum(1) * (1 + 1e-6)
    return torch.exp2(torch.floor(62.0 - torch.log2(E)))


# ---------------------------------------------------------------------------------------------------------------
# The compiled CPU kernels.


_KERNELS: list = []
_COMPILED: set = set()


def _kernels():
    """The `sweep_cpu` module (numba), or None where numba cannot be imported."""
    if not _KERNELS:
        try:
            from . import sweep_cpu
        except ImportError:
            sweep_cpu = None
        _KERNELS.append(sweep_cpu)
    return _KERNELS[0]


def _call(kernel, *args):
    """kernel(*args) with numba's thread count set from torch's; the first use on a machine compiles (~30 s; numba
    caches the result), said on stderr and interruptible (`first_call`)."""
    from pspc_core.runtime.compiling import first_call
    from pspc_core.runtime.threads import match_torch_threads

    match_torch_threads()
    return first_call(kernel, args, "the PSPC sweep kernels", _COMPILED)


def _units(z: torch.Tensor):
    """z' = (z + 1)·127.5 as float64 numpy [B, C, R²] (the pixels' units)."""
    return z.detach().reshape(z.shape[0], z.shape[1], -1).double().add(1).mul(UNIT)


def _ranges(B: int, N: int, lanes: int) -> int:
    return max(1, min(-(-TASK_TARGET // B), -(-N // lanes)))


def _normalisers(ref_t, s_t, c):
    """Merge per-range (ref, s) [B, ranges, K] in order: ref = min, log s = log Σ_r s_r exp(c·(ref - ref_r))."""
    import numpy as np

    ref = ref_t.min(1)
    return ref, np.log((s_t * np.exp(c * (ref[:, None] - ref_t))).sum(1))


def _square_cpu(kern, z, pixels, R, sizes, c) -> list[torch.Tensor]:
    """Per patch size: Σ_n x_n[p] Σ_{C∋p} w_{nC} [B, C, R²] float64, x in uint8 units."""
    import numpy as np

    zu = _units(z)
    scale = _fixed_point_scale(zu).numpy()
    zu = zu.numpy()
    x = pixels.numpy()
    ks = np.array(sizes, np.int64)
    offsets = np.concatenate([[0], np.cumsum([(R - k + 1) ** 2 for k in sizes])]).astype(np.int64)
    B = zu.shape[0]
    num = np.empty((B, len(sizes)) + zu.shape[1:])
    for g in range(0, B, GROUP):
        sl = slice(g, min(B, g + GROUP))
        n_ranges = _ranges(sl.stop - g, x.shape[2], kern.LANES)
        ref_t, s_t = _call(kern.square_pass1, zu[sl], scale[sl], x, R, ks, offsets, c, n_ranges)
        ref, log_s = _normalisers(ref_t, s_t, c)
        num[sl] = _call(kern.square_pass2, zu[sl], scale[sl], x, R, ks, offsets, c, ref, log_s, n_ranges).sum(1)
    return [torch.from_numpy(num[:, v]) for v in range(len(sizes))]


def _flex_cpu(kern, z, pixels, plan, c) -> list[torch.Tensor]:
    """Per family (λ): Σ_n x_n[p] Σ_{C∋p} mult_C w_{nC} [B, C, R²] float64, x in uint8 units."""
    zu = _units(z).numpy()
    x = pixels.numpy()
    walks = plan.walks
    B, C, P = zu.shape
    N = x.shape[2]
    num = [torch.zeros(B, C, P, dtype=F64) for _ in plan.families]
    for g in range(0, B, GROUP):
        sl = slice(g, min(B, g + GROUP))
        Bg = sl.stop - g
        ref_t, s_t = _call(kern.flex_pass1, zu[sl], x, *walks, plan.n_crops, c, _ranges(Bg, N, kern.LANES))
        ref, log_s = _normalisers(ref_t, s_t, c)
        Bw = max(1, min(Bg, WEIGHT_BUDGET // (plan.n_crops * kern.LANES)))  # latents per chunk of weights
        for h in range(0, Bg, Bw):
            sub = slice(h, min(Bg, h + Bw))
            Bs = sub.stop - h
            step = max(kern.LANES, WEIGHT_BUDGET // (plan.n_crops * Bs) // kern.LANES * kern.LANES)
            for n0 in range(0, N, step):
                n1 = min(N, n0 + step)
                W, active = _call(kern.flex_weights, zu[sl][sub], x, n0, n1, *walks, plan.n_crops, c, ref[sub],
                                  log_s[sub])
                W, active = torch.from_numpy(W), torch.from_numpy(active)
                xs = pixels[:, :, n0:n1].to(F64)  # [C, P, n] uint8 units
                for fam, acc in zip(plan.families, num):
                    acc[g + h : g + sub.stop] += fam.spread(W[fam.rows].view(fam.n_crops, -1), active[fam.rows],
                                                            xs, Bs)
    return num


# ---------------------------------------------------------------------------------------------------------------
# PSPC-Flex: the crops of every λ as prefixes of each pixel's order.


class FlexFamily:
    """One λ's crops: distinct non-empty masks (rows `rows` of the plan's crop numbering), their multiplicity, the
    coverage [R²] float64 and the uncovered pixels; `spread` takes weights back to pixels times the images."""

    def __init__(self, lam, unique, counts, rows: slice, device):
        self.lam, self.rows, self.n_crops = lam, rows, unique.shape[0]
        spread = (unique.to(F64) * counts[:, None].to(F64)).T.contiguous()  # [P, K]: Σ_{C∋p} mult_C ·
        self.coverage = spread.sum(1).to(device)
        self.uncovered = (self.coverage == 0)
        self.nnz = int(unique.sum())
        self.dense = spread.to(device)
        self.csr = None
        if device.type == "cpu" and self.nnz < SPARSE_BELOW * spread.numel():
            with warnings.catch_warnings():  # "sparse CSR support is in beta": products with dense are stable
                warnings.simplefilter("ignore", UserWarning)
                self.csr = spread.to_sparse_csr()
        self.member = unique.to(F64).to(device)  # [K, P] for the torch path's distances

    def spread(self, W, active, xs, B) -> torch.Tensor:
        """Σ_n x_n[c, p] Σ_{C∋p} mult_C W[C, (b, n)] [B, C, P] for weights W [K, B·n] of images xs [C, P, n]: a
        dense product over the crops with a kept weight, or a CSR product over all crops when that is less work."""
        n_active = int(active.sum())
        if not n_active:
            return torch.zeros(B, xs.shape[0], xs.shape[1], dtype=F64, device=xs.device)
        P, n = xs.shape[1], xs.shape[2]
        if self.csr is not None and 4 * self.nnz < n_active * P:
            wbar = self.csr @ W  # [P, B·n]
        elif n_active < 0.5 * self.n_crops:  # a copy of the columns pays only when it halves the product
            idx = active.nonzero().squeeze(1)
            wbar = self.dense.index_select(1, idx) @ W.index_select(0, idx)
        else:
            wbar = self.dense @ W
        return torch.bmm(wbar.view(P, B, n), xs.permute(1, 2, 0)).permute(1, 2, 0)  # [B, C, P]


class FlexPlan:
    """The crops of every mass λ at one heatmap level, arranged for one sweep.

    From `flex_order`: per output pixel q its pixels by ascending sensitivity and the float32 cumulative sums;
    λ keeps positions whose sum is ≥ 1 - λ (`flex_keep`, the exact comparison `flex_masks` makes), a suffix of
    length m_q(λ) since the sums never decrease (checked; a λ where it fails is computed on its own). Per λ the
    masks are merged as MaskCrops merges them (identical rows once, with their count; empty rows dropped), one
    representative pixel per distinct crop. Walks: for each representative q, its pixels by descending
    sensitivity up to the longest of its crops, and its crops by increasing length (`sweep_cpu.flex_pass1`).
    """

    def __init__(self, heatmaps_t: torch.Tensor, lams, device):
        order, cumulative = flex_order(heatmaps_t)
        P = order.shape[0]
        positions = torch.arange(P)
        self.whole, self.fallback, self.families = [], {}, []
        pieces = []  # (representative q, length m, global crop id)
        n_crops = 0
        for lam in lams:
            keep = flex_keep(cumulative, lam)
            m = keep.sum(1)
            masks = torch.zeros_like(keep).scatter_(1, order, keep)
            if not torch.equal(keep, positions[None, :] >= (P - m)[:, None]):
                self.fallback[lam] = MaskCrops(masks, device)
                continue
            unique, inverse, counts = torch.unique(masks, dim=0, return_inverse=True, return_counts=True)
            nonempty = unique.any(1)
            if int(nonempty.sum()) == 1 and bool(unique[nonempty].all()):
                self.whole.append(lam)
                continue
            rep = torch.full((unique.shape[0],), P, dtype=torch.long).scatter_reduce_(0, inverse, positions, "amin")
            rep, unique, counts = rep[nonempty], unique[nonempty], counts[nonempty]
            rows = slice(n_crops, n_crops + len(rep))
            pieces.append(torch.stack([rep, m[rep], torch.arange(rows.start, rows.stop)], 1))
            self.families.append(FlexFamily(lam, unique, counts, rows, torch.device(device)))
            n_crops += len(rep)
        self.n_crops = n_crops
        self.needs_empirical = bool(self.whole) or any(bool(f.uncovered.any()) for f in self.families)
        self.walks = _walks(order, torch.cat(pieces)) if pieces else None


def _walks(order: torch.Tensor, pieces: torch.Tensor):
    """(walk_ptr, walk_pix, crop_ptr, crop_m, crop_id) int64 numpy arrays for `sweep_cpu`: one walk per
    representative pixel q along order[q] reversed (descending sensitivity) up to its longest crop; its crops
    sorted by length."""
    import numpy as np

    key = pieces[:, 0] * (order.shape[0] + 1) + pieces[:, 1]
    pieces = pieces[torch.argsort(key, stable=True)]
    reps, per_rep = torch.unique_consecutive(pieces[:, 0], return_counts=True)
    crop_ptr = torch.cat([torch.zeros(1, dtype=torch.long), per_rep.cumsum(0)])
    longest = pieces[crop_ptr[1:] - 1, 1]
    walk_ptr = torch.cat([torch.zeros(1, dtype=torch.long), longest.cumsum(0)])
    descending = order.flip(1)
    walk_pix = torch.cat([descending[q, :L] for q, L in zip(reps.tolist(), longest.tolist())])
    return tuple(np.ascontiguousarray(a.numpy().astype(np.int64))
                 for a in (walk_ptr, walk_pix, crop_ptr, pieces[:, 1], pieces[:, 2]))


# ---------------------------------------------------------------------------------------------------------------
# Torch passes (CUDA, or a CPU without numba): the same maths, float64, chunked by latent×image pairs.


def _errors(zu: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """e [P, B, n] float64 = Σ_c (z'_cp - x_cp)² for z' [B, C, P] and uint8 pixels v [C, P, n]."""
    x = v.to(F64)
    e = None
    for ch in range(zu.shape[1]):
        diff = zu[:, ch].T[:, :, None] - x[ch][:, None, :]
        e = diff.square_() if e is None else e.addcmul_(diff, diff)
    return e.contiguous()


def _square_distances(zu, scale, v, R, sizes):
    """Per patch size in turn, d [K, B, n] float64 from one integer summed-area table of the rounded e (exact)."""
    e = _errors(zu, v)
    P, B, n = e.shape
    fixed = torch.floor(e * scale[None, :, None] + 0.5).to(torch.int64).view(R, R, B, n)
    table = torch.zeros(R + 1, R + 1, B, n, dtype=torch.int64, device=e.device)
    table[1:, 1:] = fixed.cumsum(0).cumsum(1)
    step = (1.0 / scale)[None, None, :, None]
    for k in sizes:
        win = (table[k:, k:] - table[:-k, k:]) - (table[k:, :-k] - table[:-k, :-k])
        yield (win.to(F64) * step).view(-1, B, n)


def _stream(N: int, B: int, chunk: int):
    n_per = max(1, chunk // B)
    return [(s, min(N, s + n_per)) for s in range(0, N, n_per)]


def _softmax_pass(distances_of, spans, c):
    """Pass 1: per crop family, the minimum distance and normaliser s = Σ_n exp(c·(dmin - d_n)) (float64).
    `distances_of(start, stop)` yields each family's d [K, B, n] in turn (one in memory at a time)."""
    dmin, s = [], []
    for start, stop in spans:
        for i, d in enumerate(distances_of(start, stop)):
            if i == len(dmin):
                dmin.append(torch.full(d.shape[:2], torch.inf, dtype=F64, device=d.device))
                s.append(torch.zeros(d.shape[:2], dtype=F64, device=d.device))
            new = torch.minimum(dmin[i], d.amin(-1))
            s[i] = s[i] * torch.exp(c * (new - dmin[i])) + torch.exp(c * (new.unsqueeze(-1) - d)).sum(-1)
            dmin[i] = new
    return dmin, s


def _square_torch(z, pixels, R, sizes, c, chunk) -> list[torch.Tensor]:
    zu = _units(z)
    scale = _fixed_point_scale(zu)
    B, C, P = zu.shape
    spans = _stream(pixels.shape[2], B, chunk)

    def distances(start, stop):
        return _square_distances(zu, scale, pixels[:, :, start:stop], R, sizes)

    dmin, s = _softmax_pass(distances, spans, c)
    boxes = [BoxCrops(R, k, z.device) for k in sizes]
    num = [torch.zeros(B, C, P, dtype=F64, device=z.device) for _ in sizes]
    for start, stop in spans:
        xs = pixels[:, :, start:stop].to(F64)
        for i, d in enumerate(distances(start, stop)):
            w = torch.exp(c * (dmin[i].unsqueeze(-1) - d)) / s[i].unsqueeze(-1)  # [K, B, n]
            wbar = boxes[i].pixel_sums(w.view(w.shape[0], -1)).view(P, B, -1)
            num[i] += torch.bmm(wbar, xs.permute(1, 2, 0)).permute(1, 2, 0)
    return num


def _flex_torch(z, pixels, plan, c, chunk) -> list[torch.Tensor]:
    zu = _units(z)
    B, C, P = zu.shape
    spans = _stream(pixels.shape[2], B, chunk)

    def distances(start, stop):
        e = _errors(zu, pixels[:, :, start:stop]).view(P, -1)
        return ((f.member @ e).view(f.n_crops, B, -1) for f in plan.families)

    dmin, s = _softmax_pass(distances, spans, c)
    num = [torch.zeros(B, C, P, dtype=F64, device=z.device) for _ in plan.families]
    for start, stop in spans:
        xs = pixels[:, :, start:stop].to(F64)
        for i, (fam, d) in enumerate(zip(plan.families, distances(start, stop))):
            w = torch.exp(c * (dmin[i].unsqueeze(-1) - d)) / s[i].unsqueeze(-1)
            active = torch.ones(fam.n_crops, dtype=torch.bool, device=z.device)
            num[i] += fam.spread(w.view(fam.n_crops, -1), active, xs, B)
    return num
