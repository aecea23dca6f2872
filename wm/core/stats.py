"""Running mean / standard deviation of batches (the parallel-variance merge of Chan et al.).

Two forms, kept apart because checkpoints and seeded runs depend on their exact arithmetic and buffer names:
``RunningMeanStd`` (float64, stores the variance, a tiny starting count, optional forgetting window; the
intrinsic rewards' normalisers) and ``RunningNorm`` (float32, stores the sum of squared deviations; the Dyna
MLP model's input and target normalisers).
"""

from __future__ import annotations

import torch
from torch import nn


class RunningMeanStd(nn.Module):
    """Running mean and variance over the leading axis (parallel-variance merge of batches). With
    ``window`` > 0 the count stops growing there, so old batches fade (an exponential moving estimate)."""

    def __init__(self, shape: tuple[int, ...] = (), window: int = 0):
        super().__init__()
        self.window = window
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(1e-4, dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        x = x.detach().double().reshape(-1, *self.mean.shape)
        if len(x) == 0:
            return
        b_mean, b_var, n = x.mean(0), x.var(0, unbiased=False), len(x)
        delta, total = b_mean - self.mean, self.count + n
        self.mean += delta * n / total
        self.var.copy_((self.var * self.count + b_var * n + delta**2 * self.count * n / total) / total)
        self.count.copy_(total if self.window <= 0 else total.clamp(max=self.window))

    @property
    def std(self) -> torch.Tensor:
        return (self.var + 1e-8).sqrt()


class RunningNorm(nn.Module):
    """Per-feature mean/std accumulated over every batch seen (Chan et al. parallel update)."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("count", torch.zeros(()))
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("m2", torch.zeros(dim))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        n = x.shape[0]
        mean, var = x.mean(0), x.var(0, unbiased=False)
        total = self.count + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += var * n + delta.pow(2) * self.count * n / total
        self.count.copy_(total)

    @property
    def std(self) -> torch.Tensor:
        return (self.m2 / self.count.clamp(min=1)).sqrt().clamp(min=1e-4)
