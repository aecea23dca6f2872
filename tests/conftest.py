"""Shared helpers: compose the real config, and run the real CLI in a subprocess on tiny budgets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
