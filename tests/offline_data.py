"""A small CartPole dataset in Minari's format for the offline tests, made without training anything: a
scripted balancing controller (push towards where the pole and the cart drift) with epsilon-random actions,
so episodes range from short (eps 0.8) to full 500-step ones (eps 0)."""
from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np

from wm.data import offline


def controller(obs: np.ndarray) -> int:
    x, v, theta, omega = obs
    return int(theta + 0.5 * omega + 0.01 * x + 0.1 * v > 0)


def episodes(n: int, eps: float, seed: int) -> list[dict]:
    env, rng, out = gym.make("CartPole-v1"), np.random.default_rng(seed), []
    for k in range(n):
        obs, _ = env.reset(seed=seed * 1000 + k)
        ep = {"observations": [obs], "actions": [], "rewards": [], "terminations": [], "truncations": []}
        while True:
            a = int(rng.integers(2)) if rng.random() < eps else controller(obs)
            obs, r, term, trunc, _ = env.step(a)
            for key, value in zip(("observations", "actions", "rewards", "terminations", "truncations"),
                                  (obs, a, r, term, trunc)):
                ep[key].append(value)
            if term or trunc:
                break
        out.append({k: np.asarray(v) for k, v in ep.items()})
    return out


def make(root: Path, dataset_id: str = "test/cartpole-mixed-v0", per_eps: int = 8) -> Path:
    """Episodes at eps 0, 0.5 and 0.8 (``per_eps`` each), reference returns 22 (random) and 500 (expert)."""
    eps = [e for i, p in enumerate((0.0, 0.5, 0.8)) for e in episodes(per_eps, p, seed=i)]
    env = gym.make("CartPole-v1")
    offline.write(dataset_id, eps, env="CartPole-v1", observation_space=env.observation_space,
                  action_space=env.action_space, root=root, algorithm="scripted controller, eps-random",
                  description="wm tests", ref_min_score=22.0, ref_max_score=500.0)
    return root / dataset_id
