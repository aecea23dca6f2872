"""Checkpoint and resume: a run killed with SIGKILL and resumed ends exactly like an uninterrupted one;
SIGTERM checkpoints and marks the run interrupted."""

from __future__ import annotations

import signal

from tests.conftest import (
    TINY,
    assert_resumes_exactly,
    kill_then_resume,
    metrics,
    summary,
    train,
    wait_for_checkpoint,
)

RUN = [*TINY, "total_steps=2000", "eval.every=500", "checkpoint.every=200"]


def evals(run_dir):
    return [(r["step"], r["eval/return_mean"], r["eval/return_std"]) for r in metrics(run_dir)
            if "eval/return_mean" in r]


def test_sigkill_then_resume_equals_uninterrupted(tmp_path):
    full, killed = tmp_path / "full", tmp_path / "killed"
    assert train(full, *RUN).returncode == 0

    kill_then_resume(killed, RUN, min_step=600, total_steps=2000)
    assert summary(killed)["status"] == "completed"
    assert evals(killed) == evals(full)
    steps = [r["step"] for r in metrics(killed)]
    assert steps == sorted(steps)  # appended without repeating steps
    drop = lambda rows: [{k: v for k, v in r.items() if k != "time"} for r in rows]
    assert drop(metrics(killed)) == drop(metrics(full))


def test_sigterm_checkpoints_and_marks_interrupted(run_dir):
    proc = train(run_dir, *RUN, background=True)
    wait_for_checkpoint(run_dir, proc, min_step=200)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 130
    s = summary(run_dir)
    assert s["status"] == "interrupted" and 200 <= s["steps"] < 2000 and s["cpu_seconds"] > 0
    resumed = train(run_dir, *RUN, "resume=true")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    done = summary(run_dir)
    assert done["status"] == "completed" and done["steps"] == 2000
    # wall and CPU time count both parts (the CPU figure of a resumed benchmark run is the whole run's)
    assert done["wall_seconds"] > s["wall_seconds"] and done["cpu_seconds"] > s["cpu_seconds"]


def test_resume_with_other_settings_is_refused(run_dir):
    assert train(run_dir, *TINY).returncode == 0
    before = (run_dir / "metrics.jsonl").read_text()
    proc = train(run_dir, *TINY, "agent.lr=0.1", "resume=true")
    assert proc.returncode == 2 and "resume=true with different agent than the run" in proc.stderr
    assert (run_dir / "metrics.jsonl").read_text() == before  # nothing the run wrote is lost


def test_a_run_saved_before_an_option_existed_resumes_while_the_option_keeps_its_default(run_dir):
    """Code that gained a config key since the run started (its default keeps the old behaviour) resumes the
    run; giving that key another value is a different run and is refused."""
    assert train(run_dir, *TINY, "total_steps=600").returncode == 0
    config = run_dir / "config.yaml"
    lines = config.read_text().splitlines()
    assert any(line.startswith("  lr: ") for line in lines)
    config.write_text("\n".join(line for line in lines if not line.startswith("  lr: ")) + "\n")  # agent.lr "new"
    proc = train(run_dir, *TINY, "agent.lr=0.1", "total_steps=800", "resume=true")
    assert proc.returncode == 2 and "resume=true with different agent than the run" in proc.stderr
    proc = train(run_dir, *TINY, "total_steps=800", "resume=true")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert summary(run_dir)["status"] == "completed" and summary(run_dir)["steps"] == 800


def test_dyna_cartpole_resumes_exactly(tmp_path):
    """DQN with a learned Dyna model (the model was once saved inside the agent and could not be loaded):
    resuming from the checkpoint at ~600 ends exactly like the uninterrupted run."""
    run = ["experiment=dyna_cartpole", "total_steps=700", "eval.every=350", "eval.episodes=2", "eval.envs=2",
           "checkpoint.every=300", "agent.prefill=200", "agent.update.start=200", "agent.update.every=100",
           "agent.update.updates=4", "model.warmup=2", "log_every=100"]
    assert_resumes_exactly(tmp_path, run)  # from previous.pt (~600): the last 100 steps again


def test_a_resumed_benchmark_run_reports_the_whole_runs_cpu_time(tmp_path, monkeypatch):
    """bench.common.train_seed on a run dir stopped part way: it resumes, and its CPU seconds are both parts'
    (the run's own clock, carried by the checkpoint), not only the part it watched."""
    from bench import common

    monkeypatch.setattr(common, "RUNS", tmp_path)
    run_dir = tmp_path / "tiny" / "seed0"
    proc = train(run_dir, *RUN, "seed=0", background=True)
    wait_for_checkpoint(run_dir, proc, min_step=600)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 130
    first = summary(run_dir)["cpu_seconds"]
    rec = common.train_seed("tiny", RUN, 0, None, resume=True, lock=False)
    assert rec["resumed"] and rec["cpu_seconds_parts"] == "all" and rec["train_wall_seconds"] > 0
    assert rec["cpu_seconds"] == summary(run_dir)["cpu_seconds"] > first
