"""The locality scales `pspc calibrate` tries for PSPC, per noise level: every patch size for PSPC-Square, a grid
of masses λ for PSPC-Flex. Light (the hooks name these functions; they run only when calibrating)."""

from __future__ import annotations


def square_candidates(dataset) -> list[int]:
    """Every patch size 1..R (at most 48 of them, evenly spread, for larger images; R itself always)."""
    R = dataset.resolution
    if R <= 48:
        return list(range(1, R + 1))
    return sorted({max(1, round(1 + i * (R - 1) / 47)) for i in range(48)})


def flex_candidates(dataset) -> list[float]:
    """Masses λ = 0.05, 0.10, ..., 1.0 (λ = 1: every crop is the whole image)."""
    return [round(0.05 * i, 2) for i in range(1, 21)]
