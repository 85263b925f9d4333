"""DhariwalUNet: the ADM architecture of Dhariwal & Nichol (2021) as EDM configures it.

Blocks use adaptive scale/shift, 64 channels per attention head (so a level with fewer than 64 channels has no
attention layers even where attention is asked for), and resampling skips without a projection. The class
embedding is added after the second mapping layer, without the √label_dim scaling SongUNet applies.
Layer names follow the official `DhariwalUNet`.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .layers import Conv2d, GroupNorm, Linear, PositionalEmbedding
from .unet_block import UNetBlock


class DhariwalUNet(nn.Module):
    def __init__(self, img_resolution: int,            # image resolution R
                 in_channels: int,                     # image channels in
                 out_channels: int,                    # image channels out (2× under iDDPMPrecond)
                 label_dim: int = 0,                   # class labels; 0 = unconditional
                 augment_dim: int = 0,                 # augmentation labels; 0 = none
                 model_channels: int = 192,            # base channel count Cm
                 channel_mult=(1, 2, 3, 4),            # channels per level, times Cm
                 channel_mult_emb: int = 4,            # embedding width, times Cm
                 num_blocks: int = 3,                  # residual blocks per level
                 attn_resolutions=(32, 16, 8),         # resolutions with self-attention
                 dropout: float = 0.10,                # dropout inside blocks (inactive in eval)
                 label_dropout: float = 0):            # training-time label dropout (unused here)
        super().__init__()
        self.label_dropout = label_dropout
        emb_channels = model_channels * channel_mult_emb
        block = dict(emb_channels=emb_channels, channels_per_head=64, dropout=dropout)

        # Mapping (map_label is registered after map_layer1, as in the official state_dict).
        self.map_noise = PositionalEmbedding(model_channels)
        self.map_augment = Linear(augment_dim, model_channels, bias=False) if augment_dim else None
        self.map_layer0 = Linear(model_channels, emb_channels)
        self.map_layer1 = Linear(emb_channels, emb_channels)
        self.map_label = Linear(label_dim, emb_channels, bias=False) if label_dim else None

        # Encoder.
        self.enc = nn.ModuleDict()
        cout = in_channels
        for level, mult in enumerate(channel_mult):
            res = img_resolution >> level
            if level == 0:
                cin, cout = cout, model_channels * mult
                self.enc[f"{res}x{res}_conv"] = Conv2d(cin, cout, kernel=3)
            else:
                self.enc[f"{res}x{res}_down"] = UNetBlock(cout, cout, down=True, **block)
            for idx in range(num_blocks):
                cin, cout = cout, model_channels * mult
                self.enc[f"{res}x{res}_block{idx}"] = UNetBlock(cin, cout, attention=res in attn_resolutions, **block)
        skips = [m.out_channels for m in self.enc.values()]

        # Decoder.
        self.dec = nn.ModuleDict()
        for level, mult in reversed(list(enumerate(channel_mult))):
            res = img_resolution >> level
            if level == len(channel_mult) - 1:
                self.dec[f"{res}x{res}_in0"] = UNetBlock(cout, cout, attention=True, **block)
                self.dec[f"{res}x{res}_in1"] = UNetBlock(cout, cout, **block)
            else:
                self.dec[f"{res}x{res}_up"] = UNetBlock(cout, cout, up=True, **block)
            for idx in range(num_blocks + 1):
                cin, cout = cout + skips.pop(), model_channels * mult
                self.dec[f"{res}x{res}_block{idx}"] = UNetBlock(cin, cout, attention=res in attn_resolutions, **block)
        self.out_norm = GroupNorm(cout)
        self.out_conv = Conv2d(cout, out_channels, kernel=3)

    def forward(self, x: torch.Tensor, noise_labels: torch.Tensor, class_labels: torch.Tensor | None,
                augment_labels: torch.Tensor | None = None) -> torch.Tensor:
        # Mapping.
        emb = self.map_noise(noise_labels)
        if self.map_augment is not None and augment_labels is not None:
            emb = emb + self.map_augment(augment_labels)
        emb = F.silu(self.map_layer0(emb))
        emb = self.map_layer1(emb)
        if self.map_label is not None:
            emb = emb + self.map_label(class_labels)
        emb = F.silu(emb)

        # Encoder: every output goes on the skip stack.
        skips = []
        for layer in self.enc.values():
            x = layer(x, emb) if isinstance(layer, UNetBlock) else layer(x)
            skips.append(x)

        # Decoder: concatenate a skip wherever a block expects more channels.
        for layer in self.dec.values():
            if x.shape[1] != layer.in_channels:
                x = torch.cat([x, skips.pop()], dim=1)
            x = layer(x, emb)
        return self.out_conv(F.silu(self.out_norm(x)))
