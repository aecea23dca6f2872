"""MBPO's algorithm side: the model buffer and the branched rollouts that fill it (Janner et al. 2019).

The world model (``wm.models.ensemble.MBPO``) only fits the real data and offers a model-env step; this file
holds what MBPO does with it. SAC (``wm/agents/sac.py``) builds a ``BranchedRollouts`` when it is paired with
such a model, and reads top to bottom with it:

- right after every retrain of the model (the loop calls ``Agent.after_model_update`` after each model
  ``train_step``), ``BranchedRollouts.run`` draws ``rollout_batch_size`` start states (with replacement) from
  all real observations, then for k steps (the ``rollout`` schedule over env steps) acts with the current
  policy, calls ``model.step`` and adds the imagined transitions to the buffer; a rollout stops at a
  terminal state;
- the buffer keeps the rollouts of the last ``retain`` retrains (a ring buffer) and SAC takes
  ``1 - real_ratio`` of each batch from it.

The rollout settings (``rollout_batch_size``, ``rollout``, ``retain``, ``deterministic``) are set with the
model's keys (``model.rollout.max_length=...``), where the presets and sweeps set them.

Shapes: obs (B, O), action (B, A) in env units, reward (B,), terminal (B,) bool.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch


class ModelBuffer:
    """A ring buffer of imagined transitions (torch tensors)."""

    KEYS = ("obs", "action", "reward", "next_obs", "terminal")

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, device: torch.device):
        self.capacity, self.pos, self.size = capacity, 0, 0
        self.data = {
            "obs": torch.zeros(capacity, obs_dim, device=device),
            "action": torch.zeros(capacity, act_dim, device=device),
            "reward": torch.zeros(capacity, device=device),
            "next_obs": torch.zeros(capacity, obs_dim, device=device),
            "terminal": torch.zeros(capacity, dtype=torch.bool, device=device),
        }

    def __len__(self) -> int:
        return self.size

    def add(self, **batch: torch.Tensor) -> None:
        n = len(batch["obs"])
        if n >= self.capacity:  # keep the newest
            batch, n = {k: v[-self.capacity:] for k, v in batch.items()}, self.capacity
        idx = (self.pos + torch.arange(n, device=batch["obs"].device)) % self.capacity
        for key in self.KEYS:
            self.data[key][idx] = batch[key].to(self.data[key].dtype)
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, n: int) -> dict[str, torch.Tensor]:
        """``n`` transitions drawn uniformly (with replacement), shaped like ``Replay.sample_transitions``."""
        idx = torch.randint(self.size, (n,), device=self.data["obs"].device)
        return {k: v[idx] for k, v in self.data.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"pos": self.pos, "size": self.size,
                "data": {k: v[: self.size].clone() for k, v in self.data.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pos, self.size = state["pos"], state["size"]
        for k, v in state["data"].items():
            self.data[k][: len(v)] = v


class BranchedRollouts:
    """MBPO's rollouts with ``policy`` (obs (B, O) -> env-scaled actions (B, A)) through ``model.step``.

    ``model`` offers ``cfg`` (``rollout_batch_size``, ``rollout``: the k schedule, ``retain``,
    ``deterministic``), ``obs_dim``, ``act_dim``, ``device``, ``step(obs, action, deterministic)`` and ``rng``,
    the model env's numpy stream: the start states are drawn from it, right after the fit drew from it.
    """

    def __init__(self, model, policy: Callable[[torch.Tensor], torch.Tensor]):
        self.model, self.policy, self.cfg = model, policy, model.cfg
        capacity = self.cfg.rollout_batch_size * max(self.cfg.rollout.min_length, self.cfg.rollout.max_length) \
            * self.cfg.retain
        self.buffer = ModelBuffer(capacity, model.obs_dim, model.act_dim, model.device)

    @torch.no_grad()
    def run(self, starts: torch.Tensor, step: int) -> dict[str, float]:
        """k-step rollouts from ``rollout_batch_size`` of the real states ``starts`` (N, O) into the buffer."""
        t0 = time.perf_counter()
        k = self.cfg.rollout.length(step)
        pick = torch.as_tensor(self.model.rng.integers(len(starts), size=self.cfg.rollout_batch_size),
                               device=self.model.device)
        obs, made = starts[pick], 0
        for _ in range(k):
            action = self.policy(obs)
            next_obs, reward, done = self.model.step(obs, action, deterministic=self.cfg.deterministic)
            self.buffer.add(obs=obs, action=action, reward=reward, next_obs=next_obs, terminal=done)
            made += len(obs)
            obs = next_obs[~done]
            if len(obs) == 0:
                break
        seconds = time.perf_counter() - t0
        return {"model/rollout_length": float(k), "model/rollout_transitions": float(made),
                "model/rollout_transitions_per_s": made / max(seconds, 1e-9),
                "model/buffer_size": float(len(self.buffer))}
