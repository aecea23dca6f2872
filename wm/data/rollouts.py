"""World Models stage 1: random-policy episodes stored as compressed ``.npz`` files, collected by parallel workers.

Each episode ``k`` is one file ``ep_<k>_L<length>.npz`` holding ``obs`` (L+1, H, W, C) uint8 (the frame before
each action plus the last one), ``action`` (L, A) float32 (one-hot for discrete actions), ``reward`` (L,) and
``done`` (L,) (1 where the episode terminated, not where it was truncated). Episode ``k`` starts from the reset
seed ``episode_seed(seed, ROLLOUTS, k)`` and its random actions come from ``np.random.default_rng([seed, k])``,
so any episode can be collected again exactly; a resumed collection keeps the finished files and redoes only the
missing indices. Files are written atomically.

The random policy (Ha & Schmidhuber collect with a random agent; the public implementations use a
"brownian" policy so the car actually drives): continuous actions follow a clipped random walk,
``a_{t+1} = clip(a_t + sqrt(dt) * N(0, 1))``, resampled uniformly with probability ``resample``; discrete actions
are held for a geometric number of steps (mean ``1 / resample``) then resampled uniformly.

Workers: ``workers > 1`` steps that many envs in a gymnasium ``AsyncVectorEnv`` (one process each).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import gymnasium as gym
import numpy as np
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv

from wm.core.seeds import ROLLOUTS, episode_seed
from wm.envs.factory import EnvConfig, make_env
from wm.logging.files import atomic_write

log = logging.getLogger("wm")
NAME = re.compile(r"ep_(\d+)_L(\d+)\.npz$")


def encode_action(space: gym.Space, a) -> np.ndarray:
    """An action as a float vector: one-hot for Discrete, flat for Box."""
    if isinstance(space, gym.spaces.Discrete):
        v = np.zeros(space.n, np.float32)
        v[int(a) - int(space.start)] = 1.0
        return v
    return np.asarray(a, np.float32).reshape(-1)


def action_size(space: gym.Space) -> int:
    return int(space.n) if isinstance(space, gym.spaces.Discrete) else int(np.prod(space.shape))


class RandomPolicy:
    """The exploration policy of one episode (see the module docstring)."""

    def __init__(self, space: gym.Space, rng: np.random.Generator, dt: float, resample: float):
        self.space, self.rng, self.dt, self.resample = space, rng, dt, resample
        self.a = self._uniform()

    def _uniform(self):
        if isinstance(self.space, gym.spaces.Discrete):
            return int(self.space.start + self.rng.integers(self.space.n))
        return self.rng.uniform(self.space.low, self.space.high).astype(np.float32)

    def __call__(self):
        if self.rng.random() < self.resample:
            self.a = self._uniform()
        elif isinstance(self.space, gym.spaces.Box):
            step = np.sqrt(self.dt) * self.rng.standard_normal(self.space.shape)
            self.a = np.clip(self.a + step, self.space.low, self.space.high).astype(np.float32)
        return self.a


def episode_files(folder: Path) -> dict[int, tuple[Path, int]]:
    """{episode index: (path, length)} of the finished episodes in ``folder``."""
    out = {}
    for p in Path(folder).glob("ep_*.npz"):
        m = NAME.search(p.name)
        if m:
            out[int(m.group(1))] = (p, int(m.group(2)))
    return out


def save_episode(folder: Path, k: int, obs, actions, rewards, dones) -> int:
    n = len(actions)
    path = Path(folder) / f"ep_{k:06d}_L{n}.npz"

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, obs=np.asarray(obs, np.uint8), action=np.asarray(actions, np.float32),
                                reward=np.asarray(rewards, np.float32), done=np.asarray(dones, np.float32))

    atomic_write(path, write)
    return n


def load_episode(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as d:
        return {k: d[k] for k in d.files}


def collect(folder: Path, env_cfg: EnvConfig, seed: int, budget: int, max_episodes: int, workers: int,
            dt: float, resample: float, on_episode: Callable[[int, int], None] | None = None) -> int:
    """Collect random episodes into ``folder`` until ``budget`` env steps are stored (counting files already
    there) or ``max_episodes`` exist. The episodes still running when the budget runs out are cut there and
    stored too. Returns the env steps stored. ``on_episode(k, steps_so_far)`` runs after each saved file."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    have = episode_files(folder)
    steps = sum(n for _, n in have.values())
    todo: Iterator[int] = (k for k in range(max_episodes) if k not in have)
    if steps >= budget or len(have) >= max_episodes:
        return steps
    fns = [lambda: make_env(env_cfg) for _ in range(workers)]
    # workers start from a fresh interpreter (forkserver), not a fork of this process: a fork taken while another
    # thread (EnvPool's, torch's) holds a lock can leave the worker waiting on it forever (seen in CI)
    vec = (AsyncVectorEnv(fns, autoreset_mode=AutoresetMode.DISABLED, context="forkserver") if workers > 1 else
           SyncVectorEnv(fns, autoreset_mode=AutoresetMode.DISABLED))
    space = vec.single_action_space
    try:
        slot_k: list[int | None] = [None] * workers
        bufs: list[dict] = [{} for _ in range(workers)]
        policies: list[RandomPolicy | None] = [None] * workers
        obs = np.zeros((workers, *vec.single_observation_space.shape), np.uint8)

        def start(mask: np.ndarray) -> None:
            seeds = []
            for i in range(workers):
                if not mask[i]:
                    seeds.append(None)
                    continue
                k = next(todo, None)
                slot_k[i] = k
                seeds.append(episode_seed(seed, ROLLOUTS, k) if k is not None else 0)
                if k is not None:
                    policies[i] = RandomPolicy(space, np.random.default_rng([seed, k]), dt, resample)
            o, _ = vec.reset(seed=seeds, options={"reset_mask": mask})
            for i in np.flatnonzero(mask):
                obs[i] = o[i]
                bufs[i] = {"obs": [o[i]], "action": [], "reward": [], "done": []}

        def finish(i: int) -> None:
            nonlocal steps
            b = bufs[i]
            n = save_episode(folder, slot_k[i], b["obs"], b["action"], b["reward"], b["done"])
            if on_episode:
                on_episode(slot_k[i], steps)
            log.debug("rollout episode %d: %d steps", slot_k[i], n)

        start(np.ones(workers, bool))
        in_flight = 0
        while any(k is not None for k in slot_k):
            active = np.array([k is not None for k in slot_k])
            acts = [policies[i]() if active[i] else space.sample() for i in range(workers)]
            o, r, term, trunc, _ = vec.step(np.stack(acts) if isinstance(space, gym.spaces.Box) else np.array(acts))
            ended = np.zeros(workers, bool)
            for i in np.flatnonzero(active):
                b = bufs[i]
                b["obs"].append(o[i])
                b["action"].append(encode_action(space, acts[i]))
                b["reward"].append(float(r[i]))
                b["done"].append(float(term[i]))
                ended[i] = term[i] or trunc[i]
            in_flight = sum(len(bufs[i]["action"]) for i in range(workers) if slot_k[i] is not None)
            if steps + in_flight >= budget:  # out of budget: store what is running, cut there
                for i in np.flatnonzero(active):
                    if bufs[i]["action"]:
                        steps += len(bufs[i]["action"])
                        finish(i)
                break
            for i in np.flatnonzero(ended):
                steps += len(bufs[i]["action"])
                finish(i)
                slot_k[i] = None
            if ended.any():
                start(ended)
                if not any(k is not None for k in slot_k):
                    break
    finally:
        vec.close()
    return steps


class FrameDataset:
    """All frames (for the VAE) and episodes (for the MDN-RNN) of a rollouts folder, held in memory."""

    def __init__(self, folder: Path):
        files = episode_files(folder)
        if not files:
            raise FileNotFoundError(f"no rollout episodes in {folder}")
        self.episodes = [load_episode(files[k][0]) for k in sorted(files)]
        self.frames = np.concatenate([e["obs"] for e in self.episodes])  # (N, H, W, C) uint8
        self.steps = sum(len(e["action"]) for e in self.episodes)
