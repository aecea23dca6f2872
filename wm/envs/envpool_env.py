"""EnvPool's C++ environments as ordinary single gymnasium envs (``env.backend=envpool``).

Each instance drives a one-env EnvPool pool, so the factory's wrappers (pixels, action repeat), the vector
envs and the loops' per-episode seeding work exactly as with gymnasium; the speed comes from EnvPool's C++
simulation and rendering (CarRacing-v3: ~2,100-2,500 steps per CPU-second here against ~125 for gymnasium's,
whose cost is almost all software rendering; bench/env_backends.py measures it).

EnvPool seeds an env once, when it is made. A reset with a seed therefore makes a fresh one-env pool with that
seed (4-6 ms), and a reset without one continues the env's own stream, as gymnasium's reset does. Same seed,
same actions: same episode, so runs resume exactly. The two backends draw different tracks (or start states)
for the same seed: they agree in spaces, episode length, reward and termination rules, not in trajectories
(docs/envs.md has the comparison, tests/envs/test_envpool_backend.py what is checked).
"""

from __future__ import annotations

import warnings
from functools import partial
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

INSTALL = "pip install 'envpool==1.2.0' (wheels for Linux x86_64 only)"
# gymnasium keyword arguments whose only value EnvPool implements: accepted when they ask for that value
IMPLIED = {"continuous": True}


def envpool_module():
    try:
        import envpool
    except ImportError:
        raise gym.error.DependencyNotInstalled(f"env.backend=envpool needs EnvPool: {INSTALL}") from None
    return envpool


def envpool_ids() -> list[str]:
    return sorted(envpool_module().list_all_envs())


class EnvPoolEnv(gym.Env):
    """One EnvPool env with gymnasium's single-env API (unbatched observations, Python scalars)."""

    metadata: ClassVar[dict] = {"render_modes": ["rgb_array"]}

    def __init__(self, task_id: str, max_episode_steps: int | None = None, render_mode: str | None = None,
                 **kwargs: Any):
        envpool = envpool_module()
        if task_id not in envpool.list_all_envs():
            raise gym.error.Error(f"{task_id} is not an EnvPool task; env.backend=envpool has: "
                                  f"{', '.join(i for i in envpool_ids() if gym.registry.get(i))}")
        with warnings.catch_warnings():  # EnvPool's float64 Box bounds: gymnasium warns on every space made
            warnings.simplefilter("ignore", UserWarning)
            fields = set(envpool.make_spec(task_id).config._fields)
        for key, value in IMPLIED.items():
            if key in kwargs and key not in fields and kwargs.pop(key) != value:
                raise gym.error.Error(f"EnvPool's {task_id} implements only {key}={value}")
        unknown = sorted(set(kwargs) - fields)
        if unknown:
            raise gym.error.Error(f"EnvPool's {task_id} takes no {', '.join(unknown)}; "
                                  f"it takes {', '.join(sorted(fields))}")
        if max_episode_steps is not None:
            kwargs["max_episode_steps"] = max_episode_steps
        self._pool = partial(envpool.make_gymnasium, task_id, num_envs=1, **kwargs)
        self.pool = self._make(seed=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            space = self.pool.observation_space
            self.action_space = self.pool.action_space
        self.image = len(space.shape) == 3 and space.dtype == np.uint8
        # Atari frames come channels-first (C, H, W); every image env here is (H, W, C), as gymnasium renders
        self.channels_first = self.image and space.shape[0] in (1, 3) and space.shape[-1] not in (1, 3)
        if self.channels_first:
            space = gym.spaces.Box(0, 255, (*space.shape[1:], space.shape[0]), np.uint8)
        self.observation_space = space
        self.render_mode = render_mode
        self.task_id = task_id
        self._frame: np.ndarray | None = None

    def _make(self, seed: int):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return self._pool(seed=seed)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:  # EnvPool takes its seed when it is made (an int32)
            self.pool.close()
            self.pool = self._make(seed=int(seed) % 2**31)
        obs, _ = self.pool.reset()
        self._frame = self._observation(obs[0])
        return self._frame, {}

    def step(self, action):
        obs, reward, terminated, truncated, _ = self.pool.step(np.asarray(action)[None])
        self._frame = self._observation(obs[0])
        return self._frame, float(reward[0]), bool(terminated[0]), bool(truncated[0]), {}

    def _observation(self, obs: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(obs.transpose(1, 2, 0)) if self.channels_first else obs

    def render(self):
        """The current frame, for image tasks (CarRacing): EnvPool has no renderer for the others."""
        if not self.image:
            raise gym.error.Error(f"EnvPool's {self.task_id} has vector observations and cannot render frames")
        return self._frame

    def close(self):
        self.pool.close()
