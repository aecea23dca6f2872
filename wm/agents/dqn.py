"""DQN, the model-free baseline: double-DQN targets, Huber loss, a target network (hard copies or Polyak
averaging), a linear epsilon schedule and gradient clipping.

Reads top to bottom: ``act`` picks epsilon-greedy actions, ``train_step`` does one gradient step on a
replay batch. With ``model=dyna`` the batch mixes in transitions imagined by the learned model; with an
``intrinsic`` module (conf/intrinsic/) the batch's rewards get its curiosity bonus.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wm.agents.base import Agent
from wm.config import POSITIVE, param
from wm.core.nets import ObsEncoder, Polyak, adam, mlp
from wm.core.schedule import Schedule
from wm.intrinsic.base import NoIntrinsic


@dataclass
class DQNConfig:
    hidden: list[int] = param([256, 256], each=POSITIVE)
    lr: float = param(2.3e-3, gt=0)
    batch_size: int = param(64, gt=0)
    gamma: float = param(0.99, ge=0, le=1)
    target_update: int = param(128, gt=0)  # gradient steps between target-network updates
    tau: float = param(1.0, gt=0, le=1)  # each target update moves the target this far to the online net (1: copy)
    max_grad_norm: float = param(10.0, gt=0)
    eps_start: float = param(1.0, ge=0, le=1)
    eps_end: float = param(0.04, ge=0, le=1)
    eps_decay_steps: int = param(8000, gt=0)  # env steps over which epsilon falls linearly
    double: bool = True
    prefill: int = param(1000, ge=0)
    update: Schedule = field(default_factory=lambda: Schedule(every=256, updates=128, start=1000))
    # With an intrinsic module: decoupled exploration and exploitation heads on one torso (Schaefer et al.
    # 2021, DeRL): an exploration head learns the curious reward (env + bonus) and drives the behaviour
    # policy; an exploitation head learns the env reward alone, off-policy, and is what evaluation uses.
    intrinsic_head: bool = False
    rescale_obs: bool = False  # Box observations with finite bounds mapped onto [-1, 1] (ObsEncoder)
    n_step: int = param(1, gt=0)  # n-step returns of the env reward (with a bonus: intrinsic_head, whose bonus is one-step)
    # > 0: lr falls linearly to 0 over these env steps (SB3's linear schedule); 0: constant
    lr_decay_steps: int = param(0, ge=0)


class DQN(Agent):
    Config = DQNConfig
    action_kinds = ("discrete",)
    takes_intrinsic = True

    @classmethod
    def refuse(cls, plan) -> str | None:
        return cls.check_parts(plan.agent, plan.intrinsic_cls)

    @staticmethod
    def check_parts(agent: DQNConfig, intrinsic: type | None) -> str | None:
        """Why this agent cannot go with this bonus (None if it can); used by refuse and __init__.
        ``intrinsic``: the intrinsic module's class (None or NoIntrinsic: no bonus).

        One head with n-step targets would sum n env rewards but only step t's bonus, and bootstrap at the
        env's terminals where a non-episodic bonus must not stop: refused. The exploration head of
        ``intrinsic_head`` learns env reward + bonus one-step by design, the env-reward head n-step."""
        bonus = intrinsic is not None and not issubclass(intrinsic, NoIntrinsic)
        if bonus and agent.n_step > 1 and not agent.intrinsic_head:
            return (f"agent.n_step={agent.n_step} with an intrinsic bonus needs agent.intrinsic_head=true "
                    f"(its exploration head learns the bonus one-step); or use agent.n_step=1")
        return None

    def __init__(self, cfg: DQNConfig, obs_space: gym.Space, act_space: gym.Space, model=None,
                 device: torch.device | str = "cpu", intrinsic=None):
        super().__init__()
        self.cfg, self.device = cfg, torch.device(device)
        object.__setattr__(self, "model", model)  # not a submodule: the model checkpoints itself (as in SAC)
        self.intrinsic = intrinsic  # wm.intrinsic module or None
        problem = self.check_parts(cfg, type(intrinsic) if intrinsic else None)
        if problem:
            raise ValueError(problem)
        self.n_actions = int(act_space.n)
        self.encoder = ObsEncoder(obs_space, cfg.rescale_obs).to(self.device)
        self.two_heads = cfg.intrinsic_head and intrinsic is not None
        self.q = mlp(self.encoder.dim, self.n_actions * (2 if self.two_heads else 1), cfg.hidden, norm=False, act=nn.ReLU).to(self.device)
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self.follow = Polyak(self.q, self.q_target)
        self.optim = adam(self.q.parameters(), cfg.lr, 1e-8, self.device)  # torch's (and SB3's) eps
        self.rng = np.random.default_rng(int(torch.randint(2**31, ()).item()))  # from the run's seeded torch RNG
        self.updates = 0

    def epsilon(self) -> float:
        frac = min(1.0, self.env_step / self.cfg.eps_decay_steps)
        return self.cfg.eps_start + frac * (self.cfg.eps_end - self.cfg.eps_start)

    def learning_rate(self) -> float:
        if self.cfg.lr_decay_steps == 0:
            return self.cfg.lr
        return self.cfg.lr * max(0.0, 1.0 - self.env_step / self.cfg.lr_decay_steps)

    def q_values(self, obs: torch.Tensor, net: nn.Module | None = None) -> torch.Tensor:
        """(B, n_actions); with ``intrinsic_head`` (B, 2, n_actions): exploitation (env reward), exploration."""
        q = (net or self.q)(self.encoder(obs))
        return q.unflatten(-1, (2, self.n_actions)) if self.two_heads else q

    @torch.no_grad()
    def act(self, obs, state, is_first, explore):
        q = self.q_values(torch.as_tensor(obs, device=self.device))
        if self.two_heads:
            q = q[:, 1] if explore else q[:, 0]
        greedy = q.argmax(-1).cpu().numpy()
        if not explore:
            return greedy, state
        random = self.rng.random(len(greedy)) < self.epsilon()
        return np.where(random, self.rng.integers(self.n_actions, size=len(greedy)), greedy), state

    def batch(self, replay) -> dict[str, torch.Tensor]:
        """A replay batch; a world model with ``imagine(batch)`` (Dyna) adds imagined transitions."""
        if self.cfg.n_step > 1:
            batch = replay.sample_transitions(self.cfg.batch_size, self.cfg.n_step, self.cfg.gamma)
        else:
            batch = replay.sample_transitions(self.cfg.batch_size)
        if self.model is not None and hasattr(self.model, "imagine"):
            batch = self.model.imagine(batch, replay)
        if self.intrinsic is not None:
            self.explore_stats = self.intrinsic.observe(replay)
            batch = self.intrinsic(batch)
        return batch

    @torch.no_grad()
    def next_value(self, next_obs: torch.Tensor) -> torch.Tensor:
        """max_a Q_target(s', a), (B,) or per head (B, 2); double DQN: at the online net's argmax."""
        next_q_target = self.q_values(next_obs, self.q_target)
        pick = self.q_values(next_obs) if self.cfg.double else next_q_target  # online net picks, target values
        return next_q_target.gather(-1, pick.argmax(-1, keepdim=True)).squeeze(-1)

    def extrinsic_target(self, b: dict[str, torch.Tensor], v_next: torch.Tensor | None, reward_key: str = "reward",
                         terminal_key: str = "terminal") -> torch.Tensor:
        """One-step target from ``reward_key``/``terminal_key`` and V(next_obs), or with ``n_step`` > 1 the
        n-step return of the env reward (replay's return_n) bootstrapped from obs_n."""
        if self.cfg.n_step > 1:
            v_n = self.next_value(b["obs_n"])
            v_n = v_n[:, 0] if self.two_heads else v_n
            return b["return_n"].float() + b["discount_n"] * (1.0 - b["terminal_n"].float()) * v_n
        return b[reward_key].float() + self.cfg.gamma * (1.0 - b[terminal_key].float()) * v_next

    def train_step(self, replay, step):
        b = self.batch(replay)
        with torch.no_grad():  # one-step bootstrap values (n-step targets take theirs from obs_n)
            v_next = self.next_value(b["next_obs"]) if self.two_heads or self.cfg.n_step == 1 else None
        if self.two_heads:
            q = self.q_values(b["obs"]).gather(2, b["action"].long()[:, None, None].expand(-1, 2, 1)).squeeze(2)
            target = self._two_head_target(b, v_next)
        else:
            q = self.q_values(b["obs"]).gather(1, b["action"].long()[:, None]).squeeze(1)
            with torch.no_grad():  # n-step with a bonus needs two heads (check_parts)
                target = self.extrinsic_target(b, v_next)
        loss = F.smooth_l1_loss(q, target)
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(self.q.parameters(), self.cfg.max_grad_norm)
        self.optim.param_groups[0]["lr"] = self.learning_rate()
        self.optim.step()
        self.updates += 1
        if self.updates % self.cfg.target_update == 0:
            self.follow(self.cfg.tau)  # tau 1: a hard copy; below 1: Polyak averaging (as SB3's DQN tau)
        stats = {"train/q_loss": loss.item(), "train/q_mean": q.mean().item(),
                 "train/grad_norm": grad_norm.item(), "train/epsilon": self.epsilon(), "train/lr": self.learning_rate()}
        if self.intrinsic is not None:
            stats.update(self.intrinsic.stats, **self.explore_stats)
        return stats

    @torch.no_grad()
    def _two_head_target(self, b: dict[str, torch.Tensor], v_next: torch.Tensor) -> torch.Tensor:
        """Targets of both heads, (B, 2): two (double) Q-learners on one torso, each bootstrapping at its own
        greedy action. The exploitation head learns the env reward (n-step if configured) and stops at the
        env's terminals, so it values the greedy extrinsic policy whatever explored; the exploration head
        learns env reward + bonus (one-step) and stops at the module's terminals (none if non-episodic)."""
        ext = self.extrinsic_target(b, v_next[:, 0], "reward_ext", "terminal_ext")
        explore = b["reward"].float() + self.cfg.gamma * (1.0 - b["terminal"].float()) * v_next[:, 1]
        return torch.stack([ext, explore], 1)

    def artifacts(self, run_dir, logger, step: int) -> None:
        """Called by the loop after each evaluation: the intrinsic module's coverage image."""
        if self.intrinsic is not None:
            self.intrinsic.artifacts(run_dir, logger, step)

    def state_dict(self, *args, **kwargs):
        return {"nets": super().state_dict(), "optim": self.optim.state_dict(), "updates": self.updates,
                "rng": self.rng.bit_generator.state, "env_step": self.env_step}

    def load_state_dict(self, state, strict: bool = True):
        super().load_state_dict(state["nets"], strict=strict)
        self.optim.load_state_dict(state["optim"])
        self.updates, self.env_step = state["updates"], state["env_step"]
        self.rng.bit_generator.state = state["rng"]
