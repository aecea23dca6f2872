"""Checkpoint and resume: a run killed with SIGKILL and resumed ends exactly like an uninterrupted one;
SIGTERM checkpoints and marks the run interrupted."""

from __future__ import annotations

import json
import signal
import time

from tests.conftest import TINY, metrics, summary, train

RUN = [*TINY, "total_steps=2000", "eval.every=500", "checkpoint.every=200"]


def wait_for_checkpoint(run_dir, proc, min_step: int) -> None:
    deadline = time.time() + 240
    while time.time() < deadline:
        s = run_dir / "summary.json"
        if s.exists():
            try:
                if json.loads(s.read_text())["steps"] >= min_step:
                    return
            except json.JSONDecodeError:
                pass
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    raise TimeoutError("no checkpoint appeared")


def evals(run_dir):
    return [(r["step"], r["eval/return_mean"], r["eval/return_std"]) for r in metrics(run_dir)
            if "eval/return_mean" in r]


def test_sigkill_then_resume_equals_uninterrupted(tmp_path):
    full, killed = tmp_path / "full", tmp_path / "killed"
    assert train(full, *RUN).returncode == 0

    proc = train(killed, *RUN, background=True)
    wait_for_checkpoint(killed, proc, min_step=600)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert summary(killed)["status"] == "running"  # nothing got the chance to say otherwise

    resumed = train(killed, *RUN, "resume=true")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert summary(killed)["status"] == "completed"
    assert evals(killed) == evals(full)
    steps = [r["step"] for r in metrics(killed)]
    assert steps == sorted(steps)  # appended without repeating steps
    drop = lambda rows: [{k: v for k, v in r.items() if k != "time"} for r in rows]  # noqa: E731
    assert drop(metrics(killed)) == drop(metrics(full))


def test_sigterm_checkpoints_and_marks_interrupted(run_dir):
    proc = train(run_dir, *RUN, background=True)
    wait_for_checkpoint(run_dir, proc, min_step=200)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 130
    s = summary(run_dir)
    assert s["status"] == "interrupted" and 200 <= s["steps"] < 2000
    resumed = train(run_dir, *RUN, "resume=true")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert summary(run_dir)["status"] == "completed" and summary(run_dir)["steps"] == 2000
