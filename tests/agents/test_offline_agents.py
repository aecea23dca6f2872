"""Offline agents (data=minari): returns to go, the Decision Transformer's causal masking (no future leaks, none
from padding), %BC's episode filter, tiny learning checks for BC and DT on a scripted CartPole dataset, exact
resume through train.py, and one-line refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import assert_resumes_exactly, metrics, refused, summary
from tests.offline_data import make
from wm.agents.decision_transformer import DecisionTransformer, returns_to_go
from wm.agents.offline import BC, top_episodes
from wm.data.offline import MinariData

pytest.importorskip("minari")

TINY_DT = DecisionTransformer.Config(context=5, embed=32, layers=2, heads=2, dropout=0.0, warmup=10, lr=1e-3,
                                     batch=32, rtg_scale=500.0, targets=[500.0], max_timestep=500)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make(tmp_path_factory.mktemp("datasets"))


@pytest.fixture(scope="module")
def data(dataset):
    return MinariData(MinariData.Config(source=str(dataset)))


def test_returns_to_go_by_hand():
    assert np.allclose(returns_to_go(np.array([1.0, 2.0, 3.0])), [6.0, 5.0, 3.0])
    assert returns_to_go(np.array([])).shape == (0,)


def test_top_episodes_keeps_the_best_whole_episodes(data):
    eps = data.episodes
    kept = top_episodes(eps, 0.1)
    worst_kept = min(float(e["rewards"].sum()) for e in kept)
    assert all(float(e["rewards"].sum()) <= worst_kept for e in eps if not any(e is k for k in kept))
    assert sum(len(e["rewards"]) for e in kept) >= 0.1 * sum(len(e["rewards"]) for e in eps)
    assert top_episodes(eps, 1.0) == eps


def test_dt_sees_no_future_and_no_padding(data):
    """Predictions at step t depend on R_<=t, s_<=t and a_<t only: changing a_t or anything later leaves them
    alone, changing s_t does not; padded steps on the left change nothing at the real ones."""
    torch.manual_seed(0)
    dt = DecisionTransformer(TINY_DT, data).eval()
    B, K = 3, 5
    rtg, obs = torch.rand(B, K) * 500, torch.randn(B, K, 4)
    act, ts, mask = torch.randint(0, 2, (B, K)), torch.arange(K).repeat(B, 1), torch.ones(B, K, dtype=torch.bool)
    with torch.no_grad():
        ref = dt(rtg, obs, act, ts, mask)
        act2 = act.clone()
        act2[:, 2:] = 1 - act2[:, 2:]  # a_2 and later
        obs2, rtg2 = obs.clone(), rtg.clone()
        obs2[:, 3:] += 5.0
        rtg2[:, 3:] += 100.0
        out = dt(rtg2, obs2, act2, ts, mask)
        assert torch.allclose(out[:, :3], ref[:, :3], atol=1e-5)  # s_0..s_2 predictions unchanged
        assert not torch.allclose(out[:, 3:], ref[:, 3:])
        obs3 = obs.clone()
        obs3[:, 2] += 5.0
        assert not torch.allclose(dt(rtg, obs3, act, ts, mask)[:, 2], ref[:, 2])  # s_2 itself matters
        # left padding: 2 padded steps of garbage before 3 real ones predict what the 3 real ones alone do
        pad = mask.clone()
        pad[:, :2] = False
        short = dt(rtg[:, 2:], obs[:, 2:], act[:, 2:], ts[:, 2:], mask[:, 2:])
        rtg_g, obs_g, act_g = rtg.clone(), obs.clone(), act.clone()
        rtg_g[:, :2], obs_g[:, :2], act_g[:, :2] = 7 * rtg[:, :2], 3 * obs[:, :2], 1 - act[:, :2]
        garbage = dt(rtg_g, obs_g, act_g, ts, pad)[:, 2:]
        assert torch.allclose(short, garbage, atol=1e-4)


def test_dt_lr_warms_up_then_decays_to_zero(data):
    """Linear warm-up over ``warmup`` steps times a half cosine over ``lr_decay_steps``, held at 0 after it."""
    import dataclasses
    import math

    dt = DecisionTransformer(dataclasses.replace(TINY_DT, warmup=10, lr_decay_steps=100), data)
    lrs = []
    for _ in range(120):
        lrs.append(dt.sched.get_last_lr()[0])
        dt.opt.step()
        dt.sched.step()
    assert lrs[0] == pytest.approx(1e-3 * 0.1)
    assert lrs[50] == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lrs[100] == 0.0 and lrs[119] == 0.0
    assert max(lrs) <= 1e-3 and lrs.index(max(lrs)) == 9  # the peak: where the warm-up ends


@pytest.mark.parametrize("agent", ["bc", "dt"])
def test_tiny_learning_check(data, agent):
    """From the scripted dataset (mean return 262, random 22): BC on the best third of it and DT conditioned on
    500 both end near the controller's 500 after a few hundred steps (AMD EPYC: BC 500 for seeds 0-2, DT 500
    for seeds 0-4 at 600 steps; the bar is 400)."""
    for seed in range(3):
        torch.manual_seed(seed)
        if agent == "bc":
            learner = BC(BC.Config(top=0.34, units=64), data, episodes=5, envs=5, seed=seed)
            steps = 300
        else:
            learner = DecisionTransformer(TINY_DT, data, episodes=5, envs=5, seed=seed)
            steps = 600  # 400 gave 413 / 478 / 500 here: too close to the bar; 600 gave 500 for seeds 0-4
        for step in range(steps):
            learner.train_step(step)
        res = learner.evaluate()
        assert res["eval/return_mean"] > 400, (seed, res)
        assert res["eval/normalized_score"] == pytest.approx(100 * (res["eval/return_mean"] - 22) / 478)


RUN = ["model=none", "agent=decision_transformer", "agent.context=5", "agent.embed=32", "agent.layers=1",
       "agent.warmup=10", "agent.rtg_scale=500", "agent.targets=[500,100]", "agent.max_timestep=500",
       "total_steps=150", "eval.every=75", "eval.episodes=2", "eval.envs=2", "checkpoint.every=50", "log_every=25"]


def test_dt_run_resumes_exactly(tmp_path, dataset):
    run = [*RUN, "data=minari", f"data.source={dataset}"]
    full, _ = assert_resumes_exactly(tmp_path, run)  # from the checkpoint at 100
    assert summary(full)["status"] == "completed"
    evals = [r for r in metrics(full) if "eval/return_at_target_100" in r]
    assert len(evals) == 2 and all("eval/normalized_score" in r for r in evals)


@pytest.mark.parametrize("overrides, message", [
    (["model=none", "agent=bc"], "agent=bc learns from a dataset; valid data:"),
    (["model=none", "agent=bc", "data=minari"], "data=minari needs data.source="),
    (["model=none", "agent=bc", "data=moving_mnist"], "agent=bc learns from an offline RL dataset: use data=minari"),
    (["model=none", "agent=bc", "data=minari", "data.source=/nonexistent/x-v0"], "no Minari dataset"),
    (["model=convlstm", "agent=none", "data=minari", "data.source=x"], "data=minari feeds the offline agents"),
    (["model=none", "agent=decision_transformer", "agent.embed=30", "agent.heads=4"], "divisible by heads"),
])
def test_refusals_are_one_line(run_dir, overrides, message):
    assert message in refused(run_dir, *overrides, "total_steps=10")

