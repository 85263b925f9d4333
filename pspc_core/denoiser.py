"""The denoiser contract: `den(z, t) -> x_hat` on torch tensors, with `.to(device)`.

Plugins may subclass :class:`Denoiser` to get argument checking and device handling for free; any callable with
`.to(device)` is a denoiser too.
"""

from __future__ import annotations

import torch

from .errors import ParameterError, RunError, ShapeError


def batch_t(t, z: torch.Tensor) -> torch.Tensor:
    """t as a float tensor [B] on z's device (a scalar is broadcast to the batch)."""
    t = torch.as_tensor(t, dtype=torch.float32, device=z.device)
    if t.ndim == 0:
        t = t.expand(z.shape[0])
    if t.shape != (z.shape[0],):
        raise ShapeError(f"t has shape {tuple(t.shape)} but z holds {z.shape[0]} latents; pass one t per latent")
    return t


def _first_bad(t: torch.Tensor) -> float:
    bad = ~torch.isfinite(t) | (t <= 0)
    return float(t[bad][0]) if bool(bad.any()) else float(t[0])


def split_by_t(z: torch.Tensor, t: torch.Tensor, fn) -> torch.Tensor:
    """Apply `fn(z_group, t_value)` to each group of latents sharing a noise level, and reassemble in order."""
    values = torch.unique(t)
    if len(values) == 1:
        return fn(z, float(values[0]))
    out = torch.empty_like(z)
    for v in values:
        idx = (t == v).nonzero().squeeze(1)
        out[idx] = fn(z[idx], float(v))
    return out


class Denoiser:
    """Base class: subclasses implement `denoise(z, t)` with z [B, C, R, R] float32 and t [B] float32."""

    device = torch.device("cpu")
    resolution: int | None = None
    channels: int | None = None

    def __call__(self, z: torch.Tensor, t) -> torch.Tensor:
        if z.ndim != 4 or z.shape[-1] != z.shape[-2]:
            raise ShapeError(f"z has shape {tuple(z.shape)}; expected [B, C, R, R]")
        if self.resolution is not None and (z.shape[1], z.shape[-1]) != (self.channels, self.resolution):
            raise ShapeError(
                f"latents are {z.shape[1]}x{z.shape[-1]}x{z.shape[-1]} but the denoiser expects "
                f"{self.channels}x{self.resolution}x{self.resolution}; use data of the denoiser's size"
            )
        z = z.to(self.device, torch.float32)
        t = batch_t(t, z)
        if not bool(torch.isfinite(z).all()):
            raise ShapeError("latents hold NaN or infinite values; pass finite latents")
        if not bool(torch.isfinite(t).all()) or bool((t <= 0).any()):
            raise ParameterError(f"noise level t = {_first_bad(t):g} is not a positive finite number; every denoiser "
                             "needs t > 0 (the sampler's last step t = 0 never calls it)")
        out = self.denoise(z, t)
        bad = ~torch.isfinite(out).flatten(1).all(1)
        if bool(bad.any()):  # said here, not as the sampler's next step's "latents hold NaN"
            raise RunError(f"{type(self).__name__} returned NaN or infinite values at t = {float(t[bad][0]):g} "
                           "from finite latents; check its parameters (a network: its checkpoint and precision)")
        return out

    def denoise(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def to(self, device) -> "Denoiser":
        self.device = torch.device(device)
        return self
