"""Observations with several modalities: an image and a vector in one Dict observation, DeepMind Control's
proprioception stripped to joints, and modalities that go missing (MuMMI-style dropout with presence flags).

A multimodal observation is a ``gym.spaces.Dict`` with the keys ``image`` (uint8 (H, W, 3)), ``vector``
(float32 (D,)) and, for each of them, ``present_<key>`` (float32 (1,): 1 while the key is observed, 0 while it
is missing and zeroed). The flags are always there, all ones without dropout, so a model trained on complete
data can be evaluated with data missing (and sees the flags drop for the first time).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from wm.core.seeds import MISSING_STREAM


def present_key(key: str) -> str:
    return f"present_{key}"


def modality_keys(space: gym.spaces.Dict) -> list[str]:
    """The observation keys of a multimodal Dict space (its flags left out), in the space's order."""
    return [k for k in space.spaces if not k.startswith("present_")]


class JointsObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """DeepMind Control (through shimmy): the vector observation replaced by the joint positions and velocities
    only (physics qpos and qvel), with none of the task's own features (target positions, distances, heights,
    orientations), so that in a fusion test the image carries what the task needs."""

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ObservationWrapper.__init__(self, env)
        physics = self._physics()
        dim = int(physics.data.qpos.size + physics.data.qvel.size)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (dim,), np.float32)

    def _physics(self):
        inner = getattr(self.env.unwrapped, "_env", None)
        if inner is None or not hasattr(inner, "physics"):
            raise gym.error.Error("env.proprio=joints needs a DeepMind Control env (dm_control/<domain>-<task>-v0)")
        return inner.physics

    def observation(self, observation: Any) -> np.ndarray:
        data = self._physics().data
        return np.concatenate([data.qpos, data.qvel]).astype(np.float32)


class ImageAndVector(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """A vector-observation env seen as Dict(image: its rgb_array render at size x size, vector: its own
    observation flattened to float32). The env must render rgb_array frames."""

    def __init__(self, env: gym.Env, size: int):
        gym.utils.RecordConstructorArgs.__init__(self, size=size)
        gym.ObservationWrapper.__init__(self, env)
        self.size = size
        vector = gym.spaces.flatten_space(env.observation_space)
        self.observation_space = gym.spaces.Dict({
            "image": gym.spaces.Box(0, 255, (size, size, 3), np.uint8),
            "vector": gym.spaces.Box(-np.inf, np.inf, vector.shape, np.float32),
        })

    def observation(self, observation: Any) -> dict[str, np.ndarray]:
        import cv2

        frame = self.env.render()
        if frame.shape[:2] != (self.size, self.size):
            frame = cv2.resize(frame, (self.size, self.size), interpolation=cv2.INTER_AREA)
        vector = gym.spaces.flatten(self.env.observation_space, observation).astype(np.float32)
        return {"image": np.ascontiguousarray(frame, np.uint8), "vector": vector}


class MissingModalities(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Each modality of a Dict observation goes missing in segments, independently (MuMMI: zeroed with a small
    probability per step, for up to ``max_len`` steps). ``ratio`` is the long-run share of steps a modality is
    missing: at each step a present key starts a gap (this step included) with probability
    p = ratio / (L (1 - ratio)), L = (max_len + 1) / 2 the mean length of a gap (1..max_len steps); the step
    after a gap is always observed (so gaps never merge into longer ones), and L / (L + 1 / p) = ratio. A missing
    key is zeros and its ``present_<key>`` flag 0. The gaps are drawn from the episode's own seed
    (``reset(seed=...)``), so an episode replays exactly. The first observation of an episode is complete."""

    def __init__(self, env: gym.Env, ratio: float = 0.0, max_len: int = 15):
        gym.utils.RecordConstructorArgs.__init__(self, ratio=ratio, max_len=max_len)
        gym.Wrapper.__init__(self, env)
        if not isinstance(env.observation_space, gym.spaces.Dict):
            raise gym.error.Error("missing modalities need a Dict observation (env.pixels=true with env.proprio)")
        if not 0.0 <= ratio < 1.0:
            raise gym.error.Error(f"env.miss_ratio must be in [0, 1) (got {ratio})")
        self.keys = modality_keys(env.observation_space)
        self.ratio, self.max_len = ratio, max_len
        mean_len = (max_len + 1) / 2
        self.p_start = ratio / (mean_len * (1.0 - ratio))
        flags = {present_key(k): gym.spaces.Box(0.0, 1.0, (1,), np.float32) for k in self.keys}
        self.observation_space = gym.spaces.Dict({**env.observation_space.spaces, **flags})
        self.rng = np.random.default_rng([0, MISSING_STREAM])  # reseeded by every seeded reset
        self.left = dict.fromkeys(self.keys, 0)  # steps each key stays missing
        self.rest = dict.fromkeys(self.keys, False)  # the gap just ended: this step is observed

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        if seed is not None:
            self.rng = np.random.default_rng([seed, MISSING_STREAM])
        self.left = dict.fromkeys(self.keys, 0)
        self.rest = dict.fromkeys(self.keys, False)
        return self._mask(obs), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        for k in self.keys:
            if self.rest[k]:
                self.rest[k] = False
            elif self.left[k] == 0 and self.p_start > 0 and self.rng.random() < self.p_start:
                self.left[k] = int(self.rng.integers(1, self.max_len + 1))
        return self._mask(obs), reward, terminated, truncated, info

    def _mask(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = dict(obs)
        for k in self.keys:
            missing = self.left[k] > 0
            if missing:
                out[k] = np.zeros_like(obs[k])
                self.left[k] -= 1
                self.rest[k] = self.left[k] == 0
            out[present_key(k)] = np.array([0.0 if missing else 1.0], np.float32)
        return out
