"""One factory for every gymnasium env: wrappers, pixels, action repeat, seeded vector envs.

Vector envs run with autoreset DISABLED: the online loop resets finished envs itself with a seed per
episode, so every episode can be replayed exactly from (seed, actions) when a run resumes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from wm.config import param

# envs are rendered to arrays only (pixels, eval videos), never to a window: without this, pygame's SDL looks for a
# display on a headless machine and prints an "XDG_RUNTIME_DIR is invalid" line into every run's stderr
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")


@dataclass
class EnvConfig:
    id: str = param("CartPole-v1", free="a registered gymnasium id, checked by making the env")
    num_envs: int = param(1, gt=0)  # parallel training envs
    kwargs: dict[str, Any] = param({}, free="passed to gymnasium.make, which checks them")
    max_episode_steps: Optional[int] = param(None, gt=0)
    action_repeat: int = param(1, gt=0)
    pixels: bool = False  # observe size x size RGB frames (rendered, or resized if already images)
    size: int = param(64, gt=0)
    # gymnasium: the reference envs; envpool: EnvPool's C++ versions of those it has (CartPole, MountainCar,
    # LunarLander, BipedalWalker, CarRacing), several times faster; docs/envs.md compares the two
    backend: str = param("gymnasium", choices=("gymnasium", "envpool"))

    @classmethod
    def refuse(cls, plan) -> str | None:
        env = plan.env
        if env.backend != "envpool" or not plan.spaces:
            return None
        if plan.run.eval.video and len(plan.spaces[0].shape) != 3:
            return (f"eval.video=true needs rendered frames, and EnvPool renders only image tasks (CarRacing); "
                    f"use env.backend=gymnasium for {env.id}")
        return None


class ActionRepeat(gym.Wrapper):
    """Repeat each action ``repeat`` times, summing rewards; stop early when the episode ends."""

    def __init__(self, env: gym.Env, repeat: int):
        super().__init__(env)
        self.repeat = repeat

    def step(self, action):
        total = 0.0
        for _ in range(self.repeat):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            if terminated or truncated:
                break
        return obs, total, terminated, truncated, info


def make_env(cfg: EnvConfig, render_mode: str | None = None) -> gym.Env:
    """A single env with the configured wrappers (pixels imply rgb_array rendering)."""
    import wm.envs  # noqa: F401  (registers wm's own envs)

    if cfg.pixels:
        render_mode = "rgb_array"
    kwargs = dict(cfg.kwargs)
    if cfg.max_episode_steps is not None:
        kwargs["max_episode_steps"] = cfg.max_episode_steps
    if cfg.backend == "envpool":
        from wm.envs.envpool_env import EnvPoolEnv

        env = EnvPoolEnv(cfg.id, render_mode=render_mode, **kwargs)
    else:
        env = gym.make(cfg.id, render_mode=render_mode, **kwargs)
    if cfg.pixels:
        space = env.observation_space
        is_image = isinstance(space, gym.spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3
        if not is_image and cfg.backend == "envpool":
            raise gym.error.Error(f"env.pixels=true needs rendered frames, and EnvPool renders only image tasks "
                                  f"(CarRacing); use env.backend=gymnasium for {cfg.id}")
        if not is_image:
            env = gym.wrappers.AddRenderObservation(env, render_only=True)
        env = gym.wrappers.ResizeObservation(env, (cfg.size, cfg.size))
    if cfg.action_repeat > 1:
        env = ActionRepeat(env, cfg.action_repeat)
    return env


def make_vec_env(cfg: EnvConfig, num_envs: int, render_mode: str | None = None) -> SyncVectorEnv:
    """``num_envs`` copies in a SyncVectorEnv with autoreset disabled (the loop resets with seeds)."""
    return SyncVectorEnv(
        [lambda: make_env(cfg, render_mode) for _ in range(num_envs)],
        autoreset_mode=AutoresetMode.DISABLED,
    )
