"""Soft Actor-Critic (Haarnoja et al. 2018): twin Q critics with Polyak-averaged targets, a tanh-squashed
Gaussian policy rescaled to the action Box, and automatic entropy (temperature) tuning.

Reads top to bottom: ``act`` samples (or, for evaluation, takes the mean of) the squashed Gaussian;
``train_step`` does one critic, actor and temperature update on a batch. Alone (``model=none``) it is the
model-free baseline. With ``model=mbpo`` it is MBPO: it owns a ``BranchedRollouts`` (wm/agents/mbpo.py: the
model buffer and the rollout schedule), rolls out with this policy (``policy_actions``) through the model's
``step`` right after every retrain (``after_model_update``), and each batch takes ``real_ratio`` of its rows
from the replay and the rest from its model buffer.
"""

from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass, field
from typing import Optional

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wm.agents.base import Agent
from wm.agents.mbpo import BranchedRollouts
from wm.config import POSITIVE, param, require
from wm.core.nets import Polyak, mlp
from wm.core.schedule import Schedule


@dataclass
class SACConfig:
    hidden: list[int] = param([256, 256], each=POSITIVE)
    actor_lr: float = param(3e-4, gt=0)
    critic_lr: float = param(3e-4, gt=0)
    alpha_lr: float = param(3e-4, gt=0)
    batch_size: int = param(256, gt=0)
    gamma: float = param(0.99, ge=0, le=1)
    tau: float = param(0.005, gt=0, le=1)  # target smoothing: target <- (1 - tau) target + tau online
    init_alpha: float = param(1.0, gt=0)
    autotune: bool = True         # learn alpha so the policy entropy tracks target_entropy
    target_entropy: Optional[float] = param(None, free="any entropy in nats")  # None: -action_dim
    log_std_min: float = param(-20.0)
    log_std_max: float = param(2.0)
    actor_every: int = param(1, gt=0)  # critic updates per actor (and temperature) update
    real_ratio: float = param(0.05, ge=0, le=1)  # with a model buffer: the share of each batch from real data
    prefill: int = param(5000, ge=0)
    update: Schedule = field(default_factory=lambda: Schedule(every=1, updates=1, start=5000))

    def check(self) -> None:
        require(self.log_std_min < self.log_std_max, "log_std_min", "must be < log_std_max")


_LOG_2, _HALF_LOG_2PI = math.log(2.0), 0.5 * math.log(2 * math.pi)


class Actor(nn.Module):
    """obs -> tanh-squashed Gaussian over [-1, 1]^A."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: list[int], log_std_min: float, log_std_max: float):
        super().__init__()
        self.net = mlp(obs_dim, 2 * act_dim, hidden, norm=False, act=nn.ReLU)
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def forward(self, obs: torch.Tensor, deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """A squashed action in [-1, 1] and its log-probability (B,)."""
        mean, log_std = self.net(obs).chunk(2, -1)
        log_std = log_std.clamp(self.log_std_min, self.log_std_max)
        # the Gaussian by hand (torch.distributions.Normal costs more than these 64x64 nets on a CPU):
        # u = mean + std eps, log N(u; mean, std) = -eps^2/2 - log std - log(2 pi)/2
        eps = torch.zeros_like(mean) if deterministic else torch.randn_like(mean)
        u = mean + log_std.exp() * eps
        # log|d tanh(u)/du| = log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), numerically stable
        log_prob = (-0.5 * eps.square() - log_std - _HALF_LOG_2PI
                    - 2 * (_LOG_2 - u - F.softplus(-2 * u))).sum(-1)
        return torch.tanh(u), log_prob


class TwinCritic(nn.Module):
    """Two Q networks (obs, action in [-1, 1]) -> (2, B), evaluated together in batched matmuls."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: list[int]):
        super().__init__()
        sizes = [obs_dim + act_dim, *hidden, 1]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for n_in, n_out in itertools.pairwise(sizes):
            layers = [nn.Linear(n_in, n_out) for _ in range(2)]  # PyTorch's default init, per critic
            self.weights.append(nn.Parameter(torch.stack([m.weight.detach().T for m in layers])))
            self.biases.append(nn.Parameter(torch.stack([m.bias.detach()[None] for m in layers])))

    def forward(self, obs: torch.Tensor, action: torch.Tensor, frozen: bool = False) -> torch.Tensor:
        """``frozen``: no gradient reaches the critics' parameters (the actor's loss), only ``action``."""
        x = torch.cat([obs, action], -1).expand(2, -1, -1)
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = torch.baddbmm(b.detach(), x, w.detach()) if frozen else torch.baddbmm(b, x, w)
            if i < len(self.weights) - 1:
                x = F.relu(x)
        return x.squeeze(-1)


class SAC(Agent):
    Config = SACConfig
    action_kinds = ("continuous",)

    def __init__(self, cfg: SACConfig, obs_space: gym.Space, act_space: gym.Space, model=None,
                 device: torch.device | str = "cpu"):
        super().__init__()
        self.cfg, self.device = cfg, torch.device(device)
        object.__setattr__(self, "model", model)  # not a submodule: the model checkpoints itself
        obs_dim, act_dim = int(np.prod(obs_space.shape)), int(np.prod(act_space.shape))
        self.act_shape = act_space.shape
        low = torch.as_tensor(act_space.low, dtype=torch.float32).flatten()
        high = torch.as_tensor(act_space.high, dtype=torch.float32).flatten()
        self.register_buffer("act_scale", ((high - low) / 2).to(self.device))
        self.register_buffer("act_bias", ((high + low) / 2).to(self.device))
        self.actor = Actor(obs_dim, act_dim, cfg.hidden, cfg.log_std_min, cfg.log_std_max).to(self.device)
        self.q = TwinCritic(obs_dim, act_dim, cfg.hidden).to(self.device)
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.tensor(math.log(cfg.init_alpha), device=self.device),
                                      requires_grad=cfg.autotune)
        self.target_entropy = -float(act_dim) if cfg.target_entropy is None else cfg.target_entropy
        # one Adam, a parameter group (and learning rate) each for critics, actor and temperature: one
        # fused step per update instead of three (a parameter without a gradient this update is skipped)
        groups = [{"params": list(self.q.parameters()), "lr": cfg.critic_lr},
                  {"params": list(self.actor.parameters()), "lr": cfg.actor_lr},
                  {"params": [self.log_alpha], "lr": cfg.alpha_lr}]
        self.optim = torch.optim.Adam(groups, **({"fused": True} if self.device.type == "cpu" else {}))
        self.follow = Polyak(self.q, self.q_target)
        self.updates = 0
        self.last_actor: dict[str, float] = {}
        # MBPO: branched rollouts with this policy through a model env (a model that offers ``step``)
        self.rollouts = BranchedRollouts(model, self.policy_actions) if hasattr(model, "step") else None

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.detach().exp()

    # ---- acting ---------------------------------------------------------------------------------
    def to_env(self, squashed: torch.Tensor) -> torch.Tensor:
        return squashed * self.act_scale + self.act_bias

    def from_env(self, action: torch.Tensor) -> torch.Tensor:
        return ((action.float() - self.act_bias) / self.act_scale).clamp(-1.0, 1.0)

    @torch.no_grad()
    def policy_actions(self, obs: torch.Tensor, explore: bool = True) -> torch.Tensor:
        """Env-scaled actions (B, A) for a batch of observations (used by model rollouts)."""
        return self.to_env(self.actor(obs.float().flatten(1), deterministic=not explore)[0])

    @torch.no_grad()
    def act(self, obs, state, is_first, explore):
        action = self.policy_actions(torch.as_tensor(obs, device=self.device), explore)
        return action.cpu().numpy().reshape((len(obs),) + self.act_shape), state

    # ---- learning -------------------------------------------------------------------------------
    def after_model_update(self, replay, step: int) -> dict[str, float]:
        """MBPO: fill the model buffer with rollouts from all real states through the just-refitted model."""
        if self.rollouts is None:
            return {}
        return self.rollouts.run(replay.all_transitions()["obs"].float(), step)

    def batch(self, replay) -> dict[str, torch.Tensor]:
        """``real_ratio`` of the batch from the replay, the rest from the model buffer (if it has any)."""
        B = self.cfg.batch_size
        n_model = 0
        if self.rollouts is not None and len(self.rollouts.buffer) > 0:
            n_model = B - round(self.cfg.real_ratio * B)
        real = replay.sample_transitions(B - n_model)
        real = {k: v.float() if k != "terminal" else v for k, v in real.items()}
        real["obs"], real["next_obs"] = real["obs"].flatten(1), real["next_obs"].flatten(1)
        real["action"] = real["action"].reshape(len(real["action"]), -1)
        if n_model == 0:
            return real
        imagined = self.rollouts.buffer.sample(n_model)
        return {k: torch.cat([real[k], imagined[k].to(real[k].dtype)]) for k in real}

    def train_step(self, replay, step):
        return self.update(self.batch(replay))

    def update(self, b: dict[str, torch.Tensor]) -> dict[str, float]:
        """One critic, actor and temperature step from a single backward pass (the three losses touch
        disjoint parameters: the actor's loss sees the critics frozen, the temperature's sees log pi
        detached), so the actor is scored by the critics as they were before this step's critic update."""
        obs, next_obs, action = b["obs"], b["next_obs"], self.from_env(b["action"])
        reward, not_done = b["reward"].float(), 1.0 - b["terminal"].float()
        alpha = self.alpha
        with torch.no_grad():
            next_action, next_logp = self.actor(next_obs)
            next_q = self.q_target(next_obs, next_action).min(0).values
            target = reward + self.cfg.gamma * not_done * (next_q - alpha * next_logp)
        q1, q2 = self.q(obs, action)
        q1_loss, q2_loss = F.mse_loss(q1, target), F.mse_loss(q2, target)
        loss = q1_loss + q2_loss
        actor_step = self.updates % self.cfg.actor_every == 0
        if actor_step:
            new_action, logp = self.actor(obs)
            q_new = self.q(obs, new_action, frozen=True).min(0).values
            actor_loss = (alpha * logp - q_new).mean()
            loss = loss + actor_loss
            if self.cfg.autotune:
                alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()
                loss = loss + alpha_loss
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        self.optim.step()
        if actor_step:
            self.last_actor = {"train/actor_loss": actor_loss.item(), "train/entropy": -logp.mean().item()}
            if self.cfg.autotune:
                self.last_actor["train/alpha_loss"] = alpha_loss.item()
        self.updates += 1
        self.follow(self.cfg.tau)  # target smoothing
        return {"train/q1_loss": q1_loss.item(), "train/q2_loss": q2_loss.item(), "train/q_mean": q1.mean().item(),
                "train/alpha": self.alpha.item(), **self.last_actor}

    # ---- checkpoint -----------------------------------------------------------------------------
    def state_dict(self, *args, **kwargs):
        state = {"nets": super().state_dict(), "optim": self.optim.state_dict(), "updates": self.updates,
                 "env_step": self.env_step, "last_actor": dict(self.last_actor)}
        if self.rollouts is not None:
            state["model_buffer"] = self.rollouts.buffer.state_dict()
        return state

    def load_state_dict(self, state, strict: bool = True):
        super().load_state_dict(state["nets"], strict=strict)
        self.optim.load_state_dict(state["optim"])
        self.updates, self.env_step, self.last_actor = state["updates"], state["env_step"], state["last_actor"]
        if self.rollouts is not None:
            self.rollouts.buffer.load_state_dict(state["model_buffer"])
