"""Intrinsic rewards (curiosity) for off-policy agents, and the exploration statistics every run logs
(coverage counts and images: wm/metrics/exploration.py).

An intrinsic module sits between the replay and the agent's update. The agent calls, for every update:

    intrinsic.observe(replay)    # scan the rows added since the last call: observation normaliser,
                                 # visitation counts, per-episode intrinsic/extrinsic returns, first goal
    batch = intrinsic(batch)     # one training step of the module on the batch; returns the batch with
                                 # reward = extrinsic + scale * normalised intrinsic (and, non-episodic,
                                 # terminal cleared)

Subclasses implement ``raw_reward(obs, action, next_obs) -> (B,)`` (no grad) and
``loss(obs, action, next_obs) -> scalar``; shapes: obs/next_obs (B, *obs_shape) as stored by the replay,
action (B,) integer. ``none`` adds nothing but still keeps the exploration statistics, so a plain DQN run
reports the same coverage as a curious one.

Logged (keys "intrinsic/..."): loss, reward_raw, bonus; episode_intrinsic_return / episode_extrinsic_return
(mean over the episodes that ended since the last log); coverage (fraction of grid-world cells, or of bins
of the first two observation dims, visited); first_goal_step: the env step of the first true terminal, which
is the goal in sparse-reward tasks such as MountainCar (in CartPole it would be the first failure); and,
after evaluations, the visitation image coverage/visits_<step>.png.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wm.config import POSITIVE, param
from wm.core.nets import ObsEncoder
from wm.core.stats import RunningMeanStd
from wm.metrics.exploration import Visitation


@dataclass
class IntrinsicConfig:
    scale: float = param(0.0, ge=0)  # reward = extrinsic + scale * intrinsic
    episodic: bool = True       # False: clear `terminal`, so the (intrinsic) return flows across episode ends
    # "std": divide intrinsic rewards by their running std; "return": by the running std of the discounted
    # intrinsic return (Burda et al.); "none": raw
    normalize: str = param("std", choices=("std", "return", "none"))
    norm_window: int = param(0, ge=0)  # > 0: that std forgets, weighing about the last norm_window values
    norm_gamma: float = param(0.99, ge=0, lt=1)  # discount of the intrinsic return behind normalize: return
    obs_norm: bool = True       # feed the module observations standardised by running mean/std (clip +-5)
    hidden: list[int] = param([128, 128], each=POSITIVE)
    lr: float = param(1e-3, gt=0)
    coverage_bins: int = param(40, gt=0)  # per axis of the 2-D visitation histogram (Box observations)
    plot_every: int = param(25000, gt=0)  # a visitation image after the first evaluation past each multiple


def one_hot(action: torch.Tensor, n: int) -> torch.Tensor:
    return F.one_hot(action.long(), n).float()


class Intrinsic(nn.Module):
    """Base: observation features, reward normalisation and exploration statistics."""

    Config = IntrinsicConfig

    def __init__(self, cfg: IntrinsicConfig, obs_space: gym.Space, act_space: gym.Space,
                 device: torch.device | str = "cpu"):
        super().__init__()
        self.cfg, self.device = cfg, torch.device(device)
        self.obs_space, self.n_actions = obs_space, int(act_space.n)
        self.encoder = ObsEncoder(obs_space)
        self.obs_dim = self.encoder.dim
        self.box = isinstance(obs_space, gym.spaces.Box)
        self.obs_rms = RunningMeanStd((self.obs_dim,)) if self.box else None
        self.reward_rms = RunningMeanStd(window=cfg.norm_window)
        self.optim: torch.optim.Optimizer | None = None  # subclasses create it after their networks
        # exploration statistics, filled by observe()
        self.visits = Visitation(obs_space, cfg.coverage_bins)  # coverage (wm/metrics/exploration.py)
        self.cursor: np.ndarray | None = None  # replay rows scanned per env
        self.env_steps: np.ndarray | None = None  # real steps seen per env
        self.ep_int: np.ndarray | None = None
        self.int_return: np.ndarray | None = None
        self.ep_ext: np.ndarray | None = None
        self.first_goal_step = -1
        self.last_plot = -1
        self.stats: dict[str, float] = {}

    # ---- what subclasses implement ---------------------------------------------------------------
    def raw_reward(self, obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        return torch.zeros(len(obs), device=obs.device)

    def loss(self, obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor | None:
        return None

    def reward_and_loss(self, obs, action, next_obs) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Both at once; subclasses whose reward is their loss's per-sample term override it to share
        one forward pass."""
        with torch.no_grad():
            raw = self.raw_reward(obs, action, next_obs)
        return raw, self.loss(obs, action, next_obs)

    # ---- features --------------------------------------------------------------------------------
    def features(self, obs: torch.Tensor) -> torch.Tensor:
        x = self.encoder(obs)
        if self.cfg.obs_norm and self.obs_rms is not None:
            x = ((x - self.obs_rms.mean.float()) / self.obs_rms.std.float()).clamp(-5.0, 5.0)
        return x

    def normalized(self, raw: torch.Tensor) -> torch.Tensor:
        return raw if self.cfg.normalize == "none" else raw / self.reward_rms.std.float()

    # ---- the agent's hook ------------------------------------------------------------------------
    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Train on ``batch`` once and return it with the scaled intrinsic reward added to ``reward``; the
        parts stay apart for agents with a separate intrinsic value head: ``reward_ext``, ``terminal_ext``
        (the env's) and ``bonus`` (scaled, normalised intrinsic reward; its terminal is ``terminal``)."""
        obs, action, next_obs = batch["obs"], batch["action"], batch["next_obs"]
        raw, loss = self.reward_and_loss(obs, action, next_obs)
        raw = raw.detach()
        if self.cfg.normalize == "std":  # ("return": observe() tracks the returns of the rows as they come)
            self.reward_rms.update(raw)
        bonus = self.cfg.scale * self.normalized(raw)
        stats = {}
        if loss is not None:
            self.optim.zero_grad(set_to_none=True)
            loss.backward()
            self.optim.step()
            stats["intrinsic/loss"] = loss.item()
        out = dict(batch, reward=batch["reward"].float() + bonus, reward_ext=batch["reward"].float(), bonus=bonus,
                   terminal_ext=batch["terminal"])
        if not self.cfg.episodic:
            out["terminal"] = torch.zeros_like(batch["terminal"])
        self.stats = {**stats, "intrinsic/reward_raw": raw.mean().item(), "intrinsic/bonus": bonus.mean().item()}
        return out

    @torch.no_grad()
    def observe(self, replay) -> dict[str, float]:
        """Scan the replay rows written since the last call; returns per-episode stats of episodes ended."""
        d, n = replay.data, replay.num_envs
        if self.cursor is None:
            self.cursor, self.env_steps = np.zeros(n, np.int64), np.zeros(n, np.int64)
            self.ep_int, self.ep_ext = np.zeros(n), np.zeros(n)
            self.int_return = np.zeros(n)  # discounted intrinsic return per env, never reset (Burda et al.)
        ended_int, ended_ext = [], []
        new = []  # (env, rows) of the rows written since the last call, all envs at once
        for e in range(n):
            start = max(int(self.cursor[e]), int(replay.count[e]) - replay.size)
            new.append(np.arange(start, int(replay.count[e])))
            self.cursor[e] = replay.count[e]
        env = np.concatenate([np.full(len(r), e) for e, r in enumerate(new)])
        rows = np.concatenate(new)
        if len(rows):
            idx = rows % replay.size
            obs = d["obs"][env, idx]
            self.visits.add(obs)
            if self.obs_rms is not None:
                self.obs_rms.update(self.encoder(torch.as_tensor(obs)))
            step = ~d["is_first"][env, idx] & (rows >= 1)  # rows that end a transition
            env, rows = env[step], rows[step]
        if len(rows):
            prev, cur = (rows - 1) % replay.size, rows % replay.size
            t = lambda a: torch.as_tensor(a, device=self.device)
            raw = self.raw_reward(t(d["obs"][env, prev]), t(d["action"][env, cur]), t(d["obs"][env, cur])).cpu()
            if self.cfg.normalize == "return":
                returns = np.empty(len(cur))
                for i, (e, r) in enumerate(zip(env, raw.numpy())):  # per env in time order
                    self.int_return[e] = self.cfg.norm_gamma * self.int_return[e] + r
                    returns[i] = self.int_return[e]
                self.reward_rms.update(torch.as_tensor(returns))
            bonus = self.cfg.scale * self.normalized(raw).numpy()
            reward, terminal, last = d["reward"][env, cur], d["is_terminal"][env, cur], d["is_last"][env, cur]
            for i, e in enumerate(env):  # rows in time order per env: accumulate, close episodes at is_last
                self.env_steps[e] += 1
                self.ep_int[e] += bonus[i]
                self.ep_ext[e] += reward[i]
                if terminal[i] and (self.first_goal_step < 0 or self.env_steps[e] * n < self.first_goal_step):
                    self.first_goal_step = int(self.env_steps[e] * n)  # envs step in lockstep
                if last[i]:
                    ended_int.append(self.ep_int[e])
                    ended_ext.append(self.ep_ext[e])
                    self.ep_int[e] = self.ep_ext[e] = 0.0
        out = {"intrinsic/coverage": self.visits.coverage()}
        if ended_int:
            out["intrinsic/episode_intrinsic_return"] = float(np.mean(ended_int))
            out["intrinsic/episode_extrinsic_return"] = float(np.mean(ended_ext))
        if self.first_goal_step >= 0:
            out["intrinsic/first_goal_step"] = float(self.first_goal_step)
        return out

    def artifacts(self, run_dir: Path, logger, step: int) -> None:
        """Log coverage; for 2-D histograms also write coverage/visits_<step>.png and register it."""
        counts = self.visits.counts
        if counts is None:
            return
        logger.log({"intrinsic/coverage": self.visits.coverage()}, step)
        if counts.ndim != 2 or step // self.cfg.plot_every <= self.last_plot // self.cfg.plot_every:
            return
        self.last_plot = step
        path = Path(run_dir) / "coverage" / f"visits_{step:08d}.png"
        path.parent.mkdir(exist_ok=True)
        self.visits.plot(path, f"{type(self).__name__} step {step}: coverage {self.visits.coverage():.1%}")
        logger.log_file("intrinsic/visits", path, "image", step)

    # ---- checkpoint ------------------------------------------------------------------------------
    def get_extra_state(self) -> dict[str, Any]:
        return {"optim": None if self.optim is None else self.optim.state_dict(), "counts": self.visits.counts,
                "cursor": self.cursor, "env_steps": self.env_steps, "ep_int": self.ep_int, "ep_ext": self.ep_ext,
                "int_return": self.int_return,
                "first_goal_step": self.first_goal_step, "last_plot": self.last_plot}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        if self.optim is not None:
            self.optim.load_state_dict(state["optim"])
        self.visits.counts = state["counts"]
        for key in ("cursor", "env_steps", "ep_int", "ep_ext", "int_return", "first_goal_step", "last_plot"):
            setattr(self, key, state[key])


class NoIntrinsic(Intrinsic):
    """``intrinsic=none``: no bonus, the batch passes unchanged; exploration statistics are still kept."""

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        self.stats = {}
        return batch

