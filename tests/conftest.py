"""Shared helpers: compose the real config, and run the real CLI in a subprocess on tiny budgets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "conf"

# a DQN run small enough for a test: a few thousand steps, frequent small update rounds
TINY = ["model=none", "agent=dqn", "total_steps=600", "eval.every=300", "eval.episodes=2", "eval.envs=2", "checkpoint.every=300",
        "agent.prefill=100", "agent.update.start=100", "agent.update.every=50", "agent.update.updates=4",
        "log_every=100"]


def compose_cfg(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def train(run_dir: Path, *overrides: str, env: dict | None = None, timeout: int = 300,
          background: bool = False):
    cmd = [sys.executable, str(ROOT / "train.py"), *overrides, f"hydra.run.dir={run_dir}", "progress=false"]
    environ = {**os.environ, "WANDB_SILENT": "true", **(env or {})}
    if background:
        return subprocess.Popen(cmd, cwd=ROOT, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    return subprocess.run(cmd, cwd=ROOT, env=environ, capture_output=True, text=True, timeout=timeout)


def refused(run_dir: Path, *overrides: str) -> str:
    """Run train.py expecting a refusal before any work: exit 2 and exactly one line on stderr, returned."""
    proc = train(run_dir, *overrides)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-1500:]
    return lines[0]


def assert_resumes_exactly(tmp_path: Path, run: list[str]) -> tuple[Path, Path]:
    """Run ``run`` twice; resume the second from its previous checkpoint (latest.pt removed): its metrics must
    equal the uninterrupted run's, wall-clock fields aside. Returns (uninterrupted, resumed) run dirs."""
    full, part = tmp_path / "full", tmp_path / "part"
    assert train(full, *run).returncode == 0
    assert train(part, *run).returncode == 0
    (part / "checkpoints" / "latest.pt").unlink()
    resumed = train(part, *run, "resume=true")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    drop = lambda rows: [{k: v for k, v in r.items() if k != "time" and "per_s" not in k} for r in rows]
    assert drop(metrics(part)) == drop(metrics(full))
    return full, part


def wait_for_checkpoint(run_dir: Path, proc, min_step: int) -> None:
    """Wait until the running ``proc`` has checkpointed at or past ``min_step`` (its summary says so)."""
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


def kill_then_resume(run_dir: Path, overrides: list[str], min_step: int, total_steps: int):
    """Start a run, SIGKILL it after a checkpoint at >= min_step, then resume it; returns the resume."""
    proc = train(run_dir, *overrides, background=True)
    wait_for_checkpoint(run_dir, proc, min_step)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    s = summary(run_dir)
    assert s["status"] == "running" and s["steps"] < total_steps  # nothing got the chance to say otherwise
    resumed = train(run_dir, *overrides, "resume=true")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    return resumed


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


@pytest.fixture(autouse=True)
def one_thread():
    """In-process tests use tiny nets: one torch thread is fastest, and far faster than two when other
    jobs load a 2-core machine (subprocess runs get device.threads=1 from conf/device)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "run"
