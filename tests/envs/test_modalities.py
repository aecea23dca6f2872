"""Multimodal observations (wm/envs/modalities.py) and DeepMind Control through the env factory."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from tests.conftest import compose_cfg
from wm.envs.factory import EnvConfig, make_env
from wm.envs.modalities import MissingModalities
from wm.errors import ConfigError
from wm.validate import validate


def cartpole_both(**kw) -> gym.Env:
    return make_env(EnvConfig(id="CartPole-v1", pixels=True, proprio="state", size=16, **kw))


def test_image_and_vector_space_and_check_env():
    env = cartpole_both(miss_ratio=0.2)
    check_env(env, skip_render_check=True)
    space = env.observation_space
    assert set(space.spaces) == {"image", "vector", "present_image", "present_vector"}
    assert space["image"].shape == (16, 16, 3) and space["image"].dtype == np.uint8
    assert space["vector"].shape == (4,) and space["vector"].dtype == np.float32
    obs, _ = env.reset(seed=0)
    assert space.contains(obs) and obs["present_image"][0] == 1 and obs["present_vector"][0] == 1


def dict_cartpole(**kw) -> gym.Env:
    """CartPole with a constant stand-in image: the dropout statistics without rendering costs."""
    image = gym.spaces.Box(0, 255, (8, 8, 3), np.uint8)
    space = gym.spaces.Dict({"image": image, "vector": gym.make("CartPole-v1").observation_space})
    env = gym.wrappers.TransformObservation(gym.make("CartPole-v1"), lambda o: {"image": np.full((8, 8, 3), 7, np.uint8),
                                                                                "vector": o}, space)
    return MissingModalities(env, **kw)


def run_flags(env: gym.Env, episodes: int, steps: int) -> dict[str, np.ndarray]:
    """present_* flags of every step (episodes of ``steps`` alternating actions, reset when one ends)."""
    flags = {"present_image": [], "present_vector": []}
    for ep in range(episodes):
        obs, _ = env.reset(seed=ep)
        for t in range(steps):
            for k, seen in flags.items():
                seen.append(obs[k][0])
                if obs[k][0] == 0:
                    assert not obs[k.removeprefix("present_")].any()  # a missing key is zeros
            obs, _, term, trunc, _ = env.step(t % 2)
            if term or trunc:
                obs, _ = env.reset(seed=1000 + ep * steps + t)
    return {k: np.array(v) for k, v in flags.items()}


def test_missing_ratio_gap_lengths_and_replay():
    """The long-run share of missing steps is the configured ratio (numpy's generator: the same on every CPU),
    gaps last at most miss_len steps, the keys go missing independently, and an episode replays exactly."""
    none = run_flags(cartpole_both(), episodes=2, steps=30)
    assert all(v.all() for v in none.values())  # ratio 0: always present
    flags = run_flags(dict_cartpole(ratio=0.2, max_len=5), episodes=40, steps=100)
    for v in flags.values():
        assert abs((1 - v).mean() - 0.2) < 0.04
        gaps = np.diff(np.flatnonzero(np.diff(np.concatenate([[1], v, [1]])) != 0))[::2]
        assert gaps.max() <= 5
    assert (flags["present_image"] != flags["present_vector"]).any()
    again = run_flags(dict_cartpole(ratio=0.2, max_len=5), episodes=40, steps=100)
    assert all((again[k] == flags[k]).all() for k in flags)


def test_missing_needs_a_dict_observation():
    with pytest.raises(gym.error.Error, match="Dict observation"):
        MissingModalities(gym.make("CartPole-v1"), 0.1)


def test_dmc_vector_joints_and_pixels():
    """dm-control through shimmy: the task's features flattened to float32; joints = qpos and qvel only (reacher:
    2 + 2, where the task's own vector also has the target); images rendered at env.size."""
    task = make_env(EnvConfig(id="dm_control/reacher-easy-v0", action_repeat=2))
    joints = make_env(EnvConfig(id="dm_control/reacher-easy-v0", proprio="joints"))
    assert task.observation_space.shape == (6,) and task.observation_space.dtype == np.float32
    assert joints.observation_space.shape == (4,)
    obs, _ = joints.reset(seed=0)
    physics = joints.unwrapped._env.physics
    assert np.allclose(obs, np.concatenate([physics.data.qpos, physics.data.qvel]))
    both = make_env(EnvConfig(id="dm_control/cartpole-swingup-v0", pixels=True, proprio="joints", size=16))
    obs, _ = both.reset(seed=0)
    assert obs["image"].shape == (16, 16, 3) and obs["image"].std() > 0 and obs["vector"].shape == (4,)
    obs, _, term, _, _ = both.step(np.zeros(1, np.float32))
    assert both.observation_space.contains(obs) and not term


@pytest.mark.parametrize("overrides, message", [
    (["env=dmc", "env.proprio=state"], "env.proprio: state adds the env's vector observation to its image"),
    (["env=cartpole", "env.proprio=joints"], "env.proprio: joints reads DeepMind Control's physics"),
    (["env=cartpole", "env.miss_ratio=0.1"], "env.miss_ratio: modalities go missing only in a multimodal"),
    (["env=cartpole", "env.pixels=true", "env.proprio=state", "env.size=16", "model=none", "agent=dqn"],
     "agent=dqn takes one observation array"),
    (["env=cartpole", "env.pixels=true", "env.proprio=state", "env.size=16", "model.encode_keys=[depth]"],
     "model.encode_keys: 'depth' is not an observation key of this env (keys: image, vector)"),
    (["env=cartpole", "env.pixels=true", "env.proprio=state", "env.size=24"],
     "observation 'image' has shape (24, 24, 3): image keys must be"),
    (["env=cartpole", "model.decode_keys=[vector]"], "model.encode_keys / decode_keys choose keys of a Dict"),
])
def test_refusals(tmp_path, overrides, message):
    """Found before anything is built (train.py prints them as one line: tests/test_validation.py)."""
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        validate(compose_cfg(overrides), tmp_path)
