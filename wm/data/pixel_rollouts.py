"""Frames and actions of a gymnasium pixel env under a uniform random policy: data for an action-conditioned
video model (a pixel world model), e.g. ``experiment=convlstm_cartpole_pixels``.

Episodes are rendered through the env factory (``pixels=True``: rgb_array frames resized to size x size) and
cut into windows of ``context + horizon`` frames that never cross an episode boundary. Row t of a window
holds frame t and the action taken after seeing it (one-hot for discrete actions), so the model predicts
frame t+1 from frames <= t and actions <= t. Training and test episodes come from disjoint reset seeds;
batches depend only on (run seed, step), the test windows only on ``test_seed``.

``background`` (for the blank baseline) is the per-pixel median of the training frames: the empty scene.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Optional

import gymnasium as gym
import numpy as np
import torch

from wm.config import check_tree, param


def one_hot_or_raw(space: gym.Space, action: Any) -> np.ndarray:
    if isinstance(space, gym.spaces.Discrete):
        v = np.zeros(space.n, np.float32)
        v[int(action) - space.start] = 1.0
        return v
    return np.asarray(action, np.float32).reshape(-1)


def action_dim(space: gym.Space) -> int:
    return int(space.n) if isinstance(space, gym.spaces.Discrete) else int(np.prod(space.shape))


def collect(env: gym.Env, episodes: int, seed: int, min_len: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``episodes`` random-policy episodes as (frames (L, H, W, C) uint8, actions (L, A) float32), keeping
    those with at least ``min_len`` frames."""
    env.action_space.seed(seed)
    out = []
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed * 100_003 + ep)
        frames, actions = [obs], []
        while True:
            a = env.action_space.sample()
            actions.append(one_hot_or_raw(env.action_space, a))
            obs, _, terminated, truncated, _ = env.step(a)
            if terminated or truncated:
                break
            frames.append(obs)
        actions = actions[: len(frames)]  # the action after the last kept frame is unused padding
        if len(frames) >= min_len:
            out.append((np.stack(frames), np.stack(actions)))
    return out


class PixelRollouts:
    """A dataset of random-policy pixel episodes for supervised action-conditioned video prediction."""

    @dataclass
    class Config:
        id: str = param("CartPole-v1", free="a registered gymnasium id, checked by making the env")
        size: int = param(64, gt=0)
        context: int = param(5, gt=0)
        horizon: int = param(10, gt=0)
        train_episodes: int = param(200, gt=0)
        test_episodes: int = param(40, gt=0)
        max_episode_steps: Optional[int] = param(200, gt=0)
        test_seed: int = param(2016, ge=0)

    def __init__(self, cfg: PixelRollouts.Config, seed: int = 0):
        from wm.envs.factory import EnvConfig, make_env

        check_tree(cfg, "data")  # also when built directly, not through typed()
        self.cfg, self.seed = cfg, int(seed)
        self.context, self.horizon, self.size = cfg.context, cfg.horizon, cfg.size
        self.seq_len = cfg.context + cfg.horizon
        env = make_env(EnvConfig(id=cfg.id, pixels=True, size=cfg.size, max_episode_steps=cfg.max_episode_steps))
        self.action_dim = action_dim(env.action_space)
        # training episodes depend on the run seed, test episodes on test_seed only (disjoint reset seeds)
        self.train_eps = collect(env, cfg.train_episodes, 1 + 2 * self.seed, self.seq_len)
        test_eps = collect(env, cfg.test_episodes, 2 * cfg.test_seed, self.seq_len)
        env.close()
        if not self.train_eps or not test_eps:
            raise ValueError(
                f"{cfg.id}: no random-policy episode reached {self.seq_len} frames; lower context/horizon"
            )
        self.channels = self.train_eps[0][0].shape[-1]
        frames = np.concatenate([f for f, _ in self.train_eps])
        self.background = torch.from_numpy(np.median(frames, axis=0).astype(np.float32) / 255).permute(2, 0, 1)
        # the train windows: (episode, start) pairs; test: every non-overlapping window of the test episodes
        self.train_index = [(e, s) for e, (f, _) in enumerate(self.train_eps) for s in range(len(f) - self.seq_len + 1)]
        tf, ta = [], []
        for f, a in test_eps:
            for s in range(0, len(f) - self.seq_len + 1, self.seq_len):
                tf.append(f[s : s + self.seq_len])
                ta.append(a[s : s + self.seq_len])
        self.test = {
            "frames": torch.from_numpy(np.stack(tf)).permute(0, 1, 4, 2, 3).contiguous(),
            "actions": torch.from_numpy(np.stack(ta)),
        }

    def train_batch(self, step: int, batch_size: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, int(step)])
        pick = rng.integers(0, len(self.train_index), batch_size)
        frames, actions = [], []
        for i in pick:
            e, s = self.train_index[i]
            f, a = self.train_eps[e]
            frames.append(f[s : s + self.seq_len])
            actions.append(a[s : s + self.seq_len])
        return {
            "frames": torch.from_numpy(np.stack(frames)).permute(0, 1, 4, 2, 3).contiguous(),
            "actions": torch.from_numpy(np.stack(actions)),
        }

    def test_batches(self, batch_size: int) -> Iterator[dict[str, torch.Tensor]]:
        for i in range(0, len(self), batch_size):
            yield {k: v[i : i + batch_size] for k, v in self.test.items()}

    def __len__(self) -> int:
        return len(self.test["frames"])
