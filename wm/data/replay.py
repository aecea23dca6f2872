"""Preallocated replay of env steps, one ring buffer per env, in the DreamerV3 row format.

Row t of env e holds the observation reached at t, the action and reward that led to it, and the flags
is_first (a reset row: action and reward are zeros), is_last (the episode ended here) and is_terminal
(it ended in a true terminal state, so no bootstrapping). A transition is two consecutive rows of one
env whose second row is not a reset; a sequence is L consecutive rows that may span episodes (the model
resets its state where is_first is set). A Dict observation space (images + vectors, wm/envs/modalities.py) is
stored as one array per key: ``data["obs"]`` and every sampled ``obs`` are then dicts of them.
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


def _obs_storage(space: gym.Space, shape: tuple[int, ...]) -> np.ndarray | dict[str, np.ndarray]:
    if isinstance(space, gym.spaces.Dict):
        return {k: _obs_storage(sub, shape) for k, sub in space.spaces.items()}
    obs_shape, obs_dtype = _storage(space)
    return np.zeros(shape + obs_shape, obs_dtype)


def tree_map(fn, x):
    """``fn`` on an array, or on each array of a (nested) dict of them (a Dict observation)."""
    return {k: tree_map(fn, v) for k, v in x.items()} if isinstance(x, dict) else fn(x)


def _assign(dst, index, src) -> None:
    """dst[index] = src, for an array or a (nested) dict of them with the same keys."""
    if isinstance(dst, dict):
        for k, v in dst.items():
            _assign(v, index, src[k])
    else:
        dst[index] = src


def where_rows(mask: np.ndarray, new, old):
    """Per env (the first axis): ``new`` where ``mask`` is set, else ``old``; arrays or dicts of them."""
    if isinstance(new, dict):
        return {k: where_rows(mask, new[k], old[k]) for k in new}
    return np.where(mask.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)


class Replay:
    """Per-env ring buffers. ``capacity`` counts rows over all envs."""

    FIELDS = ("obs", "action", "reward", "is_first", "is_last", "is_terminal")

    def __init__(self, capacity: int, num_envs: int, obs_space: gym.Space, act_space: gym.Space,
                 device: torch.device | str = "cpu", seed: int = 0):
        self.num_envs, self.size = num_envs, max(2, capacity // num_envs)
        act_shape, act_dtype = _storage(act_space)
        shape = (num_envs, self.size)
        self.data = {
            "obs": _obs_storage(obs_space, shape),
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
        self._last_rows = np.zeros(0, np.int64)  # and the absolute rows it wrote

    def __len__(self) -> int:
        return int(np.minimum(self.count, self.size).sum())

    def add(self, env_ids: np.ndarray, **row: np.ndarray) -> None:
        """Append one row to each env in ``env_ids`` (distinct); ``row`` has every field in FIELDS."""
        env_ids = np.asarray(env_ids, np.int64)
        pos = self.count[env_ids] % self.size
        for key in self.FIELDS:
            _assign(self.data[key], (env_ids, pos), row[key])
        self.count[env_ids] += 1
        if not np.any(row["is_first"]):
            self._last_step = env_ids
            self._last_rows = self.count[env_ids] - 1

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

    def _tensor(self, array):
        return tree_map(lambda a: torch.as_tensor(a, device=self.device), array)

    def _take(self, key: str, *index) -> np.ndarray | dict[str, np.ndarray]:
        return tree_map(lambda a: a[index], self.data[key])

    def sample_transitions(self, batch_size: int, n_step: int = 1, gamma: float = 1.0) -> dict[str, torch.Tensor]:
        """Uniform transitions; ``n_step`` > 1 adds each one's n-step return (``return_n``: the discounted
        rewards of up to n steps, stopping at the episode's end and at the newest row), the observation it
        bootstraps from (``obs_n``), that row's ``terminal_n`` and ``discount_n`` = gamma ** steps taken."""
        env, row = self._draw(batch_size, span=2)
        first = self.data["is_first"][env, row % self.size]
        while first.any():  # a reset row has no transition into it: draw those again
            env[first], row[first] = self._draw(int(first.sum()), span=2)
            first = self.data["is_first"][env, row % self.size]
        out = self._transitions(env, row)
        if n_step > 1:
            out.update(self._n_step(env, row, n_step, gamma))
        return out

    def _n_step(self, env: np.ndarray, row: np.ndarray, n: int, gamma: float) -> dict[str, torch.Tensor]:
        d = self.data
        ret, discount = np.zeros(len(row)), np.ones(len(row))
        last = row.copy()  # the row each return bootstraps from
        going = np.ones(len(row), bool)
        for k in range(n):
            r = row + k
            going &= r < self.count[env]  # not written yet: bootstrap from the newest row
            if not going.any():
                break
            ret += np.where(going, discount * d["reward"][env, r % self.size], 0.0)
            discount = np.where(going, discount * gamma, discount)
            last = np.where(going, r, last)
            going &= ~d["is_last"][env, r % self.size]  # the episode ended at r
        cur = last % self.size
        return {"return_n": self._tensor(ret.astype(np.float32)), "obs_n": self._tensor(self._take("obs", env, cur)),
                "terminal_n": self._tensor(d["is_terminal"][env, cur]),
                "discount_n": self._tensor(discount.astype(np.float32))}

    def _transitions(self, env: np.ndarray, row: np.ndarray) -> dict[str, torch.Tensor]:
        prev, cur = (row - 1) % self.size, row % self.size
        d = self.data
        return {
            "obs": self._tensor(self._take("obs", env, prev)),
            "action": self._tensor(d["action"][env, cur]),
            "reward": self._tensor(d["reward"][env, cur]),
            "next_obs": self._tensor(self._take("obs", env, cur)),
            "terminal": self._tensor(d["is_terminal"][env, cur]),
        }

    def all_transitions(self) -> dict[str, torch.Tensor]:
        """Every transition the replay holds (oldest first per env), e.g. to fit a dynamics model."""
        env, row = [], []
        for e in range(self.num_envs):
            held = int(min(self.count[e], self.size))
            rows = np.arange(self.count[e] - held + 1, self.count[e])  # each with its previous row held
            rows = rows[~self.data["is_first"][e, rows % self.size]]
            env.append(np.full(len(rows), e, np.int64))
            row.append(rows)
        return self._transitions(np.concatenate(env), np.concatenate(row))

    def last_transitions(self) -> dict[str, torch.Tensor]:
        """The transitions of the latest env step (one per env that took a real step)."""
        # the rows written by that step: a reset row added since (episode end) must not be used
        return self._transitions(self._last_step, self._last_rows)

    def sample_sequences(self, batch_size: int, length: int, terminal_share: float = 0.0) -> dict[str, torch.Tensor]:
        """``batch_size`` windows of ``length`` rows. ``terminal_share``: that share of them is drawn among the
        windows that hold a terminal row (a terminal picked uniformly, at a uniform place in its window) while
        the replay has one, so that terminals seen a handful of times still reach the model each update."""
        env, last = self._draw(batch_size, span=length)
        n = round(terminal_share * batch_size)
        if n:
            ends = self._draw_terminal_windows(n, length)
            if ends is not None:
                env[:n], last[:n] = ends
        rows = (last[:, None] - length + 1 + np.arange(length)) % self.size
        return {key: self._tensor(self._take(key, env[:, None], rows)) for key in self.FIELDS}

    def _draw_terminal_windows(self, n: int, length: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(env, absolute last row) of ``n`` windows each holding a terminal row, or None without terminals."""
        held = np.minimum(self.count, self.size)
        start = self.count - held  # the oldest absolute row each env still holds
        envs, pos = np.nonzero(self.data["is_terminal"])
        rows = start[envs] + (pos - start[envs]) % self.size  # ring position -> absolute row
        ok = (pos < held[envs]) & (held[envs] >= length)
        envs, rows = envs[ok], rows[ok]
        if not len(rows):
            return None
        pick = self.rng.integers(len(rows), size=n)
        env, row = envs[pick], rows[pick]
        last = row + self.rng.integers(length, size=n)  # the terminal at a uniform place in the window
        return env, np.clip(last, start[env] + length - 1, self.count[env] - 1)

    # ---- checkpoint -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        filled = int(min(self.count.max(initial=0), self.size))  # skip rows never written
        return {
            "data": {k: tree_map(lambda a: a[:, :filled].copy(), v) for k, v in self.data.items()},
            "count": self.count.copy(),
            "rng": self.rng.bit_generator.state,
            "last_step": self._last_step.copy(),
            "last_rows": self._last_rows.copy(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        filled = state["data"]["is_first"].shape[1]
        for key, value in state["data"].items():
            _assign(self.data[key], (slice(None), slice(0, filled)), value)
        self.count[:] = state["count"]
        self.rng.bit_generator.state = state["rng"]
        self._last_step = state["last_step"]
        self._last_rows = state["last_rows"]
