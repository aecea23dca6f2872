"""A tiny run writes the complete run directory of the run contract."""

from __future__ import annotations

import yaml

from tests.conftest import TINY, metrics, summary, train


def test_tiny_run_writes_the_run_contract(run_dir):
    proc = train(run_dir, *TINY, "eval.video=true")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = metrics(run_dir)
    assert all("step" in r and "time" in r for r in rows)
    steps = [r["step"] for r in rows]
    assert steps == sorted(steps) and steps[-1] == 600
    episodes = [r for r in rows if "train/episode_return" in r]
    assert episodes and all(r["train/episode_length"] >= r["train/episode_return"] > 0 for r in episodes)
    evals = [r for r in rows if "eval/return_mean" in r]
    assert [r["step"] for r in evals] == [300, 600] and all("eval/return_std" in r for r in evals)
    assert any("train/q_loss" in r for r in rows)

    s = summary(run_dir)
    assert s["status"] == "completed" and s["steps"] == 600 and s["wall_seconds"] > 0
    assert s["steps_unit"] == "env steps"  # what `steps` and total_steps count in this loop
    assert s["eval/return_mean"] == evals[-1]["eval/return_mean"]
    assert (run_dir / "checkpoints" / "latest.pt").exists()
    assert not list((run_dir / "checkpoints").glob(".*tmp"))  # atomic writes leave no temp files
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["seed"] == 0 and config["agent"]["name"] == "dqn" and config["total_steps"] == 600
    assert "data" not in config  # an online run reads no dataset: the group stays out of its config
    assert (run_dir / "config.yaml").read_text().startswith("# total_steps counts env steps\n")
    videos = sorted((run_dir / "videos").glob("eval_*.mp4"))
    assert [v.name for v in videos] == ["eval_00000300.mp4", "eval_00000600.mp4"]
    assert all(v.stat().st_size > 1000 for v in videos)
