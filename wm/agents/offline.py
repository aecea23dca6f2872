"""Offline RL agents: learned from a fixed dataset (data=minari) by the supervised loop, evaluated in the env the
dataset records. ``OfflineAgent`` holds what they share (the loop's train_step / evaluate contract, batched
evaluation episodes, normalised scores); ``BC`` is behaviour cloning and, with ``top`` < 1, filtered %BC (Chen et
al. 2021: clone only the episodes with the top ``top`` share of returns). Decision Transformer:
wm/agents/decision_transformer.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from wm.agents.base import Agent
from wm.config import param
from wm.core.nets import SavesOptimizers, adam, mlp
from wm.core.seeds import EVAL, OFFLINE_STREAM, episode_seed


def top_episodes(episodes: list[dict], share: float) -> list[dict]:
    """The episodes with the highest returns, at least ``share`` of all steps (%BC keeps whole episodes)."""
    if share >= 1.0:
        return list(episodes)
    order = sorted(episodes, key=lambda ep: -float(np.sum(ep["rewards"])))
    total, kept, steps = sum(len(ep["rewards"]) for ep in episodes), [], 0
    for ep in order:
        kept.append(ep)
        steps += len(ep["rewards"])
        if steps >= share * total:
            break
    return kept


class OfflineAgent(Agent):
    """Trained by the supervised loop: ``train_step(step)`` on the dataset, ``evaluate()`` in the real env
    (``episodes`` episodes from the loop's eval seeds, ``envs`` at a time), ``state_dict`` for resume."""

    loop = "supervised"
    offline = True

    @classmethod
    def refuse(cls, plan) -> str | None:
        if not getattr(plan.data_cls, "offline", False):
            return f"agent={plan.agent.name} learns from an offline RL dataset: use data=minari"
        return None

    def __init__(self, data, device: Any = "cpu", episodes: int = 10, envs: int = 10, seed: int = 0):
        super().__init__()
        self.data, self.device = data, torch.device(device)
        self.eval_episodes, self.eval_envs, self.seed = episodes, envs, seed
        self.obs_space, self.act_space = data.observation_space, data.action_space
        self.discrete = isinstance(self.act_space, gym.spaces.Discrete)
        self.obs_dim = int(np.prod(self.obs_space.shape))
        self.act_dim = int(self.act_space.n) if self.discrete else int(np.prod(self.act_space.shape))

    def rng(self, step: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, OFFLINE_STREAM, step])

    def to_env(self, out: torch.Tensor) -> np.ndarray:
        """Network output -> env actions: argmax of logits, or tanh-squashed values scaled into the box."""
        if self.discrete:
            return out.argmax(-1).cpu().numpy()
        low = torch.as_tensor(self.act_space.low, device=out.device)
        high = torch.as_tensor(self.act_space.high, device=out.device)
        return (low + (torch.tanh(out) + 1) / 2 * (high - low)).cpu().numpy()

    def action_target(self, actions: np.ndarray) -> torch.Tensor:
        """Dataset actions as training targets: class indices, or values scaled into [-1, 1]."""
        if self.discrete:
            return torch.as_tensor(actions, dtype=torch.long, device=self.device)
        low, high = self.act_space.low, self.act_space.high
        return torch.as_tensor(2 * (actions - low) / (high - low) - 1, dtype=torch.float32, device=self.device)

    def action_loss(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.discrete:
            return nn.functional.cross_entropy(out.reshape(-1, self.act_dim), target.reshape(-1), reduction="none")
        return ((torch.tanh(out) - target) ** 2).mean(-1).reshape(-1)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Greedy episodes in the dataset's env, ``eval_envs`` at a time, from the eval seed stream."""
        returns, lengths = [], []
        envs = gym.vector.SyncVectorEnv([self.data.make_env for _ in range(min(self.eval_envs, self.eval_episodes))],
                                        autoreset_mode=gym.vector.AutoresetMode.DISABLED)
        k = envs.num_envs
        for wave in range(0, self.eval_episodes, k):
            n = min(k, self.eval_episodes - wave)
            obs, _ = envs.reset(seed=[episode_seed(self.seed, EVAL, wave + i) for i in range(k)])
            state, first = self.initial_state(k), np.ones(k, bool)
            running, ret, length = np.arange(k) < n, np.zeros(k), np.zeros(k, np.int64)
            while running.any():
                action, state = self.act(obs, state, first, explore=False)
                obs, reward, term, trunc, _ = envs.step(action)
                state = self.observe_reward(state, reward)
                ret += reward * running
                length += running
                done = term | trunc
                running &= ~done
                first = np.zeros(k, bool)
                if running.any() and done.any():  # finished envs idle on a fresh reset until the wave ends
                    obs = np.where(done.reshape((-1,) + (1,) * (obs.ndim - 1)), envs.reset(
                        seed=[0 if d else None for d in done], options={"reset_mask": done})[0], obs)
            returns.extend(ret[:n])
            lengths.extend(length[:n])
        envs.close()
        out = {"eval/return_mean": float(np.mean(returns)), "eval/return_std": float(np.std(returns)),
               "eval/length_mean": float(np.mean(lengths))}
        score = self.data.normalized(out["eval/return_mean"])
        if score is not None:
            out["eval/normalized_score"] = score
        return out

    def observe_reward(self, state: Any, reward: np.ndarray) -> Any:
        """After each eval step: return-conditioned agents count the reward off their target; others ignore it."""
        return state


class BC(SavesOptimizers, OfflineAgent):
    """Behaviour cloning (``top`` = 1) or filtered %BC (``top`` < 1): an MLP from observation to action,
    cross-entropy for discrete actions, MSE on tanh-squashed actions in [-1, 1] for continuous ones."""

    OPTIMIZERS: ClassVar[dict[str, str]] = {"_opt": "opt"}

    @dataclass
    class Config:
        name: str = param("bc", free="the option's name")
        top: float = param(1.0, gt=0, le=1)  # share of steps kept, best episodes first (0.1: 10%-BC)
        units: int = param(256, gt=0)
        layers: int = param(2, gt=0)
        lr: float = param(1e-3, gt=0)
        batch: int = param(256, gt=0)

    def __init__(self, cfg: Config, data, device: Any = "cpu", **kwargs: Any):
        super().__init__(data, device, **kwargs)
        self.cfg = cfg
        kept = top_episodes(data.episodes, cfg.top)
        self.obs = np.concatenate([ep["observations"][:-1] for ep in kept]).reshape(-1, self.obs_dim)
        self.actions = np.concatenate([ep["actions"] for ep in kept])
        self.net = mlp(self.obs_dim, self.act_dim, cfg.units, cfg.layers).to(self.device)
        self.opt = adam(self.net.parameters(), cfg.lr, 1e-8, self.device)

    def train_step(self, step: int) -> dict[str, float]:
        idx = self.rng(step).integers(len(self.obs), size=self.cfg.batch)
        obs = torch.as_tensor(self.obs[idx], dtype=torch.float32, device=self.device)
        loss = self.action_loss(self.net(obs), self.action_target(self.actions[idx])).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"train/loss": loss.item()}

    def act(self, obs: np.ndarray, state: Any, is_first: np.ndarray, explore: bool):
        x = torch.as_tensor(np.asarray(obs), dtype=torch.float32, device=self.device).reshape(len(obs), -1)
        return self.to_env(self.net(x)), state
