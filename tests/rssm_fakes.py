"""Test doubles for the RSSM / actor-critic tests: a tiny in-memory sequence replay and a mini online loop
that follows the row format of docs/ARCHITECTURE.md (obs, action that led to it, reward, is_first,
is_last, is_terminal). They stand in for wm.data.replay and wm.loops.online so the tests stay unit tests."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch


class FakeReplay:
    """Rows per env appended in order; sample_sequences(B, L) draws uniformly random windows (episode
    boundaries inside a window are marked by is_first, as in the real replay)."""

    def __init__(self, seed: int = 0):
        self.rows: list[dict] = []
        self.rng = np.random.default_rng(seed)

    def add(self, obs, action, reward, is_first, is_last, is_terminal):
        self.rows.append({"obs": np.asarray(obs), "action": np.asarray(action), "reward": np.float32(reward),
                          "is_first": bool(is_first), "is_last": bool(is_last), "is_terminal": bool(is_terminal)})

    def __len__(self):
        return len(self.rows)

    def sample_sequences(self, B: int, L: int, terminal_share: float = 0.0) -> dict[str, torch.Tensor]:
        starts = self.rng.integers(0, len(self.rows) - L + 1, size=B)
        out = {}
        for k in ("obs", "action", "reward", "is_first", "is_last", "is_terminal"):
            arr = np.stack([np.stack([self.rows[s + i][k] for i in range(L)]) for s in starts])
            out[k] = torch.as_tensor(arr)
        return out


def collect(env: gym.Env, replay: FakeReplay, steps: int, agent=None, seed: int = 0, explore: bool = True):
    """Run `steps` env steps into `replay`, with uniform random actions when agent is None. Returns the
    list of finished episode returns."""
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    zero = np.zeros_like(env.action_space.sample())
    replay.add(obs, zero, 0.0, True, False, False)
    state, first, ret, rets, ep = None, True, 0.0, [], 0
    for _ in range(steps):
        if agent is None:
            a = env.action_space.sample()
        else:
            a, state = agent.act(obs[None], state, np.array([first]), explore)
            a = a[0]
        obs, r, term, trunc, _ = env.step(a)
        ret += r
        first = False
        replay.add(obs, a, r, False, term or trunc, term)
        if term or trunc:
            rets.append(ret)
            ret, ep, first = 0.0, ep + 1, True
            obs, _ = env.reset(seed=seed + 1000 * ep)
            replay.add(obs, zero, 0.0, True, False, False)
    return rets
