"""Where a run has been: visit counts over the observation space, the coverage they give, and their image.

Grid worlds (Discrete observations) count cells; Box observations with finite bounds count the bins of a
2-D histogram over their first two dims (MountainCar: position x velocity); other spaces are not counted
(coverage is NaN). wm.intrinsic keeps one per run, so every DQN / Dreamer run logs its coverage.
"""

from __future__ import annotations

import os
from pathlib import Path

import gymnasium as gym
import numpy as np


class Visitation:
    def __init__(self, obs_space: gym.Space, bins: int):
        self.obs_space, self.bins = obs_space, bins
        if isinstance(obs_space, gym.spaces.Discrete):
            self.counts: np.ndarray | None = np.zeros(obs_space.n, np.int64)
        else:
            self.counts = None if self.edges() is None else np.zeros((bins, bins), np.int64)

    def edges(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Bin edges of the first two observation dims, for Box spaces with finite bounds."""
        s = self.obs_space
        if not isinstance(s, gym.spaces.Box) or s.shape is None or len(s.shape) != 1 or s.shape[0] < 2:
            return None
        lo, hi = s.low[:2].astype(np.float64), s.high[:2].astype(np.float64)
        if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
            return None
        return np.linspace(lo[0], hi[0], self.bins + 1), np.linspace(lo[1], hi[1], self.bins + 1)

    def add(self, obs: np.ndarray) -> None:
        """Count observations, (N,) cell indices or (N, D) vectors."""
        if self.counts is None:
            return
        if self.counts.ndim == 1:
            np.add.at(self.counts, obs.astype(np.int64), 1)
        else:
            ex, ey = self.edges()
            h, _, _ = np.histogram2d(obs[:, 0], obs[:, 1], bins=(ex, ey))
            self.counts += h.astype(np.int64)

    def coverage(self) -> float:
        """Fraction of cells (grid worlds) or histogram bins (first two obs dims) visited at least once."""
        return float("nan") if self.counts is None else float((self.counts > 0).mean())

    def plot(self, path: Path, title: str) -> None:
        """The 2-D histogram as an image (only for Box observations)."""
        plot_visits(self.counts, self.edges(), path, title)


def plot_visits(counts: np.ndarray, edges: tuple[np.ndarray, np.ndarray], path: Path, title: str,
                labels: tuple[str, str] = ("position", "velocity")) -> None:
    """log(1 + visits) over the first two observation dims (MountainCar: position x velocity)."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 3.6))
    ex, ey = edges
    im = ax.imshow(np.log1p(counts.T), origin="lower", aspect="auto", cmap="viridis",
                   extent=(ex[0], ex[-1], ey[0], ey[-1]))
    fig.colorbar(im, ax=ax, label="log(1 + visits)")
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
