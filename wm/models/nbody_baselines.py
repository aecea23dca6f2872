"""The baselines of model=interaction_net on data=nbody (stepping, training and metrics:
wm/models/interaction_net.py ``NBodyModel``):

- model=constant_velocity: no parameters, no acceleration: x' = x + dt v, v' = v. ``train_step`` does nothing.
- model=state_mlp: one MLP from the flattened state of a fixed number of bodies (positions, velocities, masses
  and the graph: n * 5 + n * n inputs) to their accelerations (n * 4). It cannot take another body count, so it
  is evaluated on data.bodies only and refuses a run whose data.test_bodies leaves that count out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from wm.config import param
from wm.core.nets import mlp
from wm.data.nbody import NBody
from wm.models.interaction_net import NBodyModel


class ConstantVelocity(NBodyModel):
    """model=constant_velocity: every body keeps its velocity."""

    OPTIMIZERS: ClassVar[dict[str, str]] = {}

    @dataclass
    class Config:
        name: str = param("constant_velocity", free="the option's name")

    def accelerations(self, pos, vel, mass, edges):
        return torch.zeros_like(vel), torch.zeros_like(vel)

    def train_step(self, step: int) -> dict[str, float]:
        self.steps_done = step + 1
        return {}


class StateMLP(NBodyModel):
    """model=state_mlp: an MLP on the whole flattened state of data.bodies bodies."""

    @dataclass
    class Config:
        name: str = param("state_mlp", free="the option's name")
        hidden: int = param(256, gt=0)
        layers: int = param(3, gt=0)  # hidden layers
        lr: float = param(1e-3, gt=0)
        lr_decay_steps: int = param(0, ge=0)  # cosine decay of lr to 0 over this many steps (0: constant lr)
        batch: int = param(64, gt=0)  # trajectory windows per step
        rollout: int = param(1, gt=0)  # steps each training window unrolls (1: one-step training)

    @classmethod
    def refuse(cls, plan) -> str | None:
        problem = super().refuse(plan)
        if problem is None and plan.data.bodies not in plan.data.test_bodies:
            return (f"model=state_mlp takes a fixed number of bodies and is evaluated on data.bodies="
                    f"{plan.data.bodies} only, which data.test_bodies={list(plan.data.test_bodies)} leaves out")
        return problem

    def __init__(self, cfg: StateMLP.Config, data: NBody, device: torch.device | str = "cpu"):
        super().__init__(cfg, data, device)
        n = self.n = data.cfg.bodies
        self.net = mlp(n * 5 + n * n, n * 4, cfg.hidden, cfg.layers, norm=False)
        self.to(self.device)
        self.opt = torch.optim.Adam(self.parameters(), lr=cfg.lr)

    def counts(self) -> tuple[int, ...]:
        return (self.n,)

    def accelerations(self, pos, vel, mass, edges):
        B, n = mass.shape
        x = torch.cat([(pos / self.x_scale).flatten(1), (vel / self.v_scale).flatten(1), mass / self.m_scale,
                       edges.flatten(1)], -1)
        a = self.net(x).reshape(B, n, 4) * self.a_scale
        return a[..., :2], a[..., 2:]

