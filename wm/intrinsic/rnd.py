"""RND (Burda et al. 2018): the bonus is the error of a predictor trained to match a fixed, randomly
initialised target network on the (running-standardised) next observation; states seen often are
predicted well and stop paying. Rewards are divided by their running std (``normalize: std``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from wm.config import param
from wm.core.nets import mlp
from wm.intrinsic.base import Intrinsic, IntrinsicConfig


@dataclass
class RNDConfig(IntrinsicConfig):
    scale: float = param(1.0, ge=0)
    embed: int = param(64, gt=0)  # output size of target and predictor


class RND(Intrinsic):
    Config = RNDConfig

    def __init__(self, cfg: RNDConfig, obs_space, act_space, device="cpu"):
        super().__init__(cfg, obs_space, act_space, device)
        leaky = {"norm": False, "act": torch.nn.LeakyReLU}
        self.target = mlp(self.obs_dim, cfg.embed, cfg.hidden, **leaky).requires_grad_(False)
        self.predictor = mlp(self.obs_dim, cfg.embed, [*cfg.hidden, *cfg.hidden], **leaky)
        self.to(self.device)
        self.optim = torch.optim.Adam(self.predictor.parameters(), lr=cfg.lr)

    def error(self, next_obs: torch.Tensor) -> torch.Tensor:
        x = self.features(next_obs)
        return (self.predictor(x) - self.target(x)).pow(2).mean(-1)

    def raw_reward(self, obs, action, next_obs):
        return self.error(next_obs)

    def loss(self, obs, action, next_obs):
        return self.error(next_obs).mean()

    def reward_and_loss(self, obs, action, next_obs):
        err = self.error(next_obs)
        return err.detach(), err.mean()
