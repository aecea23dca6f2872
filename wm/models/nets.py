"""Pixel-model building blocks: zero_last and the 64x64 CNN encoder / decoder used by the pixel world models."""
from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import nn


def zero_last(module: nn.Sequential) -> nn.Sequential:
    """Zero-init the output layer (DreamerV3 does this for the reward head and critic)."""
    last = [m for m in module if isinstance(m, nn.Linear)][-1]
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return module


class ConvEncoder(nn.Module):
    """(..., 3, size, size) uint8-scaled floats in [-0.5, 0.5] -> (..., out_dim). Stride-2 4x4 convs to 4x4."""

    def __init__(self, size: int = 64, depth: int = 16, channels: int = 3):
        super().__init__()
        n = int(math.log2(size // 4))
        mods: list[nn.Module] = []
        c = channels
        for i in range(n):
            mods += [nn.Conv2d(c, depth * 2**i, 4, 2, 1), nn.GroupNorm(1, depth * 2**i), nn.SiLU()]
            c = depth * 2**i
        self.net = nn.Sequential(*mods)
        self.out_dim = c * 4 * 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-3]
        y = self.net(x.reshape(-1, *x.shape[-3:]))
        return y.reshape(*lead, -1)


class ConvDecoder(nn.Module):
    """(..., feat) -> (..., 3, size, size) mean image; mirror of ConvEncoder."""

    def __init__(self, feat: int, size: int = 64, depth: int = 16, channels: int = 3):
        super().__init__()
        n = int(math.log2(size // 4))
        self.c0 = depth * 2 ** (n - 1)
        self.fc = nn.Linear(feat, self.c0 * 16)
        mods: list[nn.Module] = []
        c = self.c0
        for i in reversed(range(n)):
            last = i == 0
            oc = channels if last else depth * 2 ** (i - 1)
            mods += [nn.ConvTranspose2d(c, oc, 4, 2, 1)]
            if not last:
                mods += [nn.GroupNorm(1, oc), nn.SiLU()]
            c = oc
        self.net = nn.Sequential(*mods)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        lead = f.shape[:-1]
        x = rearrange(self.fc(f.reshape(-1, f.shape[-1])), "b (c h w) -> b c h w", h=4, w=4)
        y = self.net(x)
        return y.reshape(*lead, *y.shape[1:])
