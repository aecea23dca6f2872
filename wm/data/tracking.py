"""data=tracking: a 2-D constant-velocity target seen through noisy, sometimes missing, position fixes.

State x = (px, py, vx, vy); white-noise acceleration of spectral density `q` (the discretised Q of
Bar-Shalom et al.), position measurements with standard deviation `r`, and each measurement lost with
probability `p_missing` (a NaN row). Training and held-out sequences with their true states come from
a seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from wm.config import check_tree, param
from wm.data.generative import DTYPE, linear_gaussian


def constant_velocity_params(dt: float = 1.0, q: float = 0.05, r: float = 1.0,
                             speed: float = 1.0) -> dict[str, torch.Tensor]:
    """F, H, Q, R, x0, P0 (float64) of the model; ``KalmanFilter(**constant_velocity_params())`` is it."""
    eye, zero = torch.eye(2), torch.zeros(2, 2)
    F = torch.cat([torch.cat([eye, dt * eye], 1), torch.cat([zero, eye], 1)], 0)
    Q = q * torch.cat([torch.cat([dt**3 / 3 * eye, dt**2 / 2 * eye], 1),
                       torch.cat([dt**2 / 2 * eye, dt * eye], 1)], 0)
    H = torch.cat([eye, zero], 1)
    R = r**2 * eye
    P0 = torch.diag(torch.tensor([r**2, r**2, speed**2, speed**2]))
    p = {"F": F, "H": H, "Q": Q, "R": R, "x0": torch.zeros(4), "P0": P0}
    return {k: v.to(DTYPE) for k, v in p.items()}  # built in float32 first, as the datasets always were


class Tracking:
    """`train_obs` (n_train, T, 2) with NaN rows for missing fixes, `test_obs`, and their `*_states` (…, 4),
    and the model's `true_params`."""

    @dataclass
    class Config:
        name: str = param("tracking", free="the option's name")
        dt: float = param(1.0, gt=0)
        q: float = param(0.05, gt=0)  # acceleration noise spectral density
        r: float = param(1.0, gt=0)  # measurement noise standard deviation
        speed: float = param(1.0, gt=0)  # prior standard deviation of the initial velocity
        p_missing: float = param(0.1, ge=0, lt=1)  # probability that a position fix is lost
        n_train: int = param(20, gt=0)
        train_length: int = param(200, gt=0)
        n_test: int = param(20, gt=0)
        test_length: int = param(200, gt=0)

    def __init__(self, cfg: Tracking.Config, seed: int = 0):
        check_tree(cfg, "data")  # also when built directly, not through typed()
        self.cfg, self.seed = cfg, seed
        self.true_params = constant_velocity_params(cfg.dt, cfg.q, cfg.r, cfg.speed)
        g = torch.Generator().manual_seed(seed)
        self.train_states, self.train_obs = self._draw(cfg.n_train, cfg.train_length, g)
        self.test_states, self.test_obs = self._draw(cfg.n_test, cfg.test_length, g)
        self.train_lengths = torch.full((cfg.n_train,), cfg.train_length)
        self.test_lengths = torch.full((cfg.n_test,), cfg.test_length)

    def _draw(self, n: int, T: int, g: torch.Generator):
        states, obs = linear_gaussian(**self.true_params, T=T, generator=g, n=n)
        lost = torch.rand(n, T, generator=g, dtype=torch.float64) < self.cfg.p_missing
        return states, obs.masked_fill(lost[..., None], float("nan"))
