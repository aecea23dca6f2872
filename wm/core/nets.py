"""The one MLP builder, the flat / one-hot observation features, and the Adam optimiser the learners share."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def mlp(inp: int, out: int | None, units: int | Sequence[int], layers: int | None = None, *,
        norm: bool = True, act: type[nn.Module] = nn.SiLU) -> nn.Sequential:
    """Hidden layers, then a plain Linear to ``out`` (with ``out`` None the stack ends on an activation).

    Hidden widths: ``layers`` x ``units``, or the list ``units`` itself (then ``layers`` is not given). Each
    hidden layer is Linear -> LayerNorm -> ``act`` with ``norm``, Linear -> ``act`` without (DQN's
    ``mlp(sizes)`` is ``mlp(sizes[0], sizes[-1], sizes[1:-1], norm=False, act=nn.ReLU)``). The Linear keeps its
    bias before a LayerNorm, as DreamerV3's layers do: without it LayerNorm(W x) is the same for x and 2 x, so a
    network on a low-dimensional input sees only its direction (a BC clone of the CartPole expert dataset
    scored 487 / 166 / 500 over 3 seeds that way, 500 on 5 of 5 with the bias)."""
    if isinstance(units, int):
        if layers is None:
            raise TypeError("mlp: give `layers` with an int `units`")
        widths = [units] * layers
    else:
        if layers is not None:
            raise TypeError("mlp: `layers` goes with an int `units`, not a list of widths")
        widths = list(units)
    mods: list[nn.Module] = []
    d = inp
    for w in widths:
        mods += [nn.Linear(d, w)]
        if norm:
            mods += [nn.LayerNorm(w)]
        mods += [act()]
        d = w
    if out is not None:
        mods += [nn.Linear(d, out)]
    return nn.Sequential(*mods)


class ObsEncoder(nn.Module):
    """Flat float features from vector observations, or one-hot from Discrete ones (grid worlds).

    ``rescale``: map each Box dimension with finite bounds linearly onto [-1, 1] (others pass unchanged), so
    inputs of very different ranges weigh alike: MountainCar's velocity spans +-0.07, its position 1.8."""

    def __init__(self, space: gym.Space, rescale: bool = False):
        super().__init__()
        self.n = space.n if isinstance(space, gym.spaces.Discrete) else None
        self.dim = self.n if self.n is not None else int(np.prod(space.shape))
        self.rescale = rescale and self.n is None
        if self.rescale:
            low, high = (np.asarray(b, np.float64).flatten() for b in (space.low, space.high))
            finite = np.isfinite(low) & np.isfinite(high) & (high > low)
            low, high = np.where(finite, low, -1.0), np.where(finite, high, 1.0)  # others: identity
            mid, span = (high + low) / 2, (high - low) / 2
            self.register_buffer("mid", torch.as_tensor(mid, dtype=torch.float32), persistent=False)
            self.register_buffer("span", torch.as_tensor(span, dtype=torch.float32), persistent=False)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if self.n is not None:
            return F.one_hot(obs.long(), self.n).float()
        x = obs.float().flatten(1)
        return (x - self.mid) / self.span if self.rescale else x


class Polyak:
    """Moves a target network towards its online network, target += weight * (online - target) in one fused call
    (weight 1: a hard copy): DQN's and SAC's targets, Dreamer's slow critic. Loading a state dict into either
    network copies in place, so the parameter lists stay valid."""

    def __init__(self, online: nn.Module, target: nn.Module):
        self.online, self.target = list(online.parameters()), list(target.parameters())

    @torch.no_grad()
    def __call__(self, weight: float) -> None:
        torch._foreach_lerp_(self.target, self.online, weight)


def adam(params, lr: float, eps: float, device: torch.device) -> torch.optim.Adam:
    """Adam with the fused kernel where torch has one (CPU, CUDA): one call per step instead of a Python
    loop over parameter tensors, about 4x cheaper per step for these many small tensors on a CPU."""
    return torch.optim.Adam(params, lr=lr, eps=eps, fused=device.type in ("cpu", "cuda"))


class SavesOptimizers:
    """``nn.Module`` mixin (listed before nn.Module's subclass): ``state_dict()`` also carries the optimizers (and
    schedulers) named in ``OPTIMIZERS`` ({checkpoint key: attribute}), so a checkpoint resumes training exactly;
    ``load_state_dict`` restores them. Sub-module state dicts (``prefix``/``destination`` calls) stay plain."""

    OPTIMIZERS: ClassVar[dict[str, str]] = {}

    def state_dict(self, *args, **kwargs):
        d = super().state_dict(*args, **kwargs)
        if not args and "destination" not in kwargs:
            for key, attr in self.OPTIMIZERS.items():
                d[key] = getattr(self, attr).state_dict()
        return d

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        state_dict = dict(state_dict)
        saved = {attr: state_dict.pop(key, None) for key, attr in self.OPTIMIZERS.items()}
        out = super().load_state_dict(state_dict, strict=strict, assign=assign)
        for attr, state in saved.items():
            if state is not None:
                getattr(self, attr).load_state_dict(state)
        return out


def optimize(opt: torch.optim.Optimizer, loss: torch.Tensor, lr: float | None = None) -> None:
    """One gradient step on ``loss``; ``lr``, if given, is set on every parameter group first (schedules)."""
    if lr is not None:
        for group in opt.param_groups:
            group["lr"] = lr
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
