"""The World Models controller and its CMA-ES: action mapping, resumable ES, batched == one-at-a-time."""

from __future__ import annotations

import pickle

import gymnasium as gym
import numpy as np
import pytest
import torch

from wm.agents.cmaes import CMAES, CMAESConfig, RayConfig
from wm.envs.factory import EnvConfig, episode_seed, make_env
from wm.models.vae_rnn import VAERNN, VAERNNConfig

CARTPOLE = EnvConfig(id="CartPole-v1", pixels=True, size=64, action_repeat=2)


def build(env_cfg=CARTPOLE, **kw):
    env = make_env(env_cfg)
    obs, act = env.observation_space, env.action_space
    env.close()
    mcfg = VAERNNConfig(latent=8)
    mcfg.rnn.hidden = 16
    torch.manual_seed(0)
    model = VAERNN(mcfg, obs, act, torch.device("cpu"))
    return CMAES(CMAESConfig(**kw), obs, act, model, torch.device("cpu"))


def test_continuous_actions_stay_in_the_box():
    box = gym.spaces.Box(np.array([-1, 0, 0], np.float32), np.array([1, 1, 1], np.float32))
    agent = build()
    agent.act_space, agent.out_dim = box, 3
    agent.dim = 3 * agent.in_dim + 3
    params = torch.randn(50, agent.dim) * 10
    a, _ = agent.actions(params, torch.randn(50, agent.in_dim))
    assert a.shape == (50, 3) and box.contains(a[0])
    assert (a >= box.low).all() and (a <= box.high).all()
    assert agent.in_dim == 8 + 16 and build(inputs="z").in_dim == 8  # [z, h] vs z only


def test_es_pickled_mid_run_continues_identically():
    agent = build(population=6)
    agent.start(seed=3)
    f = lambda X: -((X - 0.5) ** 2).sum(1)
    for _ in range(3):
        X = agent.ask()
        agent.tell(X, f(X))
    blob, rng = agent.es_state(), np.random.get_state()
    nxt = agent.ask()
    agent.load_es_state(pickle.loads(pickle.dumps(blob)))
    np.random.set_state(rng)
    assert np.array_equal(agent.ask(), nxt)


def test_batched_population_equals_one_at_a_time():
    agent = build(population=3)
    rng = np.random.default_rng(0)
    params = rng.normal(0, 0.5, (3, agent.dim))
    seeds = [episode_seed(0, 5, i) for i in range(3)]
    batched, steps = agent.evaluate_real(CARTPOLE, params, seeds)
    single = [agent.evaluate_real(CARTPOLE, params[i:i + 1], seeds[i:i + 1])[0][0] for i in range(3)]
    assert np.allclose(batched, single)
    assert steps <= batched.sum() <= 2 * steps  # CartPole, action repeat 2: 1 or 2 reward per agent step
    capped, used = agent.evaluate_real(CARTPOLE, params, seeds, budget=7)
    assert used == 7 and capped.sum() < batched.sum()


def test_dream_is_batched_and_reproducible():
    agent = build(dream_horizon=30)
    frames = np.random.default_rng(0).integers(0, 255, (4, 64, 64, 3), np.uint8)
    agent.model.latents = [{"mu": agent.model.encode(frames).numpy(), "logvar": np.zeros((4, 8), np.float32)}]
    params = np.random.default_rng(1).normal(0, 0.5, (5, agent.dim))
    r1, s1 = agent.evaluate_dream(params, seed=4)
    r2, s2 = agent.evaluate_dream(params, seed=4)
    assert r1.shape == (5,) and np.array_equal(r1, r2) and s1 == s2 and 0 < s1 <= 5 * 30


@pytest.mark.slow
def test_ray_tasks_give_the_batched_returns():
    ray = pytest.importorskip("ray")
    agent = build(population=4, ray=RayConfig(enabled=True, tasks=2, num_cpus=2))
    params = np.random.default_rng(0).normal(0, 0.5, (4, agent.dim))
    seeds = [episode_seed(0, 6, i) for i in range(4)]
    try:
        remote, steps = agent.evaluate_ray(CARTPOLE, params, seeds, budget=None)
    finally:
        ray.shutdown()
    local, local_steps = agent.evaluate_real(CARTPOLE, params, seeds)
    assert np.allclose(remote, local) and steps == local_steps
