"""Evaluating draws from its own RNG streams: how often a run evaluates never changes how it trains."""

from __future__ import annotations

import torch

from tests.conftest import metrics, train
from wm import checkpoint

# a tiny Dreamer: its evaluation samples posteriors, so it used to consume the training RNG
DREAMER = ["model=rssm", "agent=actor_critic", "model.batch=4", "model.length=8", "model.deter=16",
           "model.hidden=16", "model.units=16", "model.groups=4", "model.classes=4", "agent.units=16",
           "agent.horizon=4", "agent.starts=16", "agent.prefill=40", "model.update.start=40",
           "model.update.every=8", "eval.episodes=2",
           "eval.envs=2", "checkpoint.every=1000", "log_every=40", "total_steps=240"]


def test_eval_every_does_not_change_training(tmp_path):
    runs = {every: tmp_path / f"every{every}" for every in (40, 120)}
    for every, run_dir in runs.items():
        r = train(run_dir, *DREAMER, f"eval.every={every}", env={"OMP_NUM_THREADS": "1"})
        assert r.returncode == 0, r.stderr[-2000:]
    episodes = {every: [(m["step"], m["train/episode_return"]) for m in metrics(d) if "train/episode_return" in m]
                for every, d in runs.items()}
    assert len(episodes[40]) >= 5 and episodes[40] == episodes[120]
    evals = {every: sum("eval/return_mean" in m for m in metrics(d)) for every, d in runs.items()}
    assert evals[40] > evals[120]  # the runs did evaluate differently
    a, b = (checkpoint.load(d)["model"] for d in runs.values())
    tensors = [k for k, v in a.items() if torch.is_tensor(v)]
    assert tensors and all(torch.equal(a[k], b[k]) for k in tensors)
