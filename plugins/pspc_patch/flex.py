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

    heatmaps    : [L, R, R, R, R] (path to .npy / .safetensors / .npz, or an array), index [t index, y, x, i, j].
                  They attach to their own grid: the one the file stores (`t`, as `pspc heatmaps` writes); else,
                  with one threshold per map and an explicit `t_grid`, that grid (both on one grid, as before);
                  else the EDM grid of L points (t_min, t_max, rho).
    thresholds  : masses λ in (0, 1], a schedule on its own grid (`t_grid`, or the EDM grid of len(thresholds)
                  points); a single value applies at every t. Without `t_grid` give one per heatmap level or a
                  single one. Default: the paper's CIFAR-10 schedule (18 values, for 18-level heatmaps).
    chunk_size  : latent×image pairs per step; bounds memory whatever the dataset size.

    At noise level t the nearest point of each grid picks the heatmap level and the threshold.
    Uncovered pixels: a pixel that no crop holds (possible, since a crop need not contain its own pixel; the
    paper's code returns NaN there) takes the empirical denoiser's estimate, i.e. the whole image is its crop.
    Identical crops are computed once (λ = 1 makes every crop the whole image: the empirical denoiser).
    `scale_sweep(z, t, values)` evaluates many thresholds at once (`sweep.py`).
    """

    def __init__(self, dataset, heatmaps=None, thresholds=None, t_grid=None, t_min: float = 0.002,
                 t_max: float = 80.0, rho: float = 7.0, chunk_size: int | None = None):
        super().__init__(dataset, chunk_size)
        R = self.resolution
        if heatmaps is None:
            raise ParameterError("pspc_flex needs heatmaps for this data: pass -p heatmaps=PATH (compute them with "
                                 "`pspc heatmaps`)")
        hm, meta = load_heatmaps(heatmaps, R)
        L = hm.shape[0]
        lam = list(PAPER_CIFAR10_THRESHOLDS) if thresholds is None else [float(v) for v in thresholds]
        if thresholds is None and L != len(lam):
            raise ParameterError(f"heatmaps hold {L} noise levels but the default (paper) thresholds have "
                                 f"{len(lam)} values; give thresholds for these heatmaps")
        if t_grid is None and len(lam) not in (1, L):
            raise ParameterError(f"heatmaps hold {L} noise levels but thresholds has {len(lam)} values; give one "
                                 "threshold per heatmap level, a single one, or their own grid t_grid")
        bad = [v for v in lam if not 0 < v <= 1]
        if bad:
            raise ParameterError(f"threshold {bad[0]} is outside (0, 1]; use a mass fraction such as 0.3")
        if not bool(torch.isfinite(hm).all()) or bool((hm < 0).any()):
            raise ParameterError("heatmaps hold negative or non-finite values; use absolute sensitivities (≥ 0)")
        if bool((hm.sum((-1, -2)) <= 0).any()):
            raise ParameterError("a heatmap sums to zero, so its crop is undefined; give every pixel a positive map")
        stored = meta.get("t")
        if stored is not None and len(stored) != L:
            raise ParameterError(f"the heatmaps file stores a grid t of {len(stored)} noise levels for {L} maps; "
                                 "re-save it with one noise level per map")
        paired = t_grid if stored is None and t_grid is not None and len(lam) == L else stored
        self.levels = GridSchedule(list(range(L)), paired, t_min, t_max, rho, name="heatmaps")
        # the heatmaps' grid for a single threshold (what `scale_sweep` reproduces): the stored one, else EDM
        self.sweep_levels = GridSchedule(list(range(L)), stored, t_min, t_max, rho, name="heatmaps")
        self.heatmaps = hm
        self.schedule = GridSchedule(lam, t_grid, t_min, t_max, rho, name="thresholds")

    def masks(self, t: float) -> torch.Tensor:
        """Crops for noise level t: bool [R², R²] (row: output pixel y·R + x; columns: kept pixels)."""
        return flex_masks(self.heatmaps[self.levels.index(t)], self.schedule.value(t))

    def crops_for(self, t: float) -> MaskCrops:
        key = (self.levels.index(t), self.schedule.value(t))
        return self._cached(key, lambda: MaskCrops(self.masks(t), self.device))

    def scale_sweep(self, z: torch.Tensor, t: float, values) -> torch.Tensor:
        """[V, B, C, R, R]: D(z, t) for each threshold λ in `values`, as `PSPCFlex(dataset, heatmaps,
        thresholds=[λ])` gives (heatmap level: the nearest point of the heatmaps' own grid); work is shared."""
        from .sweep import flex_sweep

        return flex_sweep(self, z, t, values)
