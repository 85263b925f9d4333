"""PSPC-Flex: one crop per pixel from its gradient-sensitivity heatmap, thresholded by a mass λ chosen by t."""

from __future__ import annotations

import torch

from pspc_core.errors import ParameterError
from pspc_core.schedule import GridSchedule

from .composite import PatchDenoiser
from .crops import MaskCrops
from .heatmap_files import load_heatmaps
from .masks import flex_masks
from .paper_schedules import PAPER_CIFAR10_THRESHOLDS


class PSPCFlex(PatchDenoiser):
    """PSPC-Flex (docs/denoisers.md): pixel (x, y) uses the crop of the most sensitive pixels of h_t[y, x] holding mass λ_t.

    heatmaps    : [L, R, R, R, R] (path to .npy / .safetensors, or an array), index [t index, y, x, i, j].
    thresholds  : L values λ in (0, 1] (default: the paper's CIFAR-10 schedule); heatmaps and thresholds attach
                  to their own L-point grid (`t_grid`, or the EDM grid t_min, t_max, rho) and the nearest grid
                  point to t picks them.
    chunk_size  : latent×image pairs per step; bounds memory whatever the dataset size.

    Uncovered pixels: a pixel that no crop holds (possible, since a crop need not contain its own pixel; the
    paper's code returns NaN there) takes the empirical denoiser's estimate, i.e. the whole image is its crop.
    Identical crops are computed once (λ = 1 makes every crop the whole image: the empirical denoiser).
    """

    def __init__(self, dataset, heatmaps=None, thresholds=None, t_grid=None, t_min: float = 0.002,
                 t_max: float = 80.0, rho: float = 7.0, chunk_size: int | None = None):
        super().__init__(dataset, chunk_size)
        R = self.resolution
        if heatmaps is None:
            raise ParameterError("pspc_flex needs heatmaps for this data: pass -p heatmaps=PATH (compute them with "
                                 "`pspc heatmaps`)")
        hm = load_heatmaps(heatmaps, R)[0]
        lam = list(PAPER_CIFAR10_THRESHOLDS) if thresholds is None else [float(v) for v in thresholds]
        if hm.shape[0] != len(lam):
            given = "the default (paper) thresholds have" if thresholds is None else "thresholds has"
            raise ParameterError(f"heatmaps hold {hm.shape[0]} noise levels but {given} {len(lam)} values; "
                                 "give one threshold per heatmap level")
        bad = [v for v in lam if not 0 < v <= 1]
        if bad:
            raise ParameterError(f"threshold {bad[0]} is outside (0, 1]; use a mass fraction such as 0.3")
        if not bool(torch.isfinite(hm).all()) or bool((hm < 0).any()):
            raise ParameterError("heatmaps hold negative or non-finite values; use absolute sensitivities (≥ 0)")
        if bool((hm.sum((-1, -2)) <= 0).any()):
            raise ParameterError("a heatmap sums to zero, so its crop is undefined; give every pixel a positive map")
        self.heatmaps = hm
        self.schedule = GridSchedule(lam, t_grid, t_min, t_max, rho, name="thresholds")

    def masks(self, t: float) -> torch.Tensor:
        """Crops for noise level t: bool [R², R²] (row: output pixel y·R + x; columns: kept pixels)."""
        i = self.schedule.index(t)
        return flex_masks(self.heatmaps[i], self.schedule.values[i])

    def crops_for(self, t: float) -> MaskCrops:
        i = self.schedule.index(t)
        return self._cached(i, lambda: MaskCrops(self.masks(t), self.device))
