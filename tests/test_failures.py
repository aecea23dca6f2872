"""A run whose losses turn non-finite stops at once with one line naming the loss, the learner and the
step, status `failed`, exit 1, and keeps its last good checkpoint (nothing is checkpointed after)."""

from __future__ import annotations

import re

import pytest
import torch

from tests.conftest import TINY, metrics, summary, train
from wm import checkpoint
from wm.loops.finite import NonFiniteError, check_parameters, checked_step


def one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr[-2000:]
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr[-2000:]
    return errors[0]


def all_finite(x) -> bool:
    if isinstance(x, torch.Tensor):
        return not x.is_floating_point() or bool(torch.isfinite(x).all())
    if isinstance(x, dict):
        return all(all_finite(v) for v in x.values())
    if isinstance(x, (list, tuple)):
        return all(all_finite(v) for v in x)
    return True


def test_dqn_whose_loss_blows_up_stops_in_one_line_and_keeps_its_checkpoint(run_dir):
    # Adam moves every weight by ~lr at its first step: with lr=1e30 the next forward pass overflows on any
    # CPU. Learning starts at step 400, after the checkpoint at step 200.
    proc = train(run_dir, *TINY, "checkpoint.every=200", "agent.update.start=400", "agent.lr=1e30")
    assert proc.returncode == 1
    line = one_error_line(proc.stderr)
    assert re.fullmatch(r"error: non-finite \S+ .*DQN.* at step 400\b.*; "
                        r"the last good checkpoint \(step 200\) is kept", line), line
    assert summary(run_dir)["status"] == "failed" and summary(run_dir)["steps"] == 400
    state = checkpoint.load_file(run_dir / checkpoint.LATEST)
    assert state["step"] == 200 and all_finite(state["agent"])
    assert not (run_dir / checkpoint.PREVIOUS).exists()  # the one at 200 is the only one written
    assert all(r["step"] <= 400 for r in metrics(run_dir))
    assert not any("train/q_loss" in r for r in metrics(run_dir))  # the bad stats were not logged


def test_dreamer_with_a_huge_learning_rate_stops_in_one_line(run_dir):
    """The issue's case: `experiment=dreamer_cartpole model.lr=1e4` died in torch.distributions at step 500."""
    proc = train(run_dir, "experiment=dreamer_cartpole", "model.lr=1e4", "total_steps=1000", "eval.every=1000",
                 "eval.episodes=1", "eval.envs=1", "checkpoint.every=250")
    assert proc.returncode == 1
    line = one_error_line(proc.stderr)
    assert re.fullmatch(r"error: non-finite .+ at step 50\d\b.*; "
                        r"the last good checkpoint \(step 2\d\d\) is kept", line), line
    assert summary(run_dir)["status"] == "failed"
    state = checkpoint.load_file(run_dir / checkpoint.LATEST)
    assert state["step"] < 500 and all_finite(state["model"]) and all_finite(state["agent"])


def test_an_actor_whose_outputs_overflow_stops_in_one_line(run_dir):
    """Huge actor/critic learning rates leave parameters finite but so large that the policy's logits are
    NaN: acting fails inside torch.distributions, which becomes the same one-line failure."""
    proc = train(run_dir, "experiment=dreamer_cartpole", "agent.actor_lr=1e30", "agent.critic_lr=1e30",
                 "total_steps=1000", "eval.every=1000", "eval.episodes=1", "eval.envs=1", "checkpoint.every=250")
    assert proc.returncode == 1
    line = one_error_line(proc.stderr)
    assert re.fullmatch(r"error: non-finite .+ at step \d+, while acting .*; the last good checkpoint .* is kept",
                        line), line
    assert summary(run_dir)["status"] == "failed"


def test_supervised_model_whose_loss_blows_up_stops_in_one_line(run_dir):
    small = ["data.test_size=4", "model.eval_batch=4", "model.strip_sequences=1", "model.batch_size=2",
             "model.hidden=[8]", "model.ss_steps=2", "eval.every=4", "log_every=1", "device=cpu"]
    proc = train(run_dir, "experiment=convlstm_moving_mnist", "total_steps=4", *small, "model.lr=1e30")
    assert proc.returncode == 1
    line = one_error_line(proc.stderr)
    assert re.fullmatch(r"error: non-finite \S+ \((nan|inf|-inf)\) from ConvLSTM at step \d"
                        r"( \(non-finite parameter \S+\))?; "
                        r"no checkpoint was written before it", line), line
    assert summary(run_dir)["status"] == "failed"
    assert not checkpoint.exists(run_dir)


class Net(torch.nn.Module):
    def __init__(self, fail: Exception | None = None, loss: float = 0.0):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(3))
        self.fail, self.loss = fail, loss

    def train_step(self):
        if self.fail is not None:
            raise self.fail
        return {"model/loss": self.loss, "intrinsic/coverage": float("nan")}


def test_nan_that_is_not_a_loss_is_not_a_failure():
    assert checked_step(Net(), 3, Net().train_step)["model/loss"] == 0.0  # coverage is NaN where unmeasured


def test_non_finite_loss_names_key_learner_and_step():
    net = Net(loss=float("inf"))
    with pytest.raises(NonFiniteError, match=r"^non-finite model/loss \(inf\) from Net at step 7$"):
        checked_step(net, 7, net.train_step)


def test_error_from_non_finite_parameters_becomes_one_failure():
    net = Net(fail=ValueError("Expected parameter logits to satisfy the constraint Real(), but found invalid values"))
    with torch.no_grad():
        net.w[1] = float("nan")
    with pytest.raises(NonFiniteError, match=r"^non-finite parameter Net.w at step 5, in Net.train_step \(ValueError"):
        checked_step(net, 5, net.train_step)


def test_error_from_another_learners_non_finite_parameters_becomes_one_failure():
    model, agent = Net(), Net(fail=ValueError("Expected parameter probs to satisfy the constraint Simplex()"))
    with torch.no_grad():
        model.w[0] = float("inf")
    with pytest.raises(NonFiniteError, match=r"^non-finite parameter Net.w at step 5, in Net.train_step"):
        checked_step(agent, 5, agent.train_step, [model, agent])


def test_parameters_left_non_finite_by_an_update_are_caught():
    net = Net()
    with torch.no_grad():
        net.w[2] = float("nan")
    with pytest.raises(NonFiniteError, match=r"^non-finite parameter Net.w after the updates at step 9$"):
        check_parameters([None, net], 9, "after the updates")


def test_a_real_bug_keeps_its_traceback():
    net = Net(fail=RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    with pytest.raises(RuntimeError, match="shapes"):
        checked_step(net, 5, net.train_step)
