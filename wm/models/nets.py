"""Model building blocks: zero_last, the 64x64 CNN encoder / decoder of the pixel world models, and ActionCoder
(env actions <-> the action vectors models and imagination agents work with)."""
from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class ActionCoder(nn.Module):
    """Env / replay actions <-> model action vectors (..., ``dim``): one-hot for Discrete spaces, the Box rescaled
    to [-1, 1] for continuous ones. Its bounds are non-persistent buffers (they follow ``.to(device)`` and stay
    out of checkpoints)."""

    def __init__(self, act_space: gym.Space):
        super().__init__()
        self.discrete = isinstance(act_space, gym.spaces.Discrete)
        self.dim = int(act_space.n) if self.discrete else int(np.prod(act_space.shape))
        if not self.discrete:
            self.register_buffer("low", torch.as_tensor(act_space.low, dtype=torch.float32), persistent=False)
            self.register_buffer("high", torch.as_tensor(act_space.high, dtype=torch.float32), persistent=False)

    def encode(self, action: torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
        """(...,) int or (..., A) float env actions -> (..., A): one-hot (already one-hot rows pass through), or
        rescaled to [-1, 1] and clipped there."""
        action = action.to(device) if device is not None else action
        if self.discrete:
            if action.dtype.is_floating_point and action.shape[-1:] == (self.dim,) and self.dim > 1:
                return action
            if action.shape[-1:] == (1,):
                action = action.squeeze(-1)
            return F.one_hot(action.long(), self.dim).float()
        return (2 * (action.float() - self.low) / (self.high - self.low) - 1).clamp(-1, 1)

    def decode(self, a: torch.Tensor) -> np.ndarray:
        """(..., A) model actions -> env actions: the argmax index, or the [-1, 1] box mapped onto the env's."""
        if self.discrete:
            return a.argmax(-1).cpu().numpy()
        return (self.low + (a.clamp(-1, 1) + 1) / 2 * (self.high - self.low)).cpu().numpy()


def zero_last(module: nn.Sequential) -> nn.Sequential:
    """Zero-init the output layer (DreamerV3 does this for the reward head and critic)."""
    last = [m for m in module if isinstance(m, nn.Linear)][-1]
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return module


class NormGRUCell(nn.Module):
    """DreamerV2/V3's GRU cell: one Linear over [x, h] to the three gates, LayerNorm over them, the update gate
    biased by -1 (so the state starts out mostly kept). Same call as nn.GRUCell: (x, h) -> h'."""

    def __init__(self, inp: int, size: int):
        super().__init__()
        self.linear = nn.Linear(inp + size, 3 * size, bias=False)
        self.norm = nn.LayerNorm(3 * size)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        reset, cand, update = self.norm(self.linear(torch.cat([x, h], -1))).chunk(3, -1)
        cand = torch.tanh(torch.sigmoid(reset) * cand)
        update = torch.sigmoid(update - 1.0)
        return update * cand + (1 - update) * h


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
