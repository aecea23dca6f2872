"""Distributions and transforms used by the Dreamer family.

symlog / symexp (DreamerV3), a two-hot symlog regression head distribution, unimix for categoricals,
and a Bernoulli / MSE head helper. All functions take and return torch tensors of any leading shape.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import distributions as td


def symlog(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.expm1(x.abs())


def unimix_logits(logits: torch.Tensor, unimix: float) -> torch.Tensor:
    """Mix `unimix` of a uniform distribution into a categorical over the last axis (DreamerV2/V3)."""
    if unimix <= 0:
        return logits
    probs = logits.softmax(-1)
    probs = (1 - unimix) * probs + unimix / logits.shape[-1]
    return probs.log()


class TwoHotSymlog:
    """Discrete regression over `bins` equally spaced in symlog space (DreamerV3 reward/value heads).

    logits: (..., bins). mean() returns values in the original space, log_prob(target) takes targets in
    the original space, shape (...). use_symlog=False (head kind 'twohot_raw', the no-symlog ablation): the
    same bins in raw units, identity instead of symlog/symexp, so values beyond [low, high] clip.
    """

    def __init__(self, logits: torch.Tensor, low: float = -20.0, high: float = 20.0, use_symlog: bool = True):
        self.logits, self.use_symlog = logits, use_symlog
        self.bins = torch.linspace(low, high, logits.shape[-1], device=logits.device, dtype=logits.dtype)

    def mean(self) -> torch.Tensor:
        x = (self.logits.softmax(-1) * self.bins).sum(-1)
        return symexp(x) if self.use_symlog else x

    def log_prob(self, target: torch.Tensor) -> torch.Tensor:
        t = symlog(target) if self.use_symlog else target
        return (twohot(t, self.bins) * self.logits.log_softmax(-1)).sum(-1)


def twohot(x: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """Encode x (...) as weights (..., len(bins)) on its two nearest bins (clipped at the ends)."""
    x = x.detach().clamp(bins[0], bins[-1])
    idx = torch.bucketize(x, bins).clamp(1, len(bins) - 1)  # bins[idx-1] <= x <= bins[idx]
    lo, hi = bins[idx - 1], bins[idx]
    w_hi = ((x - lo) / (hi - lo)).clamp(0, 1)
    out = torch.zeros(*x.shape, len(bins), device=x.device, dtype=x.dtype)
    out.scatter_(-1, (idx - 1).unsqueeze(-1), (1 - w_hi).unsqueeze(-1))
    out.scatter_add_(-1, idx.unsqueeze(-1), w_hi.unsqueeze(-1))
    return out


class ScalarHead:
    """A Gaussian with unit variance (MSE) on an optionally symlog-transformed scalar."""

    def __init__(self, out: torch.Tensor, use_symlog: bool):
        self.out, self.use_symlog = out.squeeze(-1), use_symlog

    def mean(self) -> torch.Tensor:
        return symexp(self.out) if self.use_symlog else self.out

    def log_prob(self, target: torch.Tensor) -> torch.Tensor:
        t = symlog(target) if self.use_symlog else target
        return -0.5 * (self.out - t) ** 2


HEADS = ("symlog_mse", "twohot", "mse", "twohot_raw")  # the scalar heads head_dist builds


def head_bins(kind: str) -> int:
    """Outputs of a head of this kind: 255 bins for the two-hot heads, 1 for the scalar ones."""
    return 255 if kind in ("twohot", "twohot_raw") else 1


def head_dist(out: torch.Tensor, kind: str):
    """Turn a head's raw output into a distribution: 'twohot' (symlog bins), 'twohot_raw' (the same bins in
    raw units), 'symlog_mse' or 'mse'."""
    if kind in ("twohot", "twohot_raw"):
        return TwoHotSymlog(out, use_symlog=(kind == "twohot"))
    return ScalarHead(out, use_symlog=(kind == "symlog_mse"))


def bernoulli(logits: torch.Tensor) -> td.Bernoulli:
    return td.Bernoulli(logits=logits.squeeze(-1))


def categorical_straight_through(logits: torch.Tensor, unimix: float) -> td.Independent:
    """(..., groups, classes) logits -> one-hot straight-through samples, independent over groups."""
    return td.Independent(td.OneHotCategoricalStraightThrough(logits=unimix_logits(logits, unimix)), 1)


def gaussian(mean: torch.Tensor, std: torch.Tensor) -> td.Independent:
    return td.Independent(td.Normal(mean, std), 1)


def softplus_std(x: torch.Tensor, min_std: float) -> torch.Tensor:
    return F.softplus(x) + min_std
