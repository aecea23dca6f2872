"""env.backend=envpool against gymnasium: what must agree (spaces, episode length, reward and termination
conventions), exact replay of seeded episodes (what resume needs), clear refusals, and tiny runs of the
CarRacing presets on both backends."""

from __future__ import annotations

import platform

import gymnasium as gym
import numpy as np
import pytest

from tests.conftest import assert_resumes_exactly, metrics, refused, summary, train
from wm.envs.factory import EnvConfig, make_env

if not (platform.system() == "Linux" and platform.machine() == "x86_64"):
    pytest.importorskip("envpool")  # EnvPool ships Linux x86_64 wheels only; there it is a dependency

CARRACING = {"id": "CarRacing-v3", "kwargs": {"continuous": True}}


def both(**cfg) -> dict[str, gym.Env]:
    return {b: make_env(EnvConfig(**cfg, backend=b)) for b in ("gymnasium", "envpool")}


@pytest.mark.parametrize("env_id", ["CartPole-v1", "MountainCar-v0", "CarRacing-v3"])
def test_spaces_agree(env_id):
    envs = both(id=env_id)
    g, e = envs["gymnasium"], envs["envpool"]
    for a, b in ((g.observation_space, e.observation_space), (g.action_space, e.action_space)):
        assert type(a) is type(b) and a.shape == b.shape and a.dtype == b.dtype
        if isinstance(a, gym.spaces.Box):
            assert np.allclose(a.low, b.low) and np.allclose(a.high, b.high)
        else:
            assert a.n == b.n
    obs, _ = e.reset(seed=0)
    assert e.observation_space.contains(obs)


def test_carracing_episode_length_and_reward_conventions():
    """1000 frames per episode on both; the first step pays the start tile (+1000/N - 0.1), a standing car then
    pays -0.1 per frame, and driving collects tiles on both."""
    assert gym.spec("CarRacing-v3").max_episode_steps == 1000
    envs = both(**CARRACING)
    for backend, env in envs.items():
        env.reset(seed=3)
        rewards = [env.step(np.zeros(3, np.float32))[1] for _ in range(60)]
        assert 1000 / 400 < rewards[0] + 0.1 < 1000 / 100, backend  # one tile of a 100-400 tile track
        assert np.allclose(rewards[1:], -0.1, atol=1e-4), backend
        env.reset(seed=3)
        gas = sum(env.step(np.array([0.0, 0.5, 0.0], np.float32))[1] for _ in range(100))
        assert gas > 20, backend  # several tiles of 1000/N each
    env = envs["envpool"]
    env.reset(seed=4)
    for t in range(1, 1001):
        _obs, _r, terminated, truncated, _ = env.step(np.zeros(3, np.float32))
        if terminated or truncated:
            break
    assert (t, terminated, truncated) == (1000, False, True)


def test_cartpole_conventions():
    """+1 per step, terminated when the pole falls, truncated at 500 (a balancing policy: the step count)."""
    for backend, env in both(id="CartPole-v1").items():
        env.reset(seed=0)
        for t in range(1, 501):
            _obs, reward, terminated, truncated, _ = env.step(1)
            assert reward == 1.0
            if terminated or truncated:
                break
        assert terminated and not truncated and t < 20, backend  # always pushing right: the pole falls
    env = make_env(EnvConfig(id="CartPole-v1", backend="envpool", max_episode_steps=30))
    obs, _ = env.reset(seed=1)
    for t in range(1, 31):  # a crude balancer survives 30 steps
        obs, _r, terminated, truncated, _ = env.step(int(obs[2] + 0.5 * obs[3] > 0))
        if terminated or truncated:
            break
    assert (t, terminated, truncated) == (30, False, True)


@pytest.mark.parametrize("cfg", [{"id": "CartPole-v1"}, CARRACING], ids=["cartpole", "carracing"])
def test_seeded_episodes_replay_exactly(cfg):
    """Same seed and actions, same episode (resume replays each env from its episode seed); another seed,
    another start; a reset without a seed continues the env's own stream."""
    env = make_env(EnvConfig(**cfg, backend="envpool"))
    rng = np.random.default_rng(0)
    actions = [env.action_space.sample() for _ in range(30)] if cfg["id"] != "CartPole-v1" else rng.integers(0, 2, 30)

    def episode(seed):
        out = [env.reset(seed=seed)[0]]
        out += [env.step(a)[0] for a in actions]
        return np.stack(out)

    a, b, c = episode(7), episode(7), episode(8)
    assert np.array_equal(a, b) and not np.array_equal(a[0], c[0])
    first = env.reset()[0]
    assert not np.array_equal(first, env.reset()[0])


@pytest.mark.parametrize("override, message", [
    (["env=gridworld", "model=none", "agent=dqn"], "wm/GridWorld-v0 is not an EnvPool task"),
    (["env=carracing", "env.kwargs.continuous=false"], "implements only continuous=True"),
    (["env=carracing", "+env.kwargs.domain_randomize=true"], "takes no domain_randomize"),
    (["env.pixels=true"], "EnvPool renders only image tasks"),
    (["eval.video=true"], "EnvPool renders only image tasks"),
])
def test_refusals_are_one_line(run_dir, override, message):
    assert message in refused(run_dir, *override, "env.backend=envpool", "total_steps=50")


def test_dqn_run_on_envpool_resumes_exactly(tmp_path):
    """The online loop on EnvPool's CartPole: resumed from a checkpoint it ends like the uninterrupted run."""
    run = ["env.backend=envpool", "model=none", "agent=dqn", "total_steps=700", "eval.every=350",
           "eval.episodes=2", "eval.envs=2", "checkpoint.every=300", "agent.prefill=100", "agent.update.start=100",
           "agent.update.every=50", "agent.update.updates=2", "log_every=100"]
    assert_resumes_exactly(tmp_path, run)  # from the checkpoint at 600


TINY_PRESETS = {
    "dreamer_carracing": ["model.batch=2", "model.length=8", "model.deter=16", "model.hidden=16", "model.units=16",
                          "model.groups=4", "model.classes=4", "model.cnn_depth=4", "agent.units=16",
                          "agent.horizon=3", "agent.starts=8", "agent.prefill=20", "model.update.start=20",
                          "model.update.every=10", "total_steps=60", "eval.every=60", "checkpoint.every=60",
                          "+env.max_episode_steps=40"],
    "worldmodels_carracing": ["total_steps=200", "env.max_episode_steps=60", "model.vae.max_steps=4",
                              "model.rnn.max_steps=4", "agent.population=4", "agent.rollouts=1"],
}


@pytest.mark.parametrize("backend", ["gymnasium", "envpool"])
@pytest.mark.parametrize("preset", sorted(TINY_PRESETS))
def test_carracing_presets_run_on_each_backend(run_dir, preset, backend):
    proc = train(run_dir, f"experiment={preset}", *TINY_PRESETS[preset], f"env.backend={backend}",
                 "eval.episodes=1", "eval.envs=1", "+env.kwargs.lap_complete_percent=0.95",
                 env={"OMP_NUM_THREADS": "1"}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert summary(run_dir)["status"] == "completed"
    assert any("eval/return_mean" in r for r in metrics(run_dir))


def test_atari_frames_are_channels_last_and_seeded_episodes_replay():
    """env=atari: EnvPool's channels-first Atari frames come out (64, 64, 3) like every other image env; the
    same seed and actions give the same frames and rewards."""
    from tests.conftest import compose_cfg
    from wm.config import typed

    cfg = typed(EnvConfig, compose_cfg(["env=atari", "env.id=Breakout-v5"]).env, "env")
    runs = []
    for _ in range(2):
        env = make_env(cfg)
        obs, _ = env.reset(seed=7)
        assert env.observation_space.shape == obs.shape == (64, 64, 3) and obs.dtype == np.uint8
        assert env.observation_space.contains(obs) and env.action_space.n == 4
        frames, rewards = [obs], []
        for t in range(60):
            obs, reward, *_ = env.step(t % 4)
            frames.append(obs)
            rewards.append(reward)
        runs.append((np.stack(frames), rewards))
    assert np.array_equal(runs[0][0], runs[1][0]) and runs[0][1] == runs[1][1]
    assert runs[0][0].std(0).max() > 0  # the frames move
