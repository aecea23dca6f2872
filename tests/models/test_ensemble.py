"""MBPO's probabilistic ensemble: it fits a known linear system, picks the best members as elites, keeps its
log-variance inside the soft bounds, steps as a model env with the true termination function, and the
agent's branched rollouts through that step fill their buffer; the termination functions agree with the real
MuJoCo envs."""

from __future__ import annotations

import io

import gymnasium as gym
import numpy as np
import pytest
import torch

from wm.agents.mbpo import BranchedRollouts
from wm.envs import termination
from wm.models.ensemble import MBPO, MBPOConfig, RolloutSchedule

OBS, ACT = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32), gym.spaces.Box(-1, 1, (2,), np.float32)
A = torch.tensor([[0.9, 0.1, 0.0], [0.0, 0.8, 0.2], [0.1, 0.0, 0.7]])
Bm = torch.tensor([[0.5, 0.0], [0.0, -0.5], [0.3, 0.3]])
c = torch.tensor([1.0, -2.0, 0.5])



def linear_data(n: int, seed: int = 0, noise: float = 0.0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(n, 3, generator=g)
    action = torch.rand(n, 2, generator=g) * 2 - 1
    next_obs = obs @ A.T + action @ Bm.T + noise * torch.randn(n, 3, generator=g)
    return {"obs": obs, "action": action, "reward": obs @ c, "next_obs": next_obs,
            "terminal": torch.zeros(n, dtype=torch.bool)}


def model(**kw) -> MBPO:
    torch.manual_seed(0)
    cfg = {"ensemble_size": 3, "elites": 2, "hidden": [32, 32], "batch_size": 200, "lr": 1e-2, "max_epochs": 60,
           "rollout_batch_size": 64, "weight_decay": 0.0}
    return MBPO(MBPOConfig(**{**cfg, **kw}), OBS, ACT)


def test_ensemble_fits_a_known_linear_system():
    m = model()
    stats = m.fit(linear_data(1000))
    test = linear_data(500, seed=1)
    next_obs, reward = m.predict(test["obs"], test["action"], deterministic=True)
    obs_err = ((next_obs - test["next_obs"]) ** 2).mean() / test["next_obs"].var()
    rew_err = ((reward - test["reward"]) ** 2).mean() / test["reward"].var()
    assert obs_err < 0.02 and rew_err < 0.02, (obs_err, rew_err)
    assert stats["model/holdout_mse_elites"] < 0.02
    # noiseless data: the learned variance shrinks well below the targets' (normalised) variance of 1
    _, logvar = m.net(m._inputs(test["obs"], test["action"]).expand(3, -1, -1))
    assert logvar.exp().mean() < 0.1


def test_elites_are_the_members_with_the_lowest_holdout_error():
    m = model(ensemble_size=4, elites=2, lr=1e-12, max_epochs=1)  # lr ~ 0: training changes nothing
    with torch.no_grad():  # ruin members 1 and 3
        m.net.layers[-1].bias[[1, 3]] += 5.0
    stats = m.fit(linear_data(400))
    assert sorted(m.elites) == [0, 2]
    assert [stats[f"model/elite/{i}"] for i in range(4)] == [1.0, 0.0, 1.0, 0.0]
    mse = [stats[f"model/holdout_mse/{i}"] for i in range(4)]
    assert max(mse[0], mse[2]) < min(mse[1], mse[3])
    # rollouts sample only elites: member 1's huge offset never shows up
    data = linear_data(64)
    next_obs, _ = m.predict(data["obs"], data["action"], deterministic=True)
    bad, _ = m.predict(data["obs"], data["action"], member=torch.ones(64, dtype=torch.long), deterministic=True)
    assert (next_obs - bad).abs().mean() > 1.0


def test_logvar_is_softly_bounded():
    m = model()
    x = torch.randn(3, 10, 5) * 1e4  # extreme inputs
    _, logvar = m.net(x)
    assert (logvar <= m.net.max_logvar + 1e-3).all() and (logvar >= m.net.min_logvar - 1e-3).all()
    assert logvar.max() > 0.4 and logvar.min() < -9.9  # the bounds are reached, not exceeded


def test_early_stopping_stops_once_the_holdout_error_stalls():
    m = model(max_epochs=0, patience=2, improvement=0.5)  # demanding 50% gains: stops after a few epochs
    stats = m.fit(linear_data(300))
    assert 2 <= stats["model/train_epochs"] < 30


def test_rollout_length_schedule():
    s = RolloutSchedule(start=1000, end=2000, min_length=1, max_length=11)
    assert [s.length(x) for x in (0, 1000, 1500, 2000, 9000)] == [1, 1, 6, 11, 11]


def uniform_policy(obs: torch.Tensor) -> torch.Tensor:
    return torch.rand(len(obs), 2) * 2 - 1  # ACT's box


def test_step_is_the_model_env_with_the_true_termination():
    m = model(termination="inverted_pendulum")
    m.fit(linear_data(300))
    data = linear_data(40, seed=2)
    torch.manual_seed(5)
    next_obs, reward, terminal = m.step(data["obs"], data["action"])
    assert next_obs.shape == (40, 3) and reward.shape == (40,) and terminal.dtype == torch.bool
    torch.manual_seed(5)  # the same elites and noise: a step is a sampled prediction plus the termination
    assert all(torch.equal(a, b) for a, b in zip((next_obs, reward), m.predict(data["obs"], data["action"])))
    assert torch.equal(terminal, next_obs[:, 1].abs() > 0.2)  # the true IP condition


def test_rollouts_fill_the_buffer_and_stop_at_terminal_states():
    m = model(rollout_batch_size=200, rollout=RolloutSchedule(0, 1, 3, 3), termination="inverted_pendulum")
    m.fit(linear_data(300))
    rollouts = BranchedRollouts(m, uniform_policy)
    stats = rollouts.run(linear_data(50)["obs"], step=0)
    b = rollouts.buffer
    n = len(b)
    assert stats["model/rollout_length"] == 3 and n == stats["model/rollout_transitions"]
    assert 200 <= n <= 600
    term = b.data["terminal"][:n]
    assert torch.equal(term, b.data["next_obs"][:n, 1].abs() > 0.2)  # the true IP condition
    assert n == 200 + (~term[:200]).sum() + (~term[200: 200 + int((~term[:200]).sum())]).sum()
    assert set(b.sample(32)) == {"obs", "action", "reward", "next_obs", "terminal"}


@pytest.mark.parametrize("env_id", ["InvertedPendulum-v5", "Hopper-v5", "Walker2d-v5", "HalfCheetah-v5"])
def test_termination_functions_agree_with_the_real_envs(env_id):
    env = gym.make(env_id, max_episode_steps=60)
    fn = termination.get(env_id)
    env.action_space.seed(0)
    agree, terminals = 0, 0
    for episode in range(3):
        obs, _ = env.reset(seed=episode)
        done = False
        while not done:
            action = env.action_space.sample()
            next_obs, _, terminated, truncated, _ = env.step(action)
            t = torch.as_tensor(np.stack([obs]), dtype=torch.float32)
            nt = torch.as_tensor(np.stack([next_obs]), dtype=torch.float32)
            pred = bool(fn(t, torch.as_tensor(action[None]), nt)[0])
            assert pred == terminated, (env_id, next_obs)
            agree += 1
            terminals += terminated
            obs, done = next_obs, terminated or truncated
    assert agree > 10
    if env_id in ("InvertedPendulum-v5", "Hopper-v5"):
        assert terminals > 0  # random actions do end these episodes


def test_checkpoint_roundtrip_restores_elites_and_rng():
    m = model(rollout_batch_size=50)
    m.fit(linear_data(300))
    BranchedRollouts(m, uniform_policy).run(linear_data(20)["obs"], 0)  # draws start states from m.rng
    m2 = model(rollout_batch_size=50, lr=0.5)
    saved = io.BytesIO()
    torch.save(m.state_dict(), saved)  # as the checkpoint does (shares no tensors with the live model)
    m2.load_state_dict(torch.load(io.BytesIO(saved.getvalue()), weights_only=False))
    assert m2.elites == m.elites
    data = linear_data(100, seed=3)
    torch.manual_seed(1)
    a = m.fit(data)
    torch.manual_seed(1)
    b = m2.fit(data)
    assert a["model/holdout_mse_elites"] == b["model/holdout_mse_elites"]
