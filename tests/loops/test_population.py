"""The evolution loop's real-env stepping of a CMA-ES population: batched == one at a time, budgets, z noise from
per-episode generators, and Ray tasks (a rebuilt V + M + C) giving the same returns."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.agents.test_cmaes import CARTPOLE, build
from wm.agents.cmaes import RayConfig
from wm.core.seeds import episode_seed
from wm.loops.population import PopulationEnvs, evaluate_ray, portable, rebuild


@pytest.fixture
def envs():
    e = PopulationEnvs(CARTPOLE)
    yield e
    e.close()


def test_batched_population_equals_one_at_a_time(envs):
    agent = build(population=3)
    model = agent.model
    rng = np.random.default_rng(0)
    params = rng.normal(0, 0.5, (3, agent.dim))
    seeds = [episode_seed(0, 5, i) for i in range(3)]
    batched, steps = envs.evaluate(model, agent, params, seeds)
    single = [envs.evaluate(model, agent, params[i:i + 1], seeds[i:i + 1])[0][0] for i in range(3)]
    assert np.allclose(batched, single)
    assert steps <= batched.sum() <= 2 * steps  # CartPole, action repeat 2: 1 or 2 reward per agent step
    capped, used = envs.evaluate(model, agent, params, seeds, budget=7)
    assert used == 7 and capped.sum() < batched.sum()
    # what a Ray task rebuilds (weights through torch.load(weights_only=True)) gives the same returns
    assert np.array_equal(envs.evaluate(*rebuild(portable(model, agent)), params, seeds)[0], batched)


@pytest.mark.parametrize("sample_z", [True, False])
def test_controller_sees_sampled_z_from_its_own_generators(envs, sample_z):
    agent = build(population=2, sample_z=sample_z)
    model = agent.model
    seen, encode = [], model.encode

    def spy(frames, noise=None):  # records what the controller's z was made from, then encodes as before
        z = encode(frames, noise)
        seen.append((z, encode(frames), noise))
        return z

    model.encode = spy
    params = np.random.default_rng(0).normal(0, 0.5, (2, agent.dim))
    torch.manual_seed(0)
    before = torch.get_rng_state()
    r1, _ = envs.evaluate(model, agent, params, [5, 6])
    assert torch.equal(torch.get_rng_state(), before)  # the global torch RNG is not touched
    first = [z for z, _, _ in seen]
    seen.clear()
    torch.manual_seed(1)
    r2, _ = envs.evaluate(model, agent, params, [5, 6])
    assert np.array_equal(r1, r2) and all(torch.equal(a, z) for a, (z, _, _) in zip(first, seen, strict=True))
    for z, mu, noise in seen:
        assert (noise is not None) == sample_z
        assert torch.equal(z, mu) != sample_z  # sampled: z = mu + sigma * eps differs from mu


@pytest.mark.slow
def test_ray_tasks_give_the_batched_returns(envs):
    ray = pytest.importorskip("ray")
    agent = build(population=4, ray=RayConfig(enabled=True, tasks=2, num_cpus=2))
    params = np.random.default_rng(0).normal(0, 0.5, (4, agent.dim))
    seeds = [episode_seed(0, 6, i) for i in range(4)]
    try:
        remote, steps = evaluate_ray(agent.model, agent, CARTPOLE, params, seeds, budget=None)
    finally:
        ray.shutdown()
    local, local_steps = envs.evaluate(agent.model, agent, params, seeds)
    assert np.allclose(remote, local) and steps == local_steps
