"""PSPC-Square: every pixel averages the posterior means of the k×k windows that hold it, k chosen by t."""

from __future__ import annotations

import torch

from pspc_core.errors import ParameterError
from pspc_core.schedule import GridSchedule

from .composite import PatchDenoiser
from .crops import BoxCrops
from .paper_schedules import scaled_patch_sizes


class PSPCSquare(PatchDenoiser):
    """PSPC-Square (docs/denoisers.md): crops are all k×k windows inside the image, stride 1, no padding.

    patch_sizes  : one k per point of its own grid (`t_grid`, or the EDM grid t_min, t_max, rho); the nearest
                   grid point to t picks k. Default: the paper's CIFAR-10 schedule scaled to the resolution
                   (`scaled_patch_sizes`).
    chunk_size   : latent×image pairs per step of the torch passes (CUDA); bounds memory whatever the dataset
                   size. On the CPU the compiled kernels (`composite_cpu.py`) work in fixed blocks of images.
    The cost per call is O(N·C·R²) per latent whatever k is (running or doubling window sums).
    `scale_sweep(z, t, values)` evaluates many patch sizes at once (`sweep.py`).
    """

    def __init__(self, dataset, patch_sizes=None, t_grid=None, t_min: float = 0.002, t_max: float = 80.0,
                 rho: float = 7.0, chunk_size: int | None = None):
        super().__init__(dataset, chunk_size)
        R = self.resolution
        sizes = scaled_patch_sizes(R) if patch_sizes is None else [int(k) for k in patch_sizes]
        bad = [k for k in sizes if not 1 <= k <= R]
        if bad:
            raise ParameterError(f"patch size {bad[0]} does not fit {R}x{R} images; use sizes from 1 to {R}")
        self.schedule = GridSchedule(sizes, t_grid, t_min, t_max, rho, name="patch_sizes")

    def patch_size(self, t: float) -> int:
        return self.schedule.value(t)

    def crops_for(self, t: float) -> BoxCrops:
        k = self.patch_size(t)
        return self._cached(k, lambda: BoxCrops(self.resolution, k, self.device))

    def scale_sweep(self, z: torch.Tensor, t: float, values) -> torch.Tensor:
        """[V, B, C, R, R]: D(z, t) for each patch size k in `values`, as `PSPCSquare(dataset, patch_sizes=[k])`
        gives; the squared differences and their summed-area table serve every k."""
        from .sweep import square_sweep

        return square_sweep(self, z, t, values)
