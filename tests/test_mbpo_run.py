"""MBPO and SAC through the real CLI on tiny budgets: the run logs what the issue asks for, a SIGKILLed and
resumed MBPO run ends exactly like an uninterrupted one, and bad combinations fail in one line."""

from __future__ import annotations

import pytest

from tests.conftest import compose_cfg, kill_then_resume, metrics, summary, train
from wm.errors import ConfigError
from wm.validate import validate

TINY_MBPO = ["experiment=mbpo_inverted_pendulum", "total_steps=300", "eval.every=150", "eval.episodes=2",
             "eval.envs=2", "checkpoint.every=100", "log_every=50",
             "model.hidden=[16,16]", "model.ensemble_size=3", "model.elites=2", "model.max_epochs=3",
             "model.rollout_batch_size=100", "model.rollout.max_length=2", "model.rollout.end=300",
             "model.update.every=100", "model.update.start=100",
             "agent.hidden=[16,16]", "agent.batch_size=32", "agent.prefill=100", "agent.update.start=100",
             "agent.update.updates=1"]
TIMING = ("seconds", "per_s")  # wall-clock metrics differ between any two runs


def test_short_mbpo_run_logs_model_rollout_and_sac_metrics(run_dir):
    proc = train(run_dir, *TINY_MBPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert summary(run_dir)["status"] == "completed" and summary(run_dir)["steps"] == 300
    keys = set().union(*metrics(run_dir))
    for key in ["model/holdout_mse/0", "model/holdout_mse/2", "model/elite/0", "model/holdout_mse_elites",
                "model/rollout_length", "model/buffer_size", "model/real_size", "model/rollout_transitions_per_s",
                "train/q1_loss", "train/q2_loss", "train/actor_loss", "train/alpha", "train/alpha_loss",
                "eval/return_mean"]:
        assert key in keys, key
    rows = [r for r in metrics(run_dir) if "model/rollout_length" in r]
    # k grows from 1 at step 0 to 2 at step 300: 1.33 -> 1 at step 100, 1.67 -> 2 at 200, 2 at 300
    assert [r["model/rollout_length"] for r in rows] == [1.0, 2.0, 2.0]
    assert all(sum(r[f"model/elite/{i}"] for i in range(3)) == 2 for r in rows)


def test_sac_alone_is_the_model_free_baseline(run_dir):
    proc = train(run_dir, "experiment=sac_inverted_pendulum", "total_steps=200", "eval.every=200",
                 "eval.episodes=2", "eval.envs=2", "agent.prefill=100", "agent.update.start=100",
                 "agent.hidden=[16,16]", "log_every=50")
    assert proc.returncode == 0, proc.stderr[-2000:]
    keys = set().union(*metrics(run_dir))
    assert "train/q1_loss" in keys and not any(k.startswith("model/") for k in keys)


def test_eval_stop_at_ends_the_run_at_the_first_eval_that_reaches_it(run_dir):
    proc = train(run_dir, "experiment=sac_inverted_pendulum", "total_steps=400", "eval.every=100",
                 "eval.episodes=2", "eval.envs=2", "agent.prefill=100", "agent.update.start=100",
                 "agent.hidden=[16,16]", "eval.stop_at=1")  # every eval return is >= 1: stop at step 100
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert summary(run_dir)["status"] == "completed" and summary(run_dir)["steps"] == 100
    assert [r["step"] for r in metrics(run_dir) if "eval/return_mean" in r] == [100]


def test_mbpo_sigkill_then_resume_equals_uninterrupted(tmp_path):
    full, killed = tmp_path / "full", tmp_path / "killed"
    assert train(full, *TINY_MBPO).returncode == 0
    kill_then_resume(killed, TINY_MBPO, min_step=100, total_steps=300)
    drop = lambda rows: [{k: v for k, v in r.items() if k != "time" and not k.endswith(TIMING)}
                         for r in rows]
    assert drop(metrics(killed)) == drop(metrics(full))


def test_bad_combinations_fail_in_one_line(tmp_path):
    proc = train(tmp_path / "bad", "env=cartpole", "agent=sac")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "continuous" in lines[0], lines
    assert not (tmp_path / "bad").exists()
    for overrides, words in [(["model.termination=Pong-v5"], "model.termination: no known termination"),
                             (["model.elites=9"], "model.elites: must be <= ensemble_size=7")]:
        with pytest.raises(ConfigError, match=words):
            validate(compose_cfg(["experiment=mbpo_inverted_pendulum", *overrides]), tmp_path)
