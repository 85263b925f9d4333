"""Local score machines as denoisers: one patch size per noise level, latents grouped by t, the exact kernels.

Every output pixel is the posterior mean of its centre under a softmax over the training windows it may be
compared with (`plan.py` says which); the patch size comes from a schedule on its own grid of noise levels
(nearest grid point, as for PSPC-Square). On the CPU the compiled kernel runs (`scan_cpu.py`); on CUDA, or where
numba cannot be imported, the torch one (`scan_torch.py`). Both evaluate the logits in float64.
"""

from __future__ import annotations

import torch

from pspc_core.denoiser import Denoiser, split_by_t
from pspc_core.errors import ParameterError
from pspc_core.schedule import GridSchedule

from .plan import axis_plan

DEFAULT_CHUNK = {"cpu": 64, "cuda": 1024}  # latent×image pairs per step of the torch path (~1.3 MB each at 32×32)


class LocalScoreDenoiser(Denoiser):
    """Shared by `els` and `ls`: the dataset, the patch-size schedule, devices and the choice of kernel.

    model       : 'circular' (ELS), 'zeros' (boundary-broken ELS) or 'ls' (position-locked windows).
    patch_sizes : odd sizes 1..R, one per point of the schedule's grid (`t_grid`, or the EDM grid t_min, t_max,
                  rho); a single size serves every t.
    chunk_size  : latent×image pairs per step of the torch path (default: 64 on CPU, 1024 on CUDA); the compiled
                  CPU kernel works in fixed blocks of images. Memory is bounded whatever N is.
    """

    def __init__(self, dataset, patch_sizes, model: str, t_grid=None, t_min: float = 0.002, t_max: float = 80.0,
                 rho: float = 7.0, chunk_size: int | None = None):
        from pspc_core.dataset import as_dataset

        if chunk_size is not None and int(chunk_size) < 1:
            raise ParameterError(f"chunk_size must be at least 1, got {chunk_size}")
        sizes = [int(k) for k in patch_sizes]
        for k in sizes:
            if k % 2 == 0:
                raise ParameterError(f"patch size {k} is even; windows are centred on a pixel: use odd sizes "
                                     "(1, 3, 5, ...)")
        self.dataset = as_dataset(dataset)
        self.resolution, self.channels = self.dataset.resolution, self.dataset.channels
        R = self.resolution
        for k in sizes:
            if not 1 <= k <= R:
                raise ParameterError(f"patch size {k} does not fit {R}x{R} images; use odd sizes from 1 to "
                                     f"{R if R % 2 else R - 1}")
        self.schedule = GridSchedule(sizes, t_grid, t_min, t_max, rho, name="patch_sizes")
        self.model = model
        self.chunk_size = None if chunk_size is None else int(chunk_size)
        self.images = self.dataset.images  # uint8 [N, C, R, R], moved to the device once by .to()
        self._plans: dict = {}
        self._lanes_last = None  # the compiled kernel's layout [C, R, R, N], made on first use

    def patch_size(self, t: float) -> int:
        return self.schedule.value(t)

    def to(self, device) -> "LocalScoreDenoiser":
        super().to(device)
        self.images = self.dataset.images.to(self.device)
        return self

    def denoise(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return split_by_t(z, t, self._denoise_level)

    def _denoise_level(self, z: torch.Tensor, t: float) -> torch.Tensor:
        k = self.patch_size(t)
        if k not in self._plans:
            self._plans[k] = axis_plan(self.resolution, k, self.model)
        plan = self._plans[k]
        if z.device.type == "cpu" and (compiled := _compiled()) is not None:
            if self._lanes_last is None:
                self._lanes_last = compiled.lanes_last(self.images.cpu())
            out = compiled.scan(z, self._lanes_last, plan, t)
        else:
            from .scan_torch import scan

            chunk = self.chunk_size or DEFAULT_CHUNK.get(z.device.type, DEFAULT_CHUNK["cuda"])
            out = scan(z, self.images, plan, t, chunk)
        return out.to(device=z.device, dtype=torch.float32)


def _compiled():
    """The compiled CPU kernel's module (`scan_cpu`, numba, imported on first use); None where numba cannot be
    imported."""
    try:
        from . import scan_cpu
    except ImportError:
        return None
    return scan_cpu
