"""LS (Kamb & Ganguli, ICML 2025): the local score machine, each pixel's window compared at its own place only.

With h = k // 2 and z_k(p), x_{n,k}(p) the zero-padded k×k windows centred on pixel p,
    D(z, t)[:, p] = Σ_n softmax_n(-‖z_k(p) - x_{n,k}(p)‖² / 2t²) · x_n[:, p],
exactly, over every training image n. The cost per call is O(N·C·R²) whatever k is (`scan_cpu.py`).
"""

from __future__ import annotations

from .denoiser import LocalScoreDenoiser
from .schedules import RESNET_ZEROS, T_GRID, scaled


class LS(LocalScoreDenoiser):
    """patch_sizes: one odd size per grid point; default: Kamb & Ganguli's CIFAR-10 ResNet zero-padding schedule on
    its own 20-point grid (`schedules.py`), sizes scaled to the resolution."""

    def __init__(self, dataset, patch_sizes=None, t_grid=None, t_min: float = 0.002, t_max: float = 80.0,
                 rho: float = 7.0, chunk_size: int | None = None):
        if patch_sizes is None:
            from pspc_core.dataset import as_dataset

            dataset = as_dataset(dataset)
            patch_sizes = scaled(RESNET_ZEROS, dataset.resolution)
            t_grid = T_GRID if t_grid is None else t_grid
        super().__init__(dataset, patch_sizes, "ls", t_grid, t_min, t_max, rho, chunk_size)
