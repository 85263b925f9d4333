"""The `network` denoiser: D(z, t) = net(z, σ = t) for a trained EDM network.

Conditional networks need a class label per latent: a fixed index, `random` (one class per batch position,
drawn from `label_seed` so that every call of a sampling run conditions latent i on the same class), or
`none` (the official behaviour without labels: an all-zero label row).

A checkpoint saved from a modified EDM (its embedded network source is not that of an official EDM version) is
refused unless `allow_modified_source`: pspc computes official EDM, not the modified function.
"""

from __future__ import annotations

import os

import torch

from pspc_core.denoiser import Denoiser
from pspc_core.errors import ParameterError

from .checkpoint import load_network


class NetworkDenoiser(Denoiser):
    def __init__(self, checkpoint: str | os.PathLike | None = None, class_label="random", force_fp32: bool = False,
                 label_seed: int = 0, allow_modified_source: bool = False, network: torch.nn.Module | None = None):
        if checkpoint is not None and network is not None:
            raise ParameterError("give one of checkpoint (a file) and network (a loaded module), not both")
        if checkpoint is None and network is None:
            raise ParameterError("network needs a checkpoint: pass -p checkpoint=PATH (an EDM .pkl or a pspc "
                                 ".safetensors) or --network-pkl PATH")
        if network is None:
            self.net = load_network(checkpoint, allow_modified_source=bool(allow_modified_source))
        else:
            self.net = network.eval().requires_grad_(False)
        self.resolution = int(self.net.img_resolution)
        self.channels = int(self.net.img_channels)
        self.label_dim = int(self.net.label_dim)
        self.sigma_min = float(self.net.sigma_min)
        self.sigma_max = float(self.net.sigma_max)
        self.force_fp32 = bool(force_fp32)
        self.label_seed = int(label_seed)
        self.class_label = self._check_label(class_label)

    def _check_label(self, label):
        """None, 'random', an index, or (Python API) a sequence/tensor of indices, one per latent."""
        if label is None or (isinstance(label, str) and label.strip().lower() in ("none", "")):
            return None
        if isinstance(label, str) and label.strip().lower() == "random":
            return "random" if self.label_dim else None
        if not self.label_dim:
            raise ParameterError(f"class_label={label!r} given, but this network is unconditional (no labels)")
        if isinstance(label, str):
            try:
                text = label.strip().strip("[]")
                label = [int(v) for v in text.split(",")] if "," in text else int(text)
            except ValueError:
                raise ParameterError(f"class_label must be an index, a list of indices (one per latent), 'random' "
                                     f"or 'none', got {label!r}") from None
        index = torch.as_tensor(label, dtype=torch.long)
        if index.numel() == 0 or index.min() < 0 or index.max() >= self.label_dim:
            raise ParameterError(f"class_label {label!r} is out of range: this network has {self.label_dim} classes "
                                 f"(0..{self.label_dim - 1})")
        return index

    @property
    def use_fp16(self) -> bool:
        """Whether the network runs in float16: the checkpoint asks for it, on CUDA, and fp32 is not forced."""
        return bool(self.net.use_fp16) and not self.force_fp32 and self.device.type == "cuda"

    def class_labels(self, batch: int) -> torch.Tensor | None:
        """One-hot labels [batch, label_dim] for the current setting (None: unconditional or 'none')."""
        if self.class_label is None:
            return None
        if isinstance(self.class_label, str):  # random
            gen = torch.Generator().manual_seed(self.label_seed)
            index = torch.randint(self.label_dim, (batch,), generator=gen)
        else:
            index = self.class_label.expand(batch) if self.class_label.ndim == 0 else self.class_label
            if index.shape != (batch,):
                raise ParameterError(f"class_label holds {index.numel()} labels for a batch of {batch} latents")
        return torch.nn.functional.one_hot(index, self.label_dim).to(self.device, torch.float32)

    def round_sigma(self, sigma):
        """The network's nearest supported noise level (identity except for iDDPM networks)."""
        return self.net.round_sigma(sigma)

    def denoise(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        # A batch at one noise level gets a single σ, as EDM's own sampler passes it: the embedding is then
        # computed once and broadcast, which also reproduces that sampler's arithmetic bit for bit.
        sigma = t[:1] if bool((t == t[0]).all()) else t
        return self.net(z, sigma, self.class_labels(z.shape[0]), force_fp32=self.force_fp32).to(torch.float32)

    def to(self, device) -> "NetworkDenoiser":
        super().to(device)
        self.net.to(self.device)
        return self
