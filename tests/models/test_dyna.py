"""model=dyna: the tabular model table and the learned MLP model for vector observations."""

import time

import gymnasium as gym
import numpy as np
import pytest
import torch

from tests.conftest import compose_cfg, train
from wm.models.dyna import DynaModel, TabularModel
from wm.validate import validate


def test_tabular_model_keeps_last_outcome_and_predecessors():
    m = TabularModel(n_actions=2)
    m.update(0, 1, 0.0, 3, False)
    m.update(2, 0, 1.0, 3, True)
    assert m.table[(0, 1)] == (0.0, 3, False) and m.table[(2, 0)] == (1.0, 3, True)
    assert m.predecessors(3) == {(0, 1), (2, 0)}
    m.update(0, 1, 0.5, 4, False)  # the outcome changed (a moved wall): the last one is kept
    assert m.table[(0, 1)] == (0.5, 4, False) and m.predecessors(3) == {(2, 0)}
    assert m.predecessors(4) == {(0, 1)} and len(m) == 2 and m.time == 3
    import random
    rng = random.Random(0)
    assert {m.sample(rng) for _ in range(100)} == {(0, 1), (2, 0)}


def test_tabular_model_plus_adds_untried_actions_and_roundtrips():
    m = TabularModel(n_actions=3, plus=True)
    m.update(5, 2, 0.0, 6, False)
    assert m.table[(5, 0)] == (0.0, 5, False) and m.table[(5, 1)] == (0.0, 5, False)
    assert m.last[(5, 0)] == 0 and m.last[(5, 2)] == 1
    m.update(6, 0, 1.0, 7, True)
    m2 = TabularModel(n_actions=3, plus=True)
    m2.load_state_dict(m.state_dict())
    assert m2.table == m.table and m2.last == m.last and m2.keys == m.keys and m2.time == m.time
    assert m2.pred == m.pred


class ArrayReplay:
    """sample_transitions over fixed arrays, as the core replay returns them (torch tensors)."""

    def __init__(self, data, seed=0):
        self.data, self.rng = data, np.random.default_rng(seed)

    def sample_transitions(self, b):
        idx = self.rng.integers(0, len(self.data["obs"]), b)
        return {k: torch.as_tensor(v[idx]) for k, v in self.data.items()}


def cartpole_transitions(n=6000, seed=0):
    env = gym.make("CartPole-v1")
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    rows = {k: [] for k in ("obs", "action", "reward", "next_obs", "terminal")}
    for i in range(n):
        a = int(rng.integers(2))
        nxt, r, term, trunc, _ = env.step(a)
        for k, v in zip(rows, (obs, a, r, nxt, term)):
            rows[k].append(v)
        obs = nxt
        if term or trunc:
            obs, _ = env.reset(seed=seed + i + 1)
    return {"obs": np.array(rows["obs"], np.float32), "action": np.array(rows["action"], np.int64),
            "reward": np.array(rows["reward"], np.float32), "next_obs": np.array(rows["next_obs"], np.float32),
            "terminal": np.array(rows["terminal"], bool)}


def test_learned_model_fits_cartpole_dynamics_in_seconds():
    torch.manual_seed(0)
    data = cartpole_transitions()
    train = {k: v[:5000] for k, v in data.items()}
    test = {k: torch.as_tensor(v[5000:]) for k, v in data.items()}
    space = gym.make("CartPole-v1")
    model = DynaModel(DynaModel.Config(hidden=64, lr=3e-3, batch_size=128, warmup=10),
                      space.observation_space, space.action_space)
    assert not model.tabular and not model.ready
    replay = ArrayReplay(train)
    t0 = time.perf_counter()
    for step in range(600):
        metrics = model.train_step(replay, step)
    assert time.perf_counter() - t0 < 20
    assert set(metrics) >= {"model/loss", "model/delta_loss", "model/reward_loss", "model/terminal_loss"}
    nxt, r, term = model.dynamics.predict(test["obs"], test["action"])
    err = (nxt - test["next_obs"]).pow(2).mean().item()
    copy_err = (test["obs"] - test["next_obs"]).pow(2).mean().item()  # "nothing moves" baseline
    assert err < 0.05 * copy_err
    assert (r - 1.0).abs().max().item() < 0.2
    assert (term == test["terminal"]).float().mean().item() > 0.95


def test_imagine_appends_imagined_transitions_from_real_states():
    torch.manual_seed(0)
    obs_space, act_space = gym.spaces.Box(-5, 5, (4,), np.float32), gym.spaces.Discrete(2)
    model = DynaModel(DynaModel.Config(hidden=16, imagined_ratio=1.5, warmup=2, batch_size=8),
                      obs_space, act_space)
    data = cartpole_transitions(200)
    replay = ArrayReplay(data)
    batch = replay.sample_transitions(8)
    assert model.imagine(batch, replay) is batch  # not ready before warmup
    model.train_step(replay, 0)
    model.train_step(replay, 1)
    out = model.imagine(batch, replay)
    assert out["obs"].shape == (20, 4) and out["next_obs"].shape == (20, 4)
    assert out["action"].dtype == batch["action"].dtype and out["terminal"].dtype == batch["terminal"].dtype
    real = {tuple(x) for x in batch["obs"].tolist()}
    assert all(tuple(x) in real for x in out["obs"][8:].tolist())  # imagined starts are replayed states
    assert set(out["action"][8:].tolist()) == {0, 1}  # uniform imagined actions
    state = model.state_dict()
    model2 = DynaModel(model.cfg, obs_space, act_space)
    model2.load_state_dict(state)
    assert model2.updates == 2 and torch.equal(model2.dynamics.net[0].weight, model.dynamics.net[0].weight)


def test_tabular_model_feeds_imagined_transitions_from_its_table():
    torch.manual_seed(0)
    model = DynaModel(DynaModel.Config(imagined_ratio=2.0), gym.spaces.Discrete(10), gym.spaces.Discrete(4))
    batch = {"obs": torch.tensor([1, 2]), "action": torch.tensor([0, 3]), "reward": torch.tensor([0.0, 1.0]),
             "next_obs": torch.tensor([2, 3]), "terminal": torch.tensor([False, True])}
    assert model.imagine(batch) is batch  # empty table
    model.table.update(4, 1, 0.5, 5, False)
    out = model.imagine(batch)
    assert out["obs"].tolist() == [1, 2, 4, 4, 4, 4] and out["reward"][2:].tolist() == [0.5] * 4
    assert out["next_obs"].dtype == torch.int64 and out["terminal"].dtype == torch.bool


def test_config_checks():
    from wm.config import typed
    from wm.errors import ConfigError

    with pytest.raises(ConfigError, match="model.planning_steps: must be >= 0"):
        typed(DynaModel, {"planning_steps": -1}, "model")
    with pytest.raises(TypeError, match="discrete actions"):
        DynaModel(DynaModel.Config(), gym.spaces.Discrete(3), gym.spaces.Box(-1, 1, (1,)))


def test_dyna_with_n_step_targets_is_refused_in_one_line_before_any_work(run_dir):
    """Imagined transitions are one-step: DQN's n-step fields would be missing once planning mixes them in."""
    proc = train(run_dir, "experiment=dyna_cartpole", "agent.n_step=3", timeout=120)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and "agent.n_step=3 with model=dyna" in lines[0], lines[0]
    assert "Traceback" not in proc.stderr and not run_dir.exists()
    # without imagined transitions (or with one-step targets) the combination is valid
    validate(compose_cfg(["experiment=dyna_cartpole", "agent.n_step=3", "model.imagined_ratio=0"]), run_dir)
    validate(compose_cfg(["experiment=dyna_cartpole"]), run_dir)
