"""Offline datasets in Minari's format: replay -> episodes -> Minari files -> episodes round trip exactly (ring
wrap, terminations, truncations, the unfinished episode), a real run's replay exported by the CLI and read
back by id and by directory, and one-line errors for missing or malformed datasets."""

from __future__ import annotations

import json
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

from tests.conftest import ROOT, TINY, metrics, summary, train
from wm.data import offline
from wm.data.replay import Replay
from wm.errors import ConfigError

pytest.importorskip("minari")


def fill(replay: Replay, env_id: int, episodes: list[tuple[int, bool]], rng, unfinished: int = 0):
    """Episodes of (length, terminated) into one env's rows in the replay's row format; returns them as the
    KEYS arrays they should come back as."""
    out = []
    for length, terminated in [*episodes, (unfinished, False)]:
        if length == 0:
            continue
        obs = rng.normal(size=(length + 1, 4)).astype(np.float32)
        act, rew = rng.integers(0, 2, length), rng.normal(size=length).astype(np.float32)
        ended = (length, terminated) in episodes
        row = lambda o, a, r, first, last, term: replay.add(
            np.array([env_id]), obs=o[None], action=np.array([a]), reward=np.array([r]), is_first=np.array([first]),
            is_last=np.array([last]), is_terminal=np.array([term]))
        row(obs[0], 0, 0.0, True, False, False)
        for t in range(length):
            end = ended and t == length - 1
            row(obs[t + 1], act[t], rew[t], False, end, end and terminated)
        term = np.zeros(length, bool)
        trunc = np.zeros(length, bool)
        (term if ended and terminated else trunc)[-1] = True
        out.append({"observations": obs, "actions": act, "rewards": rew.astype(np.float64), "terminations": term,
                    "truncations": trunc})
    return out


def same(a: list[dict], b: list[dict]):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        for k in offline.KEYS:
            assert x[k].shape == y[k].shape and np.array_equal(x[k], y[k]), k


def test_replay_to_minari_and_back_is_exact(tmp_path):
    space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
    rep = Replay(capacity=2 * 60, num_envs=2, obs_space=space, act_space=gym.spaces.Discrete(2))
    rng = np.random.default_rng(0)
    # env 0 wraps its 60-row ring: its first episode loses its start and is dropped
    lost = fill(rep, 0, [(30, True)], rng)
    kept0 = fill(rep, 0, [(12, True), (9, False)], rng, unfinished=7)
    kept1 = fill(rep, 1, [(5, True), (20, False)], rng)
    assert lost and rep.count[0] > rep.size
    expected = kept0 + kept1
    same(offline.episodes_from_replay(rep), expected)

    ds = offline.write("test/roundtrip-v0", expected, env="CartPole-v1", observation_space=space,
                       action_space=gym.spaces.Discrete(2), root=tmp_path, ref_min_score=9.0, ref_max_score=500.0)
    assert ds.total_episodes == 5 and ds.total_steps == sum(len(e["rewards"]) for e in expected)
    same(offline.episodes(offline.load(tmp_path / "test" / "roundtrip-v0")), expected)  # by directory
    with offline.datasets_root(tmp_path):
        by_id = offline.load("test/roundtrip-v0")  # by id under MINARI_DATASETS_PATH
    same(offline.episodes(by_id), expected)
    meta = by_id.storage.metadata
    assert meta["ref_min_score"] == 9.0 and meta["ref_max_score"] == 500.0
    with pytest.raises(ConfigError, match="already exists"):
        offline.write("test/roundtrip-v0", expected, env="CartPole-v1", observation_space=space,
                      action_space=gym.spaces.Discrete(2), root=tmp_path)


def test_missing_and_malformed_datasets_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="no Minari dataset 'nope/none-v0'"), offline.datasets_root(tmp_path):
        offline.load("nope/none-v0")
    bad = tmp_path / "bad" / "broken-v0" / "data"
    bad.mkdir(parents=True)
    with pytest.raises(ConfigError, match="no metadata.json"):
        offline.load(bad.parent)
    (bad / "metadata.json").write_text("{not json")
    with pytest.raises(ConfigError, match="malformed Minari dataset") as e:
        offline.load(bad.parent)
    assert "\n" not in str(e.value)


def test_a_runs_replay_exported_by_the_cli(tmp_path):
    """A DQN run's checkpointed replay becomes a Minari dataset whose finished episodes are the ones the run
    logged (same returns, same lengths), read back by `info`; a run dir without a checkpoint is refused."""
    run = tmp_path / "run"
    assert train(run, *TINY, "checkpoint.every=600").returncode == 0
    root = tmp_path / "datasets"
    cli = [sys.executable, "-m", "wm.data.offline"]
    proc = subprocess.run([*cli, "export", str(run), "wm/cartpole-replay-v0", "--root", str(root)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    info = json.loads(proc.stdout)
    ds = offline.load(root / "wm" / "cartpole-replay-v0")
    eps = offline.episodes(ds)
    logged = [(r["train/episode_return"], r["train/episode_length"]) for r in metrics(run) if "train/episode_return" in r]
    finished = [(float(e["rewards"].sum()), len(e["rewards"])) for e in eps if e["terminations"][-1] or
                len(e["rewards"]) == 500]
    assert sorted(finished) == sorted(logged)
    assert info["episodes"] == len(eps) and info["steps"] == sum(len(e["rewards"]) for e in eps) == summary(run)["steps"]
    assert ds.observation_space == gym.make("CartPole-v1").observation_space
    proc = subprocess.run([*cli, "info", str(tmp_path / "nothing")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("error: no Minari dataset")
    proc = subprocess.run([*cli, "export", str(tmp_path), "wm/x-v0", "--root", str(root)], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "no checkpoint" in proc.stderr


def test_a_checkpointed_policy_rolled_out_into_a_dataset(tmp_path):
    """wm.run.restore rebuilds a run's agent from its checkpoint; offline.rollout plays it greedily from its own
    seed stream into whole episodes (same seed: same episodes), which write and load back exactly."""
    from wm.envs.factory import make_env
    from wm.run import restore

    run = tmp_path / "run"
    assert train(run, *TINY, "checkpoint.every=600").returncode == 0
    plan, agent, model = restore(run)
    assert model is None and plan.env.id == "CartPole-v1"
    act = lambda obs, state, first: agent.act(obs, state, first, explore=False)
    eps = offline.rollout(act, make_env(plan.env), 300, seed=5)
    assert sum(len(e["rewards"]) for e in eps) >= 300 and all(e["terminations"][-1] or e["truncations"][-1]
                                                              for e in eps)
    again = offline.rollout(act, make_env(plan.env), 300, seed=5)
    same(eps, again)
    env = make_env(plan.env)
    offline.write("wm/rollout-v0", eps, env="CartPole-v1", observation_space=env.observation_space,
                  action_space=env.action_space, root=tmp_path / "ds", algorithm="test", description="test")
    same(offline.episodes(offline.load(tmp_path / "ds" / "wm" / "rollout-v0")), eps)
    with pytest.raises(ConfigError, match="no checkpoint"):
        restore(tmp_path)
