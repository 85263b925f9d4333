"""Numba's thread count, set from torch's before each compiled kernel runs."""

from __future__ import annotations


def match_torch_threads() -> None:
    """Numba's parallel loops run on as many threads as torch's (at most numba's pool): `torch.set_num_threads`
    and `--threads` bound every kernel alike."""
    import numba
    import torch

    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
