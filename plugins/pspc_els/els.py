"""ELS and boundary-broken ELS (Kamb & Ganguli, ICML 2025): equivariant local score machines.

With h = k // 2 and z_k(p) the k×k window of z centred on pixel p,
    D(z, t)[:, p] = Σ_{n, q} softmax_{n,q}(-‖z_k(p) - x_{n,k}(q)‖² / 2t²) · x_n[:, q],
the softmax taken, exactly, over every training image n and every allowed centre q:
* boundary = 'circular' (ELS): z's window wraps around; q is any centre whose window fits inside the image;
* boundary = 'zeros' (bbELS): windows are zero-padded; along each axis a coordinate at least h from both borders
  takes any such centre, and one within h of a border only its own (so a corner behaves as LS, an edge pixel is
  equivariant along its edge).
The cost per call is O(N·C·R²·W²) for W training windows per axis, whatever k is (`scan_cpu.py`).
"""

from __future__ import annotations

from pspc_core.errors import ParameterError

from .denoiser import LocalScoreDenoiser
from .schedules import RESNET_CIRCULAR, RESNET_ZEROS, T_GRID, scaled

BOUNDARIES = ("circular", "zeros")


class ELS(LocalScoreDenoiser):
    """patch_sizes: one odd size per grid point; default: Kamb & Ganguli's CIFAR-10 ResNet schedule for the
    boundary on its own 20-point grid (`schedules.py`), sizes scaled to the resolution."""

    def __init__(self, dataset, patch_sizes=None, boundary: str = "circular", t_grid=None, t_min: float = 0.002,
                 t_max: float = 80.0, rho: float = 7.0, chunk_size: int | None = None):
        if boundary not in BOUNDARIES:
            raise ParameterError(f"boundary {boundary!r} is not one of {', '.join(BOUNDARIES)}; use circular (ELS) "
                                 "or zeros (boundary-broken ELS)")
        if patch_sizes is None:
            from pspc_core.dataset import as_dataset

            dataset = as_dataset(dataset)
            paper = RESNET_CIRCULAR if boundary == "circular" else RESNET_ZEROS
            patch_sizes = scaled(paper, dataset.resolution)
            t_grid = T_GRID if t_grid is None else t_grid
        super().__init__(dataset, patch_sizes, boundary, t_grid, t_min, t_max, rho, chunk_size)
        self.boundary = boundary
