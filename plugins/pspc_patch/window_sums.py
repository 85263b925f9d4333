"""Sliding-window sums along one axis by doubling: no subtraction, so no cancellation, in a few tensor ops.

For a window of length k, sums of 1, 2, 4, … consecutive terms are built by adding shifted copies
(s_2w[i] = s_w[i] + s_w[i + w]), and each window is the sum of the pieces that k's binary digits name. That is
⌊log2 k⌋ + popcount(k) - 1 whole-axis additions whatever the axis length (k = 3: two, k = 23: seven), and every
window sum is a tree of non-negative terms of depth at most that, so its relative error stays within
(⌊log2 k⌋ + popcount(k)) · 2⁻²⁴ in float32 for any k and any magnitudes. Prefix sums (one subtraction per
window) are cheaper per element but cancel catastrophically when a window is small next to the running total,
which is exactly the small-t case that matters.
"""

from __future__ import annotations

import torch


def tree_depth(k: int) -> int:
    """Additions on the longest path to one window sum of length k (bounds its relative rounding error)."""
    return k.bit_length() - 1 + bin(k).count("1") - 1


def window_sums(a: torch.Tensor, k: int, dim: int) -> torch.Tensor:
    """out[u] = Σ_{i<k} a[u + i] along `dim`, u = 0 .. L-k (a new tensor, a's dtype)."""
    L = a.shape[dim]
    n = L - k + 1
    if k == 1:
        return a.narrow(dim, 0, n).clone()
    pieces = []
    power, width, offset = a, 1, 0  # power[i] = Σ_{j<width} a[i + j]
    while True:
        if k & width:
            pieces.append(power.narrow(dim, offset, n))
            offset += width
        if 2 * width > k:
            break
        m = min(power.shape[dim] - width, n + k - 2 * width)  # entries the wider pieces still need
        power = torch.add(power.narrow(dim, 0, m), power.narrow(dim, width, m))
        width *= 2
    if len(pieces) == 1:
        return pieces[0]  # k a power of two: the last doubling is the answer (a fresh tensor)
    out = torch.add(pieces[0], pieces[1])
    for piece in pieces[2:]:
        out += piece
    return out


def spread_sums(w: torch.Tensor, k: int, dim: int) -> torch.Tensor:
    """Transpose of `window_sums`: out[i] = Σ_{u ≤ i < u + k} w[u] along `dim`, i = 0 .. n+k-2.

    Window sums of length k over w padded with k-1 zeros on both sides: the same tree, the same error bound.
    """
    if k == 1:
        return w.clone()
    shape = list(w.shape)
    n = shape[dim]
    shape[dim] = n + 2 * (k - 1)
    padded = w.new_zeros(shape)
    padded.narrow(dim, k - 1, n).copy_(w)
    return window_sums(padded, k, dim)
