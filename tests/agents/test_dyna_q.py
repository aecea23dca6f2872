"""Tabular Dyna-Q / Dyna-Q+ / prioritized sweeping: learning checks that run in about a second."""

import io

import gymnasium as gym
import numpy as np
import pytest
import torch

import wm.envs  # noqa: F401
from bench.dyna import greedy_path, run_episodes, run_steps
from wm.agents.dyna_q import DynaQAgent, TabularDynaQ
from wm.models.dyna import DynaModel


def maze(env_id="wm/DynaMaze-v0", **kw):
    return gym.make(env_id, **kw).unwrapped


def agent(env, seed, **kw):
    return TabularDynaQ(env.observation_space.n, env.action_space.n, seed=seed, **kw)


def test_planning_speeds_up_learning_on_the_dyna_maze():
    """Example 8.1 in miniature: n=50 needs far fewer real steps than n=0 and learns the 14-step path."""
    totals = {}
    for n in (0, 50):
        steps = []
        for seed in range(3):
            env = maze()
            dq = agent(env, seed, alpha=0.1, epsilon=0.1, gamma=0.95, planning_steps=n)
            lengths = run_episodes(env, dq, 8)
            steps.append(sum(lengths[1:]))  # episode 1 is the same random walk for both
            if n == 50:
                assert dq.planning_updates == 50 * sum(lengths)
                assert max(lengths[-3:]) < 40  # epsilon-greedy near the 14-step optimum
                assert len(greedy_path(env, dq)) - 1 <= 16
        totals[n] = np.mean(steps)
    assert totals[50] * 4 < totals[0]


def test_first_episode_is_a_random_walk_and_q_stays_zero_until_the_goal():
    env = maze()
    dq = agent(env, 0, planning_steps=5)
    cum, _ = run_steps(env, dq, 30)
    assert cum[-1] == 0 and all(q == 0.0 for row in dq.Q for q in row)
    assert dq.planning_updates == 150


def test_q_update_matches_the_book():
    dq = TabularDynaQ(3, 2, alpha=0.5, gamma=0.9, planning_steps=0)
    dq.Q[1] = [2.0, 4.0]
    dq.observe(0, 1, 1.0, 1, False)  # Q(0,1) = 0 + 0.5 * (1 + 0.9 * 4 - 0)
    assert dq.Q[0][1] == pytest.approx(2.3)
    dq.observe(0, 0, 1.0, 1, True)  # terminal: no bootstrap
    assert dq.Q[0][0] == pytest.approx(0.5)


def test_dyna_q_plus_finds_the_shortcut_and_dyna_q_does_not():
    """Example 8.3 shortened: the shortcut opens after 1000 steps; 2500 steps in all, n = 20."""
    found = {}
    for name, kappa in (("dyna_q", 0.0), ("dyna_q_plus", 1e-3)):
        hits = 0
        for seed in (0, 2):
            env = maze("wm/ShortcutMaze-v0", change_at=1000)
            dq = agent(env, seed, alpha=1.0, epsilon=0.1, gamma=0.95, planning_steps=20, kappa=kappa)
            run_steps(env, dq, 2500)
            hits += len(greedy_path(env, dq)) - 1 == 10  # the new shortest path uses (3, 8)
        found[name] = hits
    assert found == {"dyna_q": 0, "dyna_q_plus": 2}


def test_dyna_q_plus_bonus_and_untried_actions_in_planning():
    dq = TabularDynaQ(4, 2, alpha=1.0, gamma=0.0, planning_steps=0, kappa=0.5)
    dq.observe(0, 0, 0.0, 1, False)
    assert (0, 1) in dq.model.table and dq.model.table[(0, 1)] == (0.0, 0, False)  # untried: self-loop, r=0
    for _ in range(3):
        dq.observe(1, 0, 0.0, 2, False)
    # tau(0, 1) = 4 real steps since "never": the planning reward is 0.5 * sqrt(4)
    assert dq.model.bonus((0, 1), 0.5) == pytest.approx(1.0)
    dq.plan(200)
    assert dq.Q[0][1] == pytest.approx(0.5 * np.sqrt(dq.model.time - 0))


def test_prioritized_sweeping_learns_with_few_updates():
    env = maze()
    dq = agent(env, 0, alpha=1.0, epsilon=0.1, gamma=0.95, planning_steps=5, prioritized=True)
    lengths = run_episodes(env, dq, 10)
    assert len(greedy_path(env, dq)) - 1 <= 16
    assert dq.planning_updates < 5 * sum(lengths) / 2  # the queue empties: far fewer than n per step


def test_same_seed_same_run():
    def lengths(seed):
        env = maze()
        return run_episodes(env, agent(env, seed, planning_steps=5, kappa=1e-3), 5)

    assert lengths(1) == lengths(1)
    assert lengths(1) != lengths(2)


class LastStepReplay:
    """The one replay method agent=dyna_q uses: the transitions of the latest env step."""

    def __init__(self):
        self.rows = None

    def last_transitions(self):
        return {k: torch.as_tensor(v) for k, v in self.rows.items()}


def test_agent_wrapper_learns_and_checkpoints_with_weights_only_load():
    torch.manual_seed(0)
    env = maze()
    model = DynaModel(DynaModel.Config(planning_steps=10, kappa=1e-4), env.observation_space,
                      env.action_space)
    ag = DynaQAgent(DynaQAgent.Config(alpha=0.5), env.observation_space, env.action_space, model)
    assert ag.core.model is model.table and ag.core.planning_steps == 10
    replay = LastStepReplay()
    s, _ = env.reset(seed=0)
    episodes = 0
    for step in range(3000):
        a, _ = ag.act(np.array([s]), None, np.array([False]), explore=True)
        s2, r, term, _, _ = env.step(a[0])
        replay.rows = {"obs": [s], "action": [a[0]], "reward": [r], "next_obs": [s2], "terminal": [term]}
        metrics = ag.train_step(replay, step)
        s = s2
        if term:
            episodes += 1
            s, _ = env.reset()
    assert metrics["agent/planning_updates"] == 10.0 and episodes > 20
    assert ag.train_step(replay, step) == {}  # the same env step is learned from once
    buf = io.BytesIO()
    torch.save({"agent": ag.state_dict(), "model": model.state_dict()}, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    torch.manual_seed(1)
    model2 = DynaModel(DynaModel.Config(planning_steps=10, kappa=1e-4), env.observation_space, env.action_space)
    ag2 = DynaQAgent(DynaQAgent.Config(alpha=0.5), env.observation_space, env.action_space, model2)
    model2.load_state_dict(state["model"])
    ag2.load_state_dict(state["agent"])
    assert ag2.core.Q == ag.core.Q and model2.table.table == model.table.table
    assert [ag2.core.act(s) for _ in range(50)] == [ag.core.act(s) for _ in range(50)]  # RNG restored


def test_agent_rejects_vector_observations():
    with pytest.raises(TypeError, match="discrete observations"):
        DynaQAgent(DynaQAgent.Config(), gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2))
    from wm.config import typed
    from wm.errors import ConfigError

    with pytest.raises(ConfigError, match=r"agent.alpha: must be in \(0, 1\]"):
        typed(DynaQAgent, {"alpha": 0.0}, "agent")
    with pytest.raises(ConfigError, match="agent.update: agent=dyna_q learns from every real step"):
        typed(DynaQAgent, {"update": {"every": 2}}, "agent")


def test_eval_acting_does_not_touch_the_training_rng():
    torch.manual_seed(0)
    space = gym.spaces.Discrete(5)
    a, b = (DynaQAgent(DynaQAgent.Config(), space, gym.spaces.Discrete(4)) for _ in range(2))
    b.core.rng.setstate(a.core.rng.getstate())
    b.act(np.arange(5), None, np.ones(5, bool), explore=False)  # all ties: random greedy picks
    assert a.act(np.arange(5), None, None, True)[0].tolist() == b.act(np.arange(5), None, None, True)[0].tolist()


# ---- through train.py -----------------------------------------------------------------------------
def train(tmp_path, name, *overrides):
    """One run of the real config through wm.run (validate -> build -> loop), in this process."""
    import json
    from pathlib import Path

    from hydra import compose, initialize_config_dir

    from wm.run import execute
    from wm.validate import validate

    run_dir = tmp_path / name
    run_dir.mkdir(exist_ok=True)
    conf = Path(__file__).resolve().parents[2] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose("train", overrides=["progress=false", *overrides])
    threads = torch.get_num_threads()
    try:
        execute(cfg, validate(cfg, run_dir), run_dir)
    finally:
        torch.set_num_threads(threads)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return rows, json.loads((run_dir / "summary.json").read_text())


def test_train_py_dyna_maze_preset_learns(tmp_path):
    rows, summary = train(tmp_path, "maze", "experiment=dyna_maze", "total_steps=1500", "eval.every=1500")
    lengths = [r["train/episode_length"] for r in rows if "train/episode_length" in r]
    assert summary["status"] == "completed" and summary["steps"] == 1500
    assert len(lengths) > 20 and np.mean(lengths[-10:]) < 25  # n=50: near the 14-step path
    assert summary["eval/length_mean"] <= 16


def test_train_py_blocking_maze_resumes_exactly_across_the_wall_change(tmp_path):
    """The wall moves at 300 total steps; a run stopped at 450 and resumed matches one that was not."""
    common = ["experiment=dyna_blocking", "env.kwargs.change_at=300", "env.max_episode_steps=300",
              "model.planning_steps=5", "eval.every=450", "checkpoint.every=450", "log_every=100000"]
    full, _ = train(tmp_path, "full", *common, "total_steps=900")
    train(tmp_path, "split", *common, "total_steps=450")
    split, summary = train(tmp_path, "split", *common, "total_steps=900", "resume=true")
    def episodes(rows):
        return [(r["step"], r["train/episode_length"]) for r in rows if "train/episode_length" in r]

    def evals(rows):
        return [(r["step"], r["eval/length_mean"]) for r in rows if "eval/length_mean" in r]

    assert summary["status"] == "completed" and summary["steps"] == 900
    assert any(step > 450 for step, _ in episodes(full))  # episodes after the resume point
    assert episodes(split) == episodes(full) and evals(split) == evals(full)
