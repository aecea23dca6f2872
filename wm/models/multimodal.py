"""Encoders and decoders for Dict observations (images + vectors, wm/envs/modalities.py), as DreamerV3 builds
them: a CNN per image key and an MLP per vector key, their embeddings concatenated; a decoder per reconstructed
key from the RSSM feature, each with its own loss scale.

Missing modalities (``present_<key>`` flags, MuMMI-style dropout): a missing key's embedding is zeroed, the flags
themselves are appended to the embedding (so the posterior knows which inputs it got), and a missing key carries
no reconstruction loss at that step (its zeros are not data).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from wm.core.nets import mlp
from wm.envs.modalities import modality_keys, present_key
from wm.models import dists
from wm.models.nets import ConvDecoder, ConvEncoder


def is_image(space: gym.Space) -> bool:
    return isinstance(space, gym.spaces.Box) and len(space.shape) == 3 and space.dtype == np.uint8


def check_keys(space: gym.spaces.Dict, keys: list[str], what: str) -> str | None:
    """Why ``keys`` (config ``what``) cannot be used with ``space``, or None. Every key must be one of the
    observation's modalities, an image (uint8 (size, size, 1 | 3), size a power of two >= 8) or a flat vector."""
    have = modality_keys(space)
    for key in keys:
        if key not in have:
            return f"{what}: {key!r} is not an observation key of this env (keys: {', '.join(have)})"
    for key in keys or have:
        sub = space.spaces[key]
        if is_image(sub):
            size = sub.shape[0]
            if sub.shape[1] != size or sub.shape[2] not in (1, 3) or size < 8 or size & (size - 1):
                return (f"observation {key!r} has shape {sub.shape}: image keys must be (size, size, 1 or 3) with "
                        f"size a power of two >= 8 (env.size)")
        elif not (isinstance(sub, gym.spaces.Box) and len(sub.shape) == 1):
            return f"observation {key!r} is {sub}: keys must be uint8 images (H, W, C) or flat vectors (D,)"
    return None


class MultiEncoder(nn.Module):
    """Preprocessed Dict observation (images (..., C, H, W) in [-0.5, 0.5], vectors (..., D) symlog'd, flags
    (..., 1)) -> (..., out_dim): the keys' embeddings (each times its presence flag) and the flags."""

    def __init__(self, space: gym.spaces.Dict, keys: list[str], cnn_depth: int, units: int, layers: int):
        super().__init__()
        self.keys = keys
        self.nets = nn.ModuleDict()
        out = 0
        for key in keys:
            sub = space.spaces[key]
            if is_image(sub):
                self.nets[key] = ConvEncoder(sub.shape[0], cnn_depth, sub.shape[-1])
                out += self.nets[key].out_dim
            else:
                self.nets[key] = mlp(int(sub.shape[0]), None, units, layers)
                out += units
        self.flags = [present_key(k) for k in keys if present_key(k) in space.spaces]
        self.out_dim = out + len(self.flags)

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        parts = []
        for key in self.keys:
            embed = self.nets[key](obs[key])
            flag = present_key(key)
            parts.append(embed * obs[flag] if flag in obs else embed)
        return torch.cat(parts + [obs[f] for f in self.flags], -1)


class MultiDecoder(nn.Module):
    """RSSM feature (..., F) -> a reconstruction per key; ``loss`` sums each key's squared error (over pixels,
    or over the vector's symlog'd dims) times its scale, zero where the key was missing."""

    def __init__(self, space: gym.spaces.Dict, keys: list[str], feat_dim: int, cnn_depth: int, units: int,
                 layers: int, scales: dict[str, float]):
        super().__init__()
        self.keys, self.scales = keys, scales
        self.nets = nn.ModuleDict()
        self.image_keys = [k for k in keys if is_image(space.spaces[k])]
        for key in keys:
            sub = space.spaces[key]
            if is_image(sub):
                self.nets[key] = ConvDecoder(feat_dim, sub.shape[0], cnn_depth, sub.shape[-1])
            else:
                self.nets[key] = mlp(feat_dim, int(sub.shape[0]), units, layers)

    def forward(self, feat: torch.Tensor) -> dict[str, torch.Tensor]:
        return {key: net(feat) for key, net in self.nets.items()}

    def loss(self, feat: torch.Tensor, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total (...) and per-key (...) reconstruction losses of the preprocessed ``obs``."""
        per_key = {}
        for key, rec in self(feat).items():
            err = (rec - obs[key]) ** 2
            err = err.sum((-3, -2, -1)) if key in self.image_keys else err.sum(-1)
            flag = present_key(key)
            per_key[key] = err * obs[flag].squeeze(-1) if flag in obs else err
        total = sum(self.scales.get(k, 1.0) * v for k, v in per_key.items())
        return total, per_key


def preprocess(space: gym.spaces.Dict, obs: dict[str, torch.Tensor], device: torch.device,
               symlog_vectors: bool) -> dict[str, torch.Tensor]:
    """Raw Dict observation (..., *shape) per key -> network inputs: images to (..., C, H, W) in [-0.5, 0.5],
    vectors to float (symlog'd if asked), flags to float."""
    out = {}
    for key, sub in space.spaces.items():
        x = obs[key].to(device, torch.float32)
        if is_image(sub):
            out[key] = (x / 255.0 - 0.5).movedim(-1, -3)
        elif key.startswith("present_"):
            out[key] = x
        else:
            out[key] = dists.symlog(x) if symlog_vectors else x
    return out
