"""The real W&B client in offline mode: run files in the run dir, holding the logged keys."""

from __future__ import annotations

from tests.conftest import TINY, summary, train


def test_wandb_offline_run_files(run_dir, tmp_path):
    env = {"WANDB_MODE": "offline", "WANDB_API_KEY": "", "WANDB_CONFIG_DIR": str(tmp_path / "wandbcfg")}
    proc = train(run_dir, *TINY, "logger=wandb", "logger.tags=[test]", "eval.video=true", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert summary(run_dir)["status"] == "completed"
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    run_id = (run_dir / "wandb_id.txt").read_text().strip()
    assert runs[0].name.endswith(run_id)
    assert (runs[0] / f"run-{run_id}.wandb").stat().st_size > 0
    # the run file is a log of protobuf records; key names and config values appear verbatim in it
    data = (runs[0] / f"run-{run_id}.wandb").read_bytes()
    for key in ("eval/return_mean", "eval/return_std", "train/episode_return", "train/q_loss", "env_step",
                "total_steps", "CartPole-v1", "eval/video"):
        assert key.encode() in data, key
