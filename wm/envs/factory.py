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

from wm.config import param, require

# envs are rendered to arrays only (pixels, eval videos), never to a window: without this, pygame's SDL looks for a
# display on a headless machine and prints an "XDG_RUNTIME_DIR is invalid" line into every run's stderr
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
# MuJoCo (DeepMind Control, gymnasium's MuJoCo envs) renders off-screen through EGL: no display is needed
os.environ.setdefault("MUJOCO_GL", "egl")
DMC_PREFIX = "dm_control/"  # DeepMind Control tasks, registered by shimmy: dm_control/<domain>-<task>-v0


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
    # with pixels: also observe a vector, as Dict(image, vector, present_image, present_vector) (multimodal,
    # wm/envs/modalities.py). state: the env's own observation; joints: DeepMind Control's joint positions and
    # velocities only (no task features). Without pixels, joints replaces a DMC task's vector observation
    proprio: str = param("none", choices=("none", "state", "joints"))
    miss_ratio: float = param(0.0, ge=0, lt=1)  # multimodal: share of steps each modality is missing (zeroed)
    miss_len: int = param(15, gt=0)  # multimodal: longest gap in steps (MuMMI: 15)

    def check(self) -> None:
        require(self.proprio != "state" or self.pixels, "proprio",
                "state adds the env's vector observation to its image: set env.pixels=true too (without pixels "
                "the observation is that vector already)")
        require(self.proprio != "joints" or self.id.startswith(DMC_PREFIX), "proprio",
                f"joints reads DeepMind Control's physics: use a {DMC_PREFIX}<domain>-<task>-v0 env (got {self.id})")
        require(self.miss_ratio == 0 or (self.pixels and self.proprio != "none"), "miss_ratio",
                "modalities go missing only in a multimodal observation: set env.pixels=true and env.proprio")

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
    dmc = cfg.id.startswith(DMC_PREFIX)
    if dmc:
        import shimmy

        gym.register_envs(shimmy)
        if render_mode == "rgb_array":  # rendered at the observed size directly, from the tracking camera
            kwargs.setdefault("render_kwargs", {"width": cfg.size, "height": cfg.size, "camera_id": 0})
    if cfg.backend == "envpool":
        from wm.envs.envpool_env import EnvPoolEnv

        env = EnvPoolEnv(cfg.id, render_mode=render_mode, **kwargs)
    else:
        env = gym.make(cfg.id, render_mode=render_mode, **kwargs)
    if dmc:  # the task's Dict of float64 features -> one float32 vector, or the joints alone
        from wm.envs.modalities import JointsObservation

        env = JointsObservation(env) if cfg.proprio == "joints" else gym.wrappers.DtypeObservation(
            gym.wrappers.FlattenObservation(env), np.float32)
    if cfg.action_repeat > 1:  # inside the observation wrappers: one render per agent step, not per env step
        env = ActionRepeat(env, cfg.action_repeat)
    if cfg.pixels and cfg.proprio != "none":
        from wm.envs.modalities import ImageAndVector, MissingModalities

        env = MissingModalities(ImageAndVector(env, cfg.size), cfg.miss_ratio, cfg.miss_len)
    elif cfg.pixels:
        space = env.observation_space
        is_image = isinstance(space, gym.spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3
        if not is_image and cfg.backend == "envpool":
            raise gym.error.Error(f"env.pixels=true needs rendered frames, and EnvPool renders only image tasks "
                                  f"(CarRacing); use env.backend=gymnasium for {cfg.id}")
        if not is_image:
            env = gym.wrappers.AddRenderObservation(env, render_only=True)
        env = gym.wrappers.ResizeObservation(env, (cfg.size, cfg.size))
    return env


def make_vec_env(cfg: EnvConfig, num_envs: int, render_mode: str | None = None) -> SyncVectorEnv:
    """``num_envs`` copies in a SyncVectorEnv with autoreset disabled (the loop resets with seeds)."""
    return SyncVectorEnv(
        [lambda: make_env(cfg, render_mode) for _ in range(num_envs)],
        autoreset_mode=AutoresetMode.DISABLED,
    )
