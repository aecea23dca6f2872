import json

import numpy as np
import pytest
import torch

from wm.models.convlstm import ConvLSTM, ConvLSTMCell, ConvLSTMStack, from_patches, to_patches


class SquareData:
    """A tiny dataset: a bright 4x4 square moving right (and, with actions, up or down as the action says)."""

    channels, size, context, horizon = 1, 16, 3, 3

    def __init__(self, action_dim=0, n_test=4):
        self.action_dim = action_dim
        self.background = torch.zeros(1, 16, 16)
        self.test = self.make(np.random.default_rng(123), n_test)

    def make(self, rng, n):
        T = self.context + self.horizon
        frames = np.zeros((n, T, 1, 16, 16), np.uint8)
        actions = np.zeros((n, T, max(self.action_dim, 1)), np.float32)
        for i in range(n):
            y, x = 6, int(rng.integers(0, 4))
            for t in range(T):
                frames[i, t, 0, y : y + 4, x : x + 4] = 255
                a = int(rng.integers(0, 2)) if self.action_dim else 0
                actions[i, t, 0] = a
                x = x + 2
                if self.action_dim:
                    y = y + (2 if a else -2)
        out = {"frames": torch.from_numpy(frames)}
        if self.action_dim:
            out["actions"] = torch.from_numpy(actions)
        return out

    def train_batch(self, step, batch_size):
        return self.make(np.random.default_rng(step), batch_size)

    def test_batches(self, batch_size):
        n = len(self.test["frames"])
        for i in range(0, n, batch_size):
            yield {k: v[i : i + batch_size] for k, v in self.test.items()}

    def __len__(self):
        return len(self.test["frames"])


def small(**kw):
    base = {"hidden": [8], "kernel": 3, "patch": 2, "batch_size": 4, "eval_batch": 4, "strip_sequences": 2}
    base.update(kw)
    return ConvLSTM.Config(**base)


def test_cell_shapes_and_peephole():
    x = torch.randn(2, 3, 8, 8)
    for peephole in (False, True):
        cell = ConvLSTMCell(3, 5, 3, size=(8, 8), peephole=peephole)
        h, c = cell(x, cell.initial_state(2, (8, 8), "cpu"))
        assert h.shape == c.shape == (2, 5, 8, 8)
        assert h.abs().max() <= 1
    stack = ConvLSTMStack(3, 4, [6, 7], 5, (8, 8))
    out, states = stack.step(x, stack.initial_state(2, "cpu"))
    assert out.shape == (2, 4, 8, 8) and [s[0].shape[1] for s in states] == [6, 7]


def test_space_to_depth_round_trip():
    x = torch.rand(2, 5, 1, 64, 64)
    p = to_patches(x, 4)
    assert p.shape == (2, 5, 16, 16, 16)
    assert torch.equal(from_patches(p, 4), x)
    assert torch.equal(p[0, 0, :, 0, 0], x[0, 0, 0, :4, :4].reshape(-1))


@pytest.mark.parametrize("forecaster", ["shared", "separate"])
def test_rollout_shapes_and_causality(forecaster):
    torch.manual_seed(0)
    data = SquareData()
    m = ConvLSTM(small(forecaster=forecaster, peephole=True), data)
    batch = data.train_batch(0, 2)
    x = batch["frames"].float() / 255
    assert m.rollout(x, None).shape == (2, 5, 1, 16, 16)
    pred = m.predict(batch)
    assert pred.shape == (2, 3, 1, 16, 16) and pred.min() >= 0 and pred.max() <= 1
    # the prediction depends on the given frames only, never on the future it predicts
    future_changed = {"frames": batch["frames"].clone()}
    future_changed["frames"][:, 3:] = 255 - future_changed["frames"][:, 3:]
    assert torch.equal(m.predict(future_changed), pred)
    past_changed = {"frames": batch["frames"].clone()}
    past_changed["frames"][:, 0] = 255
    assert not torch.equal(m.predict(past_changed), pred)


def test_actions_condition_the_prediction():
    torch.manual_seed(0)
    data = SquareData(action_dim=1)
    m = ConvLSTM(small(), data)
    batch = data.train_batch(0, 2)
    flipped = dict(batch, actions=1 - batch["actions"])
    assert not torch.equal(m.predict(batch), m.predict(flipped))


def test_config_validation():
    from wm.config import typed
    from wm.errors import ConfigError

    for key, bad in [("kernel", 4), ("forecaster", "both"), ("hidden", []), ("hidden", [8, 0])]:
        with pytest.raises(ConfigError, match=f"model.{key}: "):
            typed(ConvLSTM, {"hidden": [8], key: bad}, "model")
    with pytest.raises(ValueError, match="patch"):
        ConvLSTM(small(patch=3), SquareData())


def test_scheduled_sampling_and_lr_schedules():
    m = ConvLSTM(small(ss_steps=100, lr_decay_steps=10, lr=1e-2), SquareData())
    assert m.ss_prob(0) == 1.0 and m.ss_prob(50) == pytest.approx(0.5) and m.ss_prob(200) == 0.0
    assert m.lr_at(0) == pytest.approx(1e-2) and m.lr_at(10) == pytest.approx(0.0)
    assert ConvLSTM(small(), SquareData()).ss_prob(0) == 0.0


def test_tiny_overfit_beats_both_baselines():
    torch.manual_seed(0)
    data = SquareData()
    m = ConvLSTM(small(hidden=[16], lr=1e-2, batch_size=8), data)
    first = m.train_step(0)["train/loss"]
    for step in range(1, 60):
        last = m.train_step(step)["train/loss"]
    assert last < first / 5
    ev = m.evaluate()
    assert ev["eval/mse"] < 0.5 * min(ev["eval/mse_blank"], ev["eval/mse_copy_last"])
    assert ev["eval/ssim"] > ev["eval/ssim_blank"]


def test_state_dict_round_trip_includes_optimizer():
    torch.manual_seed(0)
    data = SquareData()
    a = ConvLSTM(small(), data)
    for s in range(3):
        a.train_step(s)
    b = ConvLSTM(small(), data)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.predict(data.test), b.predict(data.test))
    # identical next update: the optimizer moments came along
    ra, rb = a.train_step(3), b.train_step(3)
    assert ra["train/loss"] == rb["train/loss"]
    assert torch.equal(a.predict(data.test), b.predict(data.test))
    fresh = ConvLSTM(small(), data)
    fresh.load_state_dict({**a.state_dict(), "opt": ConvLSTM(small(), data).opt.state_dict()})
    assert a.opt.state_dict()["state"] and not fresh.opt.state_dict()["state"]


def test_evaluate_keys_and_artifacts(tmp_path):
    data = SquareData()
    m = ConvLSTM(small(), data)
    ev = m.evaluate()
    for key in ("eval/mse", "eval/mae", "eval/ssim", "eval/mse_copy_last", "eval/mse_blank"):
        assert np.isfinite(ev[key])
    logged = []

    class Logger:
        def log_file(self, key, path, kind, step):
            logged.append((key, path, kind))

    out = m.artifacts(tmp_path, Logger())
    assert out["strip"].is_file() and out["video"].is_file()
    per_frame = json.loads(out["per_frame"].read_text())["per_frame"]["model"]
    assert len(per_frame["mse"]) == data.horizon and len(per_frame["ssim"]) == data.horizon
    assert {k for _, _, k in logged} == {"image", "video"}


def test_residual_mode_starts_as_copy_last():
    data = SquareData()
    m = ConvLSTM(small(residual=True), data)
    torch.nn.init.zeros_(m.encoder.out.weight)
    torch.nn.init.zeros_(m.encoder.out.bias)
    batch = data.train_batch(0, 2)
    last = batch["frames"][:, data.context - 1 : data.context].float() / 255
    assert torch.equal(m.predict(batch), last.expand(-1, data.horizon, -1, -1, -1))


def test_train_py_runs_the_moving_mnist_preset_and_resumes(tmp_path):
    from tests.conftest import metrics, summary, train

    small = ["data.test_size=4", "model.eval_batch=4", "model.strip_sequences=1", "model.batch_size=2",
             "model.hidden=[8]", "model.ss_steps=2", "model.lr_decay_steps=3", "eval.every=2", "checkpoint.every=2", "log_every=1",
             "device=cpu"]
    run = tmp_path / "run"
    proc = train(run, "experiment=convlstm_moving_mnist", "total_steps=2", *small)
    assert proc.returncode == 0, proc.stderr[-2000:]
    s = summary(run)
    assert s["status"] == "completed" and s["steps"] == 2
    for key in ("eval/mse", "eval/mae", "eval/ssim", "eval/mse_copy_last", "eval/mse_blank"):
        assert isinstance(s[key], float)
    assert (run / "eval_per_frame.json").is_file() and list((run / "media").glob("prediction_strip_*.png"))
    proc = train(run, "experiment=convlstm_moving_mnist", "total_steps=3", *small, "resume=true")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert summary(run)["steps"] == 3 and [r["step"] for r in metrics(run) if "train/loss" in r] == [1, 2, 3]


def test_train_py_rejects_a_missing_test_file(tmp_path):
    from tests.conftest import train

    run = tmp_path / "run"
    proc = train(run, "experiment=convlstm_moving_mnist", "data.test_file=/no/such/mnist_test_seq.npy")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: data.test_file: Moving MNIST test file not found: /no/such/mnist_test_seq.npy")
    assert not run.exists()


def test_check_dataset_names_the_video_datasets():
    from wm.data.casino import Casino
    from wm.data.moving_mnist import MovingMNIST
    from wm.data.pixel_rollouts import PixelRollouts

    assert ConvLSTM.check_dataset(MovingMNIST) is None and ConvLSTM.check_dataset(PixelRollouts) is None
    assert "valid data: moving_mnist, cartpole_pixels_random" in ConvLSTM.check_dataset(Casino)
