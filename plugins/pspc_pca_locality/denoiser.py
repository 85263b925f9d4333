"""PCA-locality denoiser (Lukoianov et al., NeurIPS 2025): each output pixel-channel is an empirical posterior
mean over the training set, with distances restricted to the pixels the Wiener filter ties to it:

    D(z, t)_m = Σ_k softmax_k( -Σ_n M_t[n, m] (z_n - x_kn)² / (2t²T) ) x_km

with M_t the thresholded, row-normalised Wiener filter of `masks.py`. The softmax runs over all N images at
once (the authors' streaming version averages per-batch means, which is exact only for a single batch).

Precision: masks in float64 (computed once per noise level and cached); distances and softmax in float64, so
outputs are ~1e-12 from a float64 evaluation of the formula at every t, 0.002 included. On the CPU the sums run
in a compiled kernel that exploits how alike the masks of neighbouring pixels are (`kernel_cpu.py`); elsewhere
one float64 matrix product per chunk of images (`softmax_dense.py`).
"""

from __future__ import annotations

from collections import OrderedDict

import torch

from pspc_core.dataset import Dataset
from pspc_core.denoiser import Denoiser, split_by_t
from pspc_core.errors import ParameterError
from pspc_core.schedule import GridSchedule

from .masks import MaskFile, locality_masks

CACHED_LEVELS = 20  # noise levels whose plans are kept (an 18-step run visits 18; ~10 MB each at 32x32)
DENSE_ENTRIES = {"cpu": 1 << 22, "cuda": 1 << 25}  # latent×image×pixel entries per step of the dense path (×24 bytes)


class PCALocality(Denoiser):
    """PCA-locality denoiser.

    dataset     : training set (N ≥ 2 images; x = v/127.5 - 1).
    threshold   : τ in (0, 1]: entries of the row-normalised Wiener filter kept if at least τ of the largest;
                  one value for every t, or a schedule of values on its own grid (`t_grid`, or the EDM grid
                  t_min, t_max, rho of that many points; the nearest grid point to t picks τ), as fitted by
                  `pspc calibrate`.
    temperature : T > 0, dividing the logits (T = 1: the posterior of the masked distances).
    masks       : optional .npz with t [L] and masks [L, D, D] bool ([input, output]); the mask of the nearest t is
                  used instead of computing one (to reproduce runs whose masks came from elsewhere).
    """

    def __init__(self, dataset: Dataset, threshold=0.05, temperature: float = 1.0, masks: str | None = None,
                 t_grid=None, t_min: float = 0.002, t_max: float = 80.0, rho: float = 7.0):
        taus = _thresholds(threshold if isinstance(threshold, (list, tuple)) else [threshold])
        self.schedule = GridSchedule(taus, t_grid, t_min, t_max, rho, name="threshold")
        if not temperature > 0 or temperature == float("inf"):
            raise ParameterError(f"temperature = {temperature} must be positive and finite; use 1 for the posterior")
        if len(dataset) < 2:
            raise ParameterError("pca_locality needs at least 2 training images (its covariance divides by N - 1)")
        self.resolution, self.channels = dataset.resolution, dataset.channels
        self.dim = self.channels * self.resolution**2
        self.mask_file = MaskFile(masks, self.dim) if masks is not None else None
        self.dataset = dataset
        self.images = dataset.images.reshape(len(dataset), -1)  # uint8 [N, D]
        self.temperature = float(temperature)
        self._plans: OrderedDict = OrderedDict()
        self._sweep = None  # (noise level and thresholds, their plans) of the latest scale_sweep
        self._pixels = None

    def to(self, device) -> "PCALocality":
        super().to(device)
        self.images = self.dataset.images.reshape(len(self.dataset), -1).to(self.device)
        self._plans.clear()
        self._sweep = None
        self._pixels = None
        return self

    def mask(self, t: float) -> torch.Tensor:
        """M_t [D, D] bool [input n, output m] (from the masks file if one was given)."""
        if self.mask_file is not None:
            return self.mask_file.mask(t)[1]
        return self._masks(t, [self.schedule.value(t)])[0]

    def _masks(self, t: float, thresholds) -> list[torch.Tensor]:
        from pspc_gaussian.eigen import covariance_eigen

        _, evals, vecs = covariance_eigen(self.dataset, ddof=1)
        return locality_masks(evals, vecs, t, thresholds)

    def denoise(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return split_by_t(z, t, lambda zt, level: self._apply(self._plan(level), zt, level))

    def scale_sweep(self, z: torch.Tensor, t: float, values) -> torch.Tensor:
        """[V, B, C, R, R]: D(z, t) for each threshold τ in `values`, as this denoiser with threshold=τ gives (a
        masks file serves every τ alike). The Wiener matrix and its largest ratio are computed once per noise level
        for all of them (`pspc calibrate`), and the latest level's plans are kept for its next batch of latents."""
        t = float(torch.tensor(float(t), dtype=torch.float32))  # the level a call sees (t [B] is float32)
        taus = _thresholds(values)
        if self.mask_file is not None:
            return self._apply(self._plan(t), z, t).expand(len(taus), *z.shape).clone()
        key = (t, tuple(taus))
        if self._sweep is None or self._sweep[0] != key:
            self._sweep = None  # the previous level's plans go before the next are built
            self._sweep = (key, [self._plan_of(m) for m in self._masks(t, taus)])
        return torch.stack([self._apply(plan, z, t) for plan in self._sweep[1]])

    def _apply(self, plan, z: torch.Tensor, t: float) -> torch.Tensor:
        """D(z, t) for latents z at one noise level, the mask given by `plan` (`_plan_of`)."""
        c = 1.0 / (2.0 * t * t * self.temperature)
        zf = z.reshape(z.shape[0], -1).double()
        if isinstance(plan, torch.Tensor):
            from .softmax_dense import masked_softmax_dense

            entries = DENSE_ENTRIES.get(self.device.type, DENSE_ENTRIES["cuda"])
            out = masked_softmax_dense(zf, self.images, plan, c, max(1, entries // (zf.shape[0] * self.dim)))
        else:
            if self._pixels is None:
                self._pixels = self.images.T.contiguous()  # [D, N]: the kernel reads images as columns
            out = plan(zf, self._pixels, c)
        return out.to(torch.float32).view_as(z)

    def _plan(self, t: float):
        """The plan of this noise level's mask (`_plan_of`), built once."""
        key = self.mask_file.mask(t)[0] if self.mask_file is not None else float(t)
        if key not in self._plans:
            self._plans[key] = self._plan_of(self.mask(t))
            if len(self._plans) > CACHED_LEVELS:
                self._plans.popitem(last=False)
        self._plans.move_to_end(key)
        return self._plans[key]

    def _plan_of(self, mask: torch.Tensor):
        """What the sums need for this mask: the compiled CPU kernel's plan where numba runs, else the mask."""
        plan = _compiled_plan(mask, self.channels, self.resolution) if self.device.type == "cpu" else None
        return plan if plan is not None else mask.to(self.device)


def _thresholds(values) -> list[float]:
    """The thresholds τ as floats, each in (0, 1] (else a one-line error)."""
    taus = [float(v) for v in values]
    bad = [v for v in taus if not 0 < v <= 1]
    if bad:
        raise ParameterError(f"threshold τ = {bad[0]} is outside (0, 1]; use a fraction such as 0.05")
    return taus


def _compiled_plan(mask: torch.Tensor, channels: int, resolution: int):
    """The compiled CPU kernel's plan for this mask; None where numba cannot be imported."""
    try:
        from .kernel_cpu import MaskPlan
    except ImportError:
        return None
    return MaskPlan(mask, channels, resolution)
