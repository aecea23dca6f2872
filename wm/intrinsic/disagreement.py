"""Ensemble disagreement (Pathak et al. 2019; the model-free side of Plan2Explore): K one-step models
predict the standardised next observation from (obs, action); the bonus is the variance of their
predictions (mean over dims), high where the data has not pinned the dynamics down. Each member trains
on its own bootstrap resample of the batch."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from wm.config import param
from wm.core.nets import mlp
from wm.intrinsic.base import Intrinsic, IntrinsicConfig, one_hot


@dataclass
class DisagreementConfig(IntrinsicConfig):
    scale: float = param(1.0, ge=0)
    members: int = param(5, ge=2)  # an ensemble needs two to disagree


class Disagreement(Intrinsic):
    Config = DisagreementConfig

    def __init__(self, cfg: DisagreementConfig, obs_space, act_space, device="cpu"):
        super().__init__(cfg, obs_space, act_space, device)
        self.models = nn.ModuleList(mlp(self.obs_dim + self.n_actions, self.obs_dim, cfg.hidden, norm=False,
                                        act=nn.ReLU)
                                    for _ in range(cfg.members))
        self.to(self.device)
        self.optim = torch.optim.Adam(self.parameters(), lr=cfg.lr)

    def predictions(self, obs, action) -> torch.Tensor:  # (K, B, obs_dim)
        x = torch.cat([self.features(obs), one_hot(action, self.n_actions)], -1)
        return torch.stack([m(x) for m in self.models])

    def raw_reward(self, obs, action, next_obs):
        return self.predictions(obs, action).var(0).mean(-1)

    def loss(self, obs, action, next_obs):
        target = self.features(next_obs)
        pred = self.predictions(obs, action)
        idx = torch.randint(len(obs), (len(self.models), len(obs)), device=obs.device)  # bootstrap per member
        err = (pred - target).pow(2).mean(-1)  # (K, B)
        return err.gather(1, idx).mean()
