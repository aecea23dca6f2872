"""model=causal (CDL's CMI masks) and model=dense_dynamics on data=chemistry: masks cut gradients, the
leave-one-out pool, a small learning check, the run contract (resume, refusals)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import assert_resumes_exactly, metrics, refused, summary, train
from wm.config import typed
from wm.data.chemistry import ChemistryTransitions
from wm.models.causal import CausalDynamics, DenseDynamics

SMALL = {"world": {"objects": 3, "graph": "collider", "distractors": 2}, "train": 3000, "valid": 1000,
         "test": 1000}


def build(cls, data_over=None, **model_over):
    data = ChemistryTransitions(typed(ChemistryTransitions, data_over or SMALL, "data"), seed=0)
    torch.manual_seed(0)
    return cls(typed(cls, {"plan": {"episodes": 0}, **model_over}, "model"), data)


def test_a_masked_edge_gets_no_gradient_and_cannot_move_the_prediction():
    m = build(CausalDynamics)
    b = m.data.batch(np.random.default_rng(0), 64)
    x = m.encode(b["colours"], b["distractors"], b["action"]).requires_grad_(True)
    m.mask[:] = True
    m.mask[m.n, 0] = False  # distractor 0 -> colour 0 cut
    out = m.outputs_of(x)
    out[:, 0].sum().backward()
    assert x.grad[:, m.n].abs().sum() == 0  # no gradient from the cut input
    assert x.grad[:, 0].abs().sum() > 0  # while a kept input has one
    x2 = x.detach().clone()
    x2[:, m.n, 0] += 100.0  # a wildly shifted distractor
    assert torch.equal(m.outputs_of(x2)[:, 0], out[:, 0].detach())


def test_leave_one_out_pool_equals_masking_each_input():
    h = torch.rand(5, 3, 4, 6)  # (B, J, I, H)
    loo = CausalDynamics.pool_leave_one_out(h)  # (B, I, J, H)
    for i in range(4):
        mask = torch.ones(4, 3, dtype=torch.bool)
        mask[i] = False
        assert torch.allclose(loo[:, i], CausalDynamics.pool(h, mask))


def test_cmi_mask_recovers_a_small_graph_and_ignores_shifted_distractors():
    """3 objects, collider, 2 distractors: after 700 steps the CMI mask is the true lagged graph (or one edge
    off) and accuracy does not drop when the distractors' spread goes from 1 to 5."""
    m = build(CausalDynamics, mask_start=500, mask_every=200)
    for step in range(700):
        m.train_step(step)
    ev = m.evaluate()
    assert ev["eval/shd"] <= 1, (m.data.true_graph.astype(int), m.graph().astype(int))
    assert ev["eval/accuracy"] > 0.9 and abs(ev["eval/shift_drop"]) < 0.02, ev


def test_dense_model_learns_in_distribution():
    m = build(DenseDynamics)
    before = m.evaluate()["eval/accuracy"]
    for step in range(300):
        m.train_step(step)
    after = m.evaluate()
    assert after["eval/accuracy"] > max(0.85, before + 0.2), (before, after)
    assert "eval/shd" not in after  # a dense model claims no graph


RUN = ["data=chemistry", "model=causal", "agent=none", "env=none", "total_steps=40", "eval.every=20",
       "checkpoint.every=20", "log_every=10", "data.train=500", "data.valid=200", "data.test=200",
       "model.mask_start=25", "model.mask_every=10", "model.plan.episodes=2", "model.plan.candidates=20",
       "model.plan.top_k=4"]


def test_run_writes_graph_metrics_and_resumes_exactly(tmp_path):
    full, _ = assert_resumes_exactly(tmp_path, RUN)
    last = [r for r in metrics(full) if "eval/shd" in r][-1]
    assert {"eval/accuracy_shift", "eval/accuracy_intervened", "eval/f1", "eval/plan_match"} <= set(last)
    assert summary(full)["status"] == "completed"
    assert list((full / "media").glob("graph_*.png"))


def test_dense_run(tmp_path):
    proc = train(tmp_path, *[o for o in RUN if not o.startswith("model.mask")], "model=dense_dynamics")
    assert proc.returncode == 0, proc.stderr[-1500:]


@pytest.mark.parametrize("overrides,expect", [
    (["data=moving_mnist", "model=causal"], "valid data: chemistry"),
    (["data=chemistry", "model=causal", "data.world.graph=collider", "data.intervene=0"],
     "intervene must be an object with parents"),
    (["data=chemistry", "model=causal", "data.world.graph=star"], "data.world.graph: must be one of"),
    (["data=chemistry", "model=causal", "model.plan.top_k=500"], "model.plan.top_k"),
])
def test_refusals(tmp_path, overrides, expect):
    assert expect in refused(tmp_path, "agent=none", "env=none", *overrides)
