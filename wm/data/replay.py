"""Preallocated replay of env steps, one ring buffer per env, in the DreamerV3 row format.

Row t of env e holds the observation reached at t, the action and reward that led to it, and the flags
is_first (a reset row: action and reward are zeros), is_last (the episode ended here) and is_terminal
(it ended in a true terminal state, so no bootstrapping). A transition is two consecutive rows of one
env whose second row is not a reset; a sequence is L consecutive rows that may span episodes (the model
resets its state where is_first is set).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch


def _storage(space: gym.Space) -> tuple[tuple[int, ...], np.dtype]:
    if isinstance(space, gym.spaces.Discrete):
        return (), np.dtype(np.int64)
    dtype = np.dtype(np.float32) if np.issubdtype(space.dtype, np.floating) else np.dtype(space.dtype)
    return tuple(space.shape), dtype


class Replay:
    """Per-env ring buffers. ``capacity`` counts rows over all envs."""

    FIELDS = ("obs", "action", "reward", "is_first", "is_last", "is_terminal")

    def __init__(self, capacity: int, num_envs: int, obs_space: gym.Space, act_space: gym.Space,
                 device: torch.device | str = "cpu", seed: int = 0):
        self.num_envs, self.size = num_envs, max(2, capacity // num_envs)
        obs_shape, obs_dtype = _storage(obs_space)
        act_shape, act_dtype = _storage(act_space)
        shape = (num_envs, self.size)
        self.data = {
            "obs": np.zeros(shape + obs_shape, obs_dtype),
            "action": np.zeros(shape + act_shape, act_dtype),
            "reward": np.zeros(shape, np.float32),
            "is_first": np.zeros(shape, bool),
            "is_last": np.zeros(shape, bool),
            "is_terminal": np.zeros(shape, bool),
        }
        self.count = np.zeros(num_envs, np.int64)  # rows ever written per env
        self.device = torch.device(device)
        self.rng = np.random.default_rng(seed)
        self._last_step = np.zeros(0, np.int64)  # envs of the latest non-reset add

    def __len__(self) -> int:
        return int(np.minimum(self.count, self.size).sum())

    def add(self, env_ids: np.ndarray, **row: np.ndarray) -> None:
        """Append one row to each env in ``env_ids`` (distinct); ``row`` has every field in FIELDS."""
        env_ids = np.asarray(env_ids, np.int64)
        pos = self.count[env_ids] % self.size
        for key in self.FIELDS:
            self.data[key][env_ids, pos] = row[key]
        self.count[env_ids] += 1
        if not np.any(row["is_first"]):
            self._last_step = env_ids

    # ---- sampling -------------------------------------------------------------------------------
    def _draw(self, n: int, span: int) -> tuple[np.ndarray, np.ndarray]:
        """Draw (env, absolute row) with ``span`` rows available at and before each row."""
        avail = np.minimum(self.count, self.size) - (span - 1)
        avail = np.maximum(avail, 0)
        if avail.sum() <= 0:
            raise ValueError(f"replay holds too few rows to sample spans of {span}")
        env = self.rng.choice(self.num_envs, size=n, p=avail / avail.sum())
        offset = (self.rng.random(n) * avail[env]).astype(np.int64)
        return env, self.count[env] - avail[env] + offset  # the last row of each span

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(array, device=self.device)

    def sample_transitions(self, batch_size: int) -> dict[str, torch.Tensor]:
        env, row = self._draw(batch_size, span=2)
        first = self.data["is_first"][env, row % self.size]
        while first.any():  # a reset row has no transition into it: draw those again
            env[first], row[first] = self._draw(int(first.sum()), span=2)
            first = self.data["is_first"][env, row % self.size]
        return self._transitions(env, row)

    def _transitions(self, env: np.ndarray, row: np.ndarray) -> dict[str, torch.Tensor]:
        prev, cur = (row - 1) % self.size, row % self.size
        d = self.data
        return {
            "obs": self._tensor(d["obs"][env, prev]),
            "action": self._tensor(d["action"][env, cur]),
            "reward": self._tensor(d["reward"][env, cur]),
            "next_obs": self._tensor(d["obs"][env, cur]),
            "terminal": self._tensor(d["is_terminal"][env, cur]),
        }

    def last_transitions(self) -> dict[str, torch.Tensor]:
        """The transitions of the latest env step (one per env that took a real step)."""
        env = self._last_step
        return self._transitions(env, self.count[env] - 1)

    def sample_sequences(self, batch_size: int, length: int) -> dict[str, torch.Tensor]:
        env, last = self._draw(batch_size, span=length)
        rows = (last[:, None] - length + 1 + np.arange(length)) % self.size
        return {key: self._tensor(self.data[key][env[:, None], rows]) for key in self.FIELDS}

    # ---- checkpoint -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        filled = int(min(self.count.max(initial=0), self.size))  # skip rows never written
        return {
            "data": {k: v[:, :filled].copy() for k, v in self.data.items()},
            "count": self.count.copy(),
            "rng": self.rng.bit_generator.state,
            "last_step": self._last_step.copy(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state["data"].items():
            self.data[key][:, : value.shape[1]] = value
        self.count[:] = state["count"]
        self.rng.bit_generator.state = state["rng"]
        self._last_step = state["last_step"]
