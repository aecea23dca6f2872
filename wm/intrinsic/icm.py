"""ICM (Pathak et al. 2017): features phi(s) are learned by an inverse model that predicts the action
from (phi(s), phi(s')); a forward model predicts phi(s') from (phi(s), a), and its error is the bonus.
Features only keep what the agent's actions influence. Loss = (1 - beta) * inverse CE + beta * forward MSE."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from wm.config import param
from wm.core.nets import mlp
from wm.intrinsic.base import Intrinsic, IntrinsicConfig, one_hot


@dataclass
class ICMConfig(IntrinsicConfig):
    scale: float = param(1.0, ge=0)
    feature_dim: int = param(32, gt=0)
    beta: float = param(0.2, ge=0, le=1)  # weight of the forward loss against the inverse loss


class ICM(Intrinsic):
    Config = ICMConfig

    def __init__(self, cfg: ICMConfig, obs_space, act_space, device="cpu"):
        super().__init__(cfg, obs_space, act_space, device)
        relu = {"norm": False, "act": torch.nn.ReLU}
        self.phi = mlp(self.obs_dim, cfg.feature_dim, cfg.hidden, **relu)
        self.inverse = mlp(2 * cfg.feature_dim, self.n_actions, cfg.hidden, **relu)
        self.forward_model = mlp(cfg.feature_dim + self.n_actions, cfg.feature_dim, cfg.hidden, **relu)
        self.to(self.device)
        self.optim = torch.optim.Adam(self.parameters(), lr=cfg.lr)
        self.last_inverse_accuracy = float("nan")

    def parts(self, obs, action, next_obs):
        f, f_next = self.phi(self.features(obs)), self.phi(self.features(next_obs))
        pred_next = self.forward_model(torch.cat([f, one_hot(action, self.n_actions)], -1))
        logits = self.inverse(torch.cat([f, f_next], -1))
        return f_next, pred_next, logits

    def raw_reward(self, obs, action, next_obs):
        f_next, pred_next, _ = self.parts(obs, action, next_obs)
        return 0.5 * (pred_next - f_next).pow(2).sum(-1)

    def loss(self, obs, action, next_obs):
        return self.reward_and_loss(obs, action, next_obs)[1]

    def reward_and_loss(self, obs, action, next_obs):
        f_next, pred_next, logits = self.parts(obs, action, next_obs)
        raw = 0.5 * (pred_next - f_next).pow(2).sum(-1).detach()
        inverse = F.cross_entropy(logits, action.long())
        forward = 0.5 * (pred_next - f_next.detach()).pow(2).sum(-1).mean()
        self.last_inverse_accuracy = (logits.argmax(-1) == action.long()).float().mean().item()
        return raw, (1 - self.cfg.beta) * inverse + self.cfg.beta * forward

    def forward(self, batch):
        out = super().forward(batch)
        self.stats["intrinsic/inverse_accuracy"] = self.last_inverse_accuracy
        return out
