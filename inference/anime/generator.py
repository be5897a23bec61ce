"""The AnimeGAN2 generator, written for easel, laid out so the published checkpoints load strictly.

The module tree mirrors the upstream checkpoints' key names (``block_a`` .. ``block_e``,
``out_layer``, inverted residual ``layers``). Weightless padding and activation layers still take
their slots in each ``nn.Sequential``, which is why a conv is ``.1`` and its norm ``.2``.
``tests/data/animegan2_state_dict.tsv`` lists every key and shape a checkpoint holds.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

Padding = int | tuple[int, int, int, int]
# Stride-2 convs pad only right and bottom (left, right, top, bottom), as the checkpoints were trained.
RIGHT_BOTTOM: Padding = (0, 1, 0, 1)


class ConvNormLReLU(nn.Sequential):
    """Four slots: [0] reflection padding, [1] Conv2d (padding 0), [2] GroupNorm(1), [3] LeakyReLU(0.2)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1, padding: Padding = 1,
                 groups: int = 1, bias: bool = False) -> None:
        pad: nn.Module = nn.ReflectionPad2d(padding) if padding else nn.Identity()
        super().__init__(
            pad,
            nn.Conv2d(in_ch, out_ch, kernel_size=kernel_size, stride=stride, padding=0, groups=groups, bias=bias),
            nn.GroupNorm(num_groups=1, num_channels=out_ch, affine=True),
            nn.LeakyReLU(0.2, inplace=True),
        )


class InvertedResBlock(nn.Module):
    """Expand 1x1 to twice the channels, depthwise 3x3, project 1x1; adds the input when shapes agree."""

    def __init__(self, in_ch: int, out_ch: int, expansion: int = 2) -> None:
        super().__init__()
        self.use_residual = in_ch == out_ch
        hidden = in_ch * expansion
        self.layers = nn.Sequential(
            ConvNormLReLU(in_ch, hidden, kernel_size=1, padding=0),
            ConvNormLReLU(hidden, hidden, groups=hidden, bias=True),
            nn.Conv2d(hidden, out_ch, kernel_size=1, bias=False),
            nn.GroupNorm(num_groups=1, num_channels=out_ch, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(x)
        return x + out if self.use_residual else out


class Generator(nn.Module):
    """RGB in [-1, 1] (NCHW) to RGB in [-1, 1] of the same size; 2,143,552 parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.block_a = nn.Sequential(
            ConvNormLReLU(3, 32, kernel_size=7, padding=3),
            ConvNormLReLU(32, 64, stride=2, padding=RIGHT_BOTTOM),
            ConvNormLReLU(64, 64),
        )
        self.block_b = nn.Sequential(
            ConvNormLReLU(64, 128, stride=2, padding=RIGHT_BOTTOM),
            ConvNormLReLU(128, 128),
        )
        self.block_c = nn.Sequential(
            ConvNormLReLU(128, 128),
            InvertedResBlock(128, 256),
            InvertedResBlock(256, 256),
            InvertedResBlock(256, 256),
            InvertedResBlock(256, 256),
            ConvNormLReLU(256, 128),
        )
        self.block_d = nn.Sequential(
            ConvNormLReLU(128, 128),
            ConvNormLReLU(128, 128),
        )
        self.block_e = nn.Sequential(
            ConvNormLReLU(128, 64),
            ConvNormLReLU(64, 64),
            ConvNormLReLU(64, 32, kernel_size=7, padding=3),
        )
        self.out_layer = nn.Sequential(
            nn.Conv2d(32, 3, kernel_size=1, stride=1, padding=0, bias=False),
            nn.Tanh(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block_a(x)
        half_size = out.shape[-2:]
        out = self.block_b(out)
        out = self.block_c(out)
        out = F.interpolate(out, size=half_size, mode="bilinear", align_corners=True)
        out = self.block_d(out)
        out = F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=True)
        out = self.block_e(out)
        return self.out_layer(out)
