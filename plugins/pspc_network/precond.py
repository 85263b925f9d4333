"""The EDM preconditioners: D(x; σ) = c_skip(σ)·x + c_out(σ)·F(c_in(σ)·x; c_noise(σ), y).

EDMPrecond is Karras et al. (2022) Table 1's own choice; VPPrecond, VEPrecond and iDDPMPrecond express the
DDPM++ (VP), NCSN++ (VE) and improved-DDPM (ADM) formulations in the same form. Each owns the inner network
F as `model`, so every weight lives under `model.` in the state_dict (iDDPMPrecond adds its buffer `u`).
Formulas and constructor defaults are those of EDM's `training/networks.py`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .dhariwal import DhariwalUNet
from .songunet import SongUNet

MODEL_TYPES = {"SongUNet": SongUNet, "DhariwalUNet": DhariwalUNet}


class Precond(nn.Module):
    """What the four preconditioners share: label handling, the fp16 switch and the D(x; σ) formula."""

    out_channels_factor = 1

    def __init__(self, img_resolution: int, img_channels: int, label_dim: int = 0, use_fp16: bool = False,
                 model_type: str = "SongUNet", **model_kwargs):
        super().__init__()
        if model_type not in MODEL_TYPES:
            raise ValueError(f"model_type must be one of {', '.join(MODEL_TYPES)}, got {model_type!r}")
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.label_dim = label_dim
        self.use_fp16 = use_fp16
        self.model = MODEL_TYPES[model_type](img_resolution=img_resolution, in_channels=img_channels,
                                             out_channels=img_channels * self.out_channels_factor,
                                             label_dim=label_dim, **model_kwargs)

    def scalings(self, sigma: torch.Tensor):
        """(c_skip, c_out, c_in, c_noise) for σ of shape [N, 1, 1, 1], float32."""
        raise NotImplementedError

    def round_sigma(self, sigma):
        """The nearest noise level the network supports (identity except for iDDPM)."""
        return torch.as_tensor(sigma)

    def forward(self, x: torch.Tensor, sigma, class_labels: torch.Tensor | None = None, force_fp32: bool = False,
                **model_kwargs) -> torch.Tensor:
        x = x.to(torch.float32)
        sigma = torch.as_tensor(sigma, device=x.device).to(torch.float32).reshape(-1, 1, 1, 1)
        if self.label_dim == 0:
            class_labels = None
        elif class_labels is None:  # the official "no label": a zero row, broadcast over the batch
            class_labels = torch.zeros([1, self.label_dim], device=x.device)
        else:
            class_labels = class_labels.to(torch.float32).reshape(-1, self.label_dim)
        use_fp16 = self.use_fp16 and not force_fp32 and x.device.type == "cuda"
        dtype = torch.float16 if use_fp16 else torch.float32

        c_skip, c_out, c_in, c_noise = self.scalings(sigma)
        F_x = self.model((c_in * x).to(dtype), c_noise.flatten(), class_labels=class_labels, **model_kwargs)
        return c_skip * x + c_out * F_x[:, : self.img_channels].to(torch.float32)


class EDMPrecond(Precond):
    """c_skip = σ_d²/(σ² + σ_d²), c_out = σ·σ_d/√(σ² + σ_d²), c_in = 1/√(σ² + σ_d²), c_noise = ln(σ)/4."""

    def __init__(self, img_resolution, img_channels, label_dim=0, use_fp16=False,
                 sigma_min=0,                 # lowest supported noise level
                 sigma_max=float("inf"),      # highest supported noise level
                 sigma_data=0.5,              # standard deviation of the training data
                 model_type="DhariwalUNet", **model_kwargs):
        super().__init__(img_resolution, img_channels, label_dim, use_fp16, model_type, **model_kwargs)
        self.sigma_min = sigma_min
        self.sigma_max = sigma_max
        self.sigma_data = sigma_data

    def scalings(self, sigma):
        sd = self.sigma_data
        c_skip = sd ** 2 / (sigma ** 2 + sd ** 2)
        c_out = sigma * sd / (sigma ** 2 + sd ** 2).sqrt()
        c_in = 1 / (sd ** 2 + sigma ** 2).sqrt()
        c_noise = sigma.log() / 4
        return c_skip, c_out, c_in, c_noise


class VPPrecond(Precond):
    """Variance preserving: c_skip = 1, c_out = -σ, c_in = 1/√(σ² + 1), c_noise = (M - 1)·t(σ)."""

    def __init__(self, img_resolution, img_channels, label_dim=0, use_fp16=False,
                 beta_d=19.9,                 # extent of the noise level schedule
                 beta_min=0.1,                # initial slope of the noise level schedule
                 M=1000,                      # original number of timesteps in the DDPM formulation
                 epsilon_t=1e-5,              # minimum t: sigma_min = σ(epsilon_t)
                 model_type="SongUNet", **model_kwargs):
        super().__init__(img_resolution, img_channels, label_dim, use_fp16, model_type, **model_kwargs)
        self.beta_d = beta_d
        self.beta_min = beta_min
        self.M = M
        self.epsilon_t = epsilon_t
        self.sigma_min = float(self.sigma(epsilon_t))
        self.sigma_max = float(self.sigma(1))

    def sigma(self, t):
        """σ(t) = √(exp(½β_d t² + β_min t) - 1), in float32 for a Python number."""
        t = torch.as_tensor(t)
        return ((0.5 * self.beta_d * (t ** 2) + self.beta_min * t).exp() - 1).sqrt()

    def sigma_inv(self, sigma):
        """t(σ) = (√(β_min² + 2β_d ln(1 + σ²)) - β_min) / β_d."""
        sigma = torch.as_tensor(sigma)
        return ((self.beta_min ** 2 + 2 * self.beta_d * (1 + sigma ** 2).log()).sqrt() - self.beta_min) / self.beta_d

    def scalings(self, sigma):
        c_skip = 1
        c_out = -sigma
        c_in = 1 / (sigma ** 2 + 1).sqrt()
        c_noise = (self.M - 1) * self.sigma_inv(sigma)
        return c_skip, c_out, c_in, c_noise


class VEPrecond(Precond):
    """Variance exploding: c_skip = 1, c_out = σ, c_in = 1, c_noise = ln(σ/2)."""

    def __init__(self, img_resolution, img_channels, label_dim=0, use_fp16=False,
                 sigma_min=0.02,              # lowest supported noise level
                 sigma_max=100,               # highest supported noise level
                 model_type="SongUNet", **model_kwargs):
        super().__init__(img_resolution, img_channels, label_dim, use_fp16, model_type, **model_kwargs)
        self.sigma_min = sigma_min
        self.sigma_max = sigma_max

    def scalings(self, sigma):
        c_skip = 1
        c_out = sigma
        c_in = 1
        c_noise = (0.5 * sigma).log()
        return c_skip, c_out, c_in, c_noise


class iDDPMPrecond(Precond):
    """Improved DDPM: σ is snapped to the M + 1 levels u_j; c_noise = M - 1 - j, c_out = -σ, c_in = 1/√(σ² + 1).

    The inner network predicts 2·img_channels channels (mean and variance); D uses the first img_channels.
    """

    out_channels_factor = 2

    def __init__(self, img_resolution, img_channels, label_dim=0, use_fp16=False,
                 C_1=0.001,                   # timestep adjustment at low noise levels
                 C_2=0.008,                   # timestep adjustment at high noise levels
                 M=1000,                      # original number of timesteps in the DDPM formulation
                 model_type="DhariwalUNet", **model_kwargs):
        super().__init__(img_resolution, img_channels, label_dim, use_fp16, model_type, **model_kwargs)
        self.C_1 = C_1
        self.C_2 = C_2
        self.M = M
        u = torch.zeros(M + 1)
        for j in range(M, 0, -1):  # u_M = 0, u_{j-1} = √((u_j² + 1) / max(ᾱ(j-1)/ᾱ(j), C_1) - 1)
            u[j - 1] = ((u[j] ** 2 + 1) / (self.alpha_bar(j - 1) / self.alpha_bar(j)).clip(min=C_1) - 1).sqrt()
        self.register_buffer("u", u)
        self.sigma_min = float(u[M - 1])
        self.sigma_max = float(u[0])

    def alpha_bar(self, j):
        """ᾱ(j) = sin²(π j / (2 M (C_2 + 1))), in float32."""
        j = torch.as_tensor(j)
        return (0.5 * math.pi * j / self.M / (self.C_2 + 1)).sin() ** 2

    def level_index(self, sigma) -> torch.Tensor:
        """j*(σ) = argmin_j |σ - u_j| (first on ties), computed as the official code does (torch.cdist)."""
        sigma = torch.as_tensor(sigma)
        flat = sigma.to(self.u.device).to(torch.float32).reshape(1, -1, 1)
        return torch.cdist(flat, self.u.reshape(1, -1, 1)).argmin(2).reshape(sigma.shape).to(sigma.device)

    def round_sigma(self, sigma):
        sigma = torch.as_tensor(sigma)
        return self.u[self.level_index(sigma).flatten().to(self.u.device)].to(sigma.dtype).reshape(sigma.shape).to(sigma.device)

    def scalings(self, sigma):
        c_skip = 1
        c_out = -sigma
        c_in = 1 / (sigma ** 2 + 1).sqrt()
        c_noise = self.M - 1 - self.level_index(sigma).to(torch.float32)
        return c_skip, c_out, c_in, c_noise


PRECONDITIONERS = {cls.__name__: cls for cls in (EDMPrecond, VPPrecond, VEPrecond, iDDPMPrecond)}
