"""Sharpness of predicted video frames: how much edge a prediction keeps, relative to the true frames.

Pixel losses reward a blurry average of the possible futures; this measure says whether a model paints
edges at all. The gradient magnitude of a frame (B, T, C, H, W) float in [0, 1] is the mean over pixels and
channels of sqrt(dx^2 + dy^2), dx and dy the forward differences between neighbouring pixels (the last row
and column, which have no neighbour, are left out). The sharpness of a prediction at frame t is

    sum over test sequences of grad(pred[:, t])  /  sum over test sequences of grad(true[:, t])

so 1 means as much edge as the truth, below 1 blurrier (a blank frame scores 0), above 1 noisier. Summing
before dividing keeps near-empty frames from dominating the ratio.
"""

from __future__ import annotations

import numpy as np
import torch


def gradient_magnitude(frames: torch.Tensor) -> torch.Tensor:
    """Mean gradient magnitude per sequence and frame: (B, T, C, H, W) -> (B, T)."""
    x = frames.float()
    dx = x[..., :-1, 1:] - x[..., :-1, :-1]
    dy = x[..., 1:, :-1] - x[..., :-1, :-1]
    return (dx.square() + dy.square()).sqrt().flatten(2).mean(-1)


class SharpnessRatio:
    """Accumulates the gradient magnitude of predictions and of the true frames over batches of
    (B, T, C, H, W); ``per_frame`` and ``compute`` give their ratio (see the module docstring)."""

    def __init__(self):
        self.pred: np.ndarray | None = None
        self.true: np.ndarray | None = None

    def update(self, pred: torch.Tensor, true: torch.Tensor) -> None:
        if pred.shape != true.shape or pred.dim() != 5:
            raise ValueError(f"pred and true must both be (B, T, C, H, W); got {tuple(pred.shape)}, "
                             f"{tuple(true.shape)}")
        p = gradient_magnitude(pred.clamp(0, 1)).double().sum(0).cpu().numpy()
        t = gradient_magnitude(true).double().sum(0).cpu().numpy()
        self.pred = p if self.pred is None else self.pred + p
        self.true = t if self.true is None else self.true + t

    def per_frame(self) -> list[float]:
        """The ratio at each predicted frame (T,)."""
        if self.pred is None:
            return []
        return (self.pred / np.maximum(self.true, 1e-12)).tolist()

    def compute(self) -> float:
        """The ratio over all predicted frames and sequences."""
        if self.pred is None:
            return float("nan")
        return float(self.pred.sum() / max(self.true.sum(), 1e-12))
