import json
import math

import numpy as np
import pytest
import torch

from wm.models.diffusion import Diffusion, edm_loss_weight, edm_preconditioning, karras_sigmas, quantize


class Squares:
    """A toy dataset: a bright 4x4 square in a 16x16 frame moving 2 pixels right per frame, from a random
    row and column; with ``action_dim`` = 1 it also moves 2 pixels up or down as the action says."""

    channels, size, context, horizon = 1, 16, 3, 3

    def __init__(self, action_dim: int = 0, n_test: int = 8, horizon: int = 3):
        self.action_dim, self.horizon = action_dim, horizon
        self.seed = 0
        self.background = torch.zeros(1, 16, 16)
        self.test = self.make(np.random.default_rng(123), n_test)

    def make(self, rng, n):
        T = self.context + self.horizon
        frames = np.zeros((n, T, 1, 16, 16), np.uint8)
        actions = np.zeros((n, T, 1), np.float32)
        for i in range(n):
            # kept a pixel away from the right and bottom borders, where a square's edge has no neighbour
            y, x = int(rng.integers(4, 9)), int(rng.integers(0, 16 - 4 - 2 * (T - 1)))
            for t in range(T):
                frames[i, t, 0, y : y + 4, x : x + 4] = 255
                a = int(rng.integers(0, 2)) if self.action_dim else 0
                actions[i, t, 0] = a
                x += 2
                if self.action_dim:
                    y = min(max(y + (2 if a else -2), 1), 11)
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


def small(**kw) -> Diffusion.Config:
    base = {"cond_frames": 2, "channels": [8, 16], "depth": 1, "cond_dim": 16, "patch": 1, "batch_size": 8,
            "eval_batch": 8, "strip_sequences": 2}
    base.update(kw)
    return Diffusion.Config(**base)


def randomize(model: Diffusion) -> Diffusion:
    """Give the zero-initialised layers (output conv, each block's second conv) random weights, so that every
    input reaches the output of an untrained model."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    return model


# ------------------------------------------------------------------------------------------------ EDM
@pytest.mark.parametrize("sigma", [0.002, 0.1, 0.5, 1.0, 5.0, 80.0])
def test_edm_preconditioning_matches_the_formulas(sigma):
    sd = 0.5
    c_skip, c_out, c_in, c_noise = (float(c) for c in edm_preconditioning(torch.tensor([sigma]), sd))
    assert c_skip == pytest.approx(sd**2 / (sigma**2 + sd**2), rel=1e-6)
    assert c_out == pytest.approx(sigma * sd / math.sqrt(sigma**2 + sd**2), rel=1e-6)
    assert c_in == pytest.approx(1 / math.sqrt(sigma**2 + sd**2), rel=1e-6)
    assert c_noise == pytest.approx(math.log(sigma) / 4, rel=1e-6, abs=1e-7)
    weight = float(edm_loss_weight(torch.tensor([sigma]), sd))
    assert weight == pytest.approx((sigma**2 + sd**2) / (sigma * sd) ** 2, rel=1e-6)
    assert weight == pytest.approx(1 / c_out**2, rel=1e-5)  # so lambda ||D - y||^2 = ||F - target||^2
    # DIAMOND's offset noise: every conditioner sees sqrt(sigma^2 + offset^2)
    offset = [float(c) for c in edm_preconditioning(torch.tensor([sigma]), sd, 0.3)]
    plain = [float(c) for c in edm_preconditioning(torch.tensor([math.sqrt(sigma**2 + 0.09)]), sd)]
    assert offset == pytest.approx(plain, rel=1e-6)


@torch.no_grad()
def test_the_computed_loss_is_the_weighted_denoising_error():
    torch.manual_seed(0)
    data = Squares()
    m = randomize(Diffusion(small(), data))
    x, _ = m._prep(data.train_batch(0, 4))
    frames, target = x[:, :2], x[:, 2]
    loss = m.denoising_loss(target, frames, None, torch.Generator().manual_seed(5))
    # redo the draws of denoising_loss with the same generator and score D directly
    g = torch.Generator().manual_seed(5)
    sigma = m.sample_training_sigma(4, g)
    noisy = target + sigma[:, None, None, None] * torch.randn(target.shape, generator=g)
    d, _ = m.denoise(noisy, sigma, frames, None)
    weighted = (edm_loss_weight(sigma, 0.5)[:, None, None, None] * (d - target) ** 2).mean()
    assert float(loss) == pytest.approx(float(weighted), rel=1e-4)


def test_training_sigmas_follow_the_log_normal():
    m = Diffusion(small(p_mean=-0.4, p_std=1.2), Squares())
    log_s = m.sample_training_sigma(20000, torch.Generator().manual_seed(0)).log()
    assert float(log_s.mean()) == pytest.approx(-0.4, abs=0.03)
    assert float(log_s.std()) == pytest.approx(1.2, abs=0.03)
    assert float(log_s.min()) >= math.log(2e-3) - 1e-6 and float(log_s.max()) <= math.log(20) + 1e-6


@pytest.mark.parametrize("steps", [2, 3, 10])
def test_karras_sigmas(steps):
    s = karras_sigmas(steps, 0.002, 5.0, 7.0)
    assert s.shape == (steps + 1,) and float(s[-1]) == 0.0
    assert float(s[0]) == pytest.approx(5.0, rel=1e-6) and float(s[-2]) == pytest.approx(0.002, rel=1e-5)
    assert bool((s[1:] < s[:-1]).all())
    if steps == 3:  # the middle level of the rho = 7 ramp
        assert float(s[1]) == pytest.approx(((5.0 ** (1 / 7) + 0.002 ** (1 / 7)) / 2) ** 7, rel=1e-5)
    assert karras_sigmas(1, 0.002, 5.0).tolist() == [5.0, 0.0]


@pytest.mark.parametrize("sampler,steps,calls,start", [("euler", 1, 1, "unit"), ("euler", 1, 1, "sigma_max"),
                                                       ("euler", 3, 3, "unit"), ("heun", 3, 5, "unit")])
def test_sampler_calls_and_one_step_is_the_denoised_estimate(sampler, steps, calls, start):
    torch.manual_seed(0)
    data = Squares()
    m = randomize(Diffusion(small(sampler=sampler, start_noise=start), data))
    x, _ = m._prep(data.test)
    frames = x[:2, :2]
    seen = []
    m.net.register_forward_hook(lambda *_: seen.append(1))
    out = m.sample_next(frames, None, steps, torch.Generator().manual_seed(1))
    assert len(seen) == calls  # Heun: two calls per step, one on the last step to sigma = 0
    assert out.shape == (2, 1, 16, 16) and torch.equal(out, quantize(out))
    if steps == 1:  # one Euler step from sigma_max lands on the (quantised) denoised estimate
        scale = 5.0 if start == "sigma_max" else 1.0  # x_0 = sigma_max n, or n as DIAMOND
        noise = torch.randn((2, 1, 16, 16), generator=torch.Generator().manual_seed(1)) * scale
        d, _ = m.denoise(noise, torch.full((2,), 5.0), frames, None)
        assert torch.equal(out, quantize(d))


# ------------------------------------------------------------------------------------------------ shapes
def check_rollout(m: Diffusion, batch: dict, data) -> None:
    pred = m.predict(batch)
    B, _, C, H, W = batch["frames"].shape
    assert pred.shape == (B, data.horizon, C, H, W) and pred.min() >= 0 and pred.max() <= 1
    assert float((pred * 255 - (pred * 255).round()).abs().max()) < 1e-4  # on the uint8 levels
    assert torch.equal(m.predict(batch), pred)  # the eval seed fixes the sampling noise
    future = dict(batch, frames=batch["frames"].clone())
    future["frames"][:, data.context :] = 255 - future["frames"][:, data.context :]
    assert torch.equal(m.predict(future), pred)  # never reads the frames it predicts
    past = dict(batch, frames=batch["frames"].clone())
    past["frames"][:, data.context - 1] = 255 - past["frames"][:, data.context - 1]
    assert not torch.equal(m.predict(past), pred)


def test_shapes_on_moving_mnist():
    from wm.data.moving_mnist import MovingMNIST

    data = MovingMNIST(MovingMNIST.Config(size=32, context=3, horizon=2, test_size=2), seed=0)
    m = randomize(Diffusion(small(patch=2), data))
    assert m.action_dim == 0 and m.net.act_emb is None
    check_rollout(m, next(iter(data.test_batches(2))), data)


def test_shapes_and_action_conditioning_on_cartpole_pixels():
    from wm.data.pixel_rollouts import PixelRollouts

    data = PixelRollouts(PixelRollouts.Config(size=32, context=3, horizon=2, train_episodes=2, test_episodes=1), seed=0)
    m = randomize(Diffusion(small(patch=2), data))
    batch = next(iter(data.test_batches(2)))
    assert batch["frames"].shape[2] == 3 and m.net.act_emb.in_features == 2 * data.action_dim
    check_rollout(m, batch, data)
    flipped = dict(batch, actions=1 - batch["actions"])  # the other CartPole action at every step
    assert not torch.equal(m.predict(flipped), m.predict(batch))
    assert np.isfinite(m.train_step(0)["train/loss"])


def test_sizes_the_unet_cannot_take_are_refused():
    assert Diffusion.check_sizes(small(channels=[8, 8, 8], patch=4), 64, 10) is None
    assert "must be divisible by 4" in Diffusion.check_sizes(small(channels=[8, 8, 8], patch=4), 40, 10)
    assert "model.patch=3 must divide" in Diffusion.check_sizes(small(patch=3), 64, 10)
    assert "model.cond_frames=4 exceeds" in Diffusion.check_sizes(small(cond_frames=4), 64, 3)
    with pytest.raises(ValueError, match="cond_frames"):
        Diffusion(small(cond_frames=4), Squares())


def test_validate_refuses_more_conditioning_frames_than_the_context(tmp_path):
    from tests.conftest import compose_cfg
    from wm.errors import ConfigError
    from wm.validate import validate

    cfg = compose_cfg(["experiment=diffusion_cartpole_pixels", "model.cond_frames=6", "device=cpu"])
    with pytest.raises(ConfigError, match="model.cond_frames=6 exceeds the given frames data.context=5$"):
        validate(cfg, tmp_path)


def test_config_rules_that_span_keys():
    from wm.config import typed
    from wm.errors import ConfigError

    for bad, key in [({"cond_dim": 15}, "cond_dim"), ({"sigma_min": 5.0}, "sigma_min"),
                     ({"train_sigma_max": 1e-3}, "train_sigma_min"), ({"extra_eval_steps": [1, 3]}, "extra_eval_steps"),
                     ({"sampler": "dpm"}, "sampler"), ({"channels": []}, "channels")]:
        with pytest.raises(ConfigError, match=f"^model.{key}: "):
            typed(Diffusion, bad, "model")


# ------------------------------------------------------------------------------------------------ learning
def test_tiny_learning_check():
    """The denoising loss on a fixed batch and noise falls by a clear factor, and the one-step prediction
    beats copying the last frame by a clear factor (torch seeds 0, 1, 2 measured: loss after / before 0.013
    to 0.019, MSE / copy-last's MSE 0.001 to 0.006)."""
    torch.manual_seed(0)
    data = Squares(n_test=16, horizon=1)
    m = Diffusion(small(lr=3e-3, warmup_steps=10, batch_size=16, eval_batch=16), data)
    x, _ = m._prep(data.train_batch(10_000, 32))

    def fixed_loss():
        with torch.no_grad():
            return float(m.denoising_loss(x[:, 2], x[:, :2], None, torch.Generator().manual_seed(0)))

    before = fixed_loss()
    for step in range(250):
        m.train_step(step)
    after = fixed_loss()
    ev = m.evaluate()
    assert after < before / 10, (before, after)
    assert ev["eval/mse"] < 0.1 * ev["eval/mse_copy_last"], ev


def test_state_dict_round_trip_includes_the_optimizer():
    torch.manual_seed(0)
    data = Squares(action_dim=1)
    a = Diffusion(small(), data)
    for s in range(3):
        a.train_step(s)
    b = Diffusion(small(), data)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.predict(data.test), b.predict(data.test))
    assert a.train_step(3)["train/loss"] == b.train_step(3)["train/loss"]  # the same update: moments came along
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_evaluate_keys_baselines_and_artifacts(tmp_path):
    data = Squares()
    m = Diffusion(small(extra_eval_steps=[1]), data)
    ev = m.evaluate()
    for key in ("mse", "mae", "ssim", "sharpness", "mse_steps1", "ssim_steps1", "sharpness_steps1",
                "mse_copy_last", "mse_blank", "frames_per_s"):
        assert np.isfinite(ev[f"eval/{key}"]), key
    assert ev["eval/sharpness_copy_last"] == pytest.approx(1.0)  # the same square, one frame late
    assert ev["eval/sharpness_blank"] == 0.0 and ev["eval/sequences"] == len(data)
    logged = []

    class Logger:
        def log_file(self, key, path, kind, step):
            logged.append(kind)

    out = m.artifacts(tmp_path, Logger())
    assert out["strip"].is_file() and out["strip_steps1"].is_file() and out["video"].is_file()
    per_frame = json.loads(out["per_frame"].read_text())["per_frame"]
    assert set(per_frame) == {"model", "model_steps1", "copy_last", "blank"}
    assert len(per_frame["model"]["sharpness"]) == data.horizon == len(per_frame["model"]["ssim"])
    assert sorted(logged) == ["image", "video"]


# ------------------------------------------------------------------------------------------------ train.py
TINY = ["experiment=diffusion_moving_mnist", "data.test_size=2", "model.eval_batch=2", "model.strip_sequences=1",
        "model.batch_size=2", "model.channels=[8,16]", "model.cond_dim=16", "model.extra_eval_steps=[]",
        "total_steps=4", "eval.every=2", "checkpoint.every=2", "log_every=1", "device=cpu"]


def test_train_py_resumes_exactly(tmp_path):
    from tests.conftest import assert_resumes_exactly, summary

    full, _ = assert_resumes_exactly(tmp_path, TINY)
    s = summary(full)
    assert s["status"] == "completed" and s["steps"] == 4
    assert all(isinstance(s[f"eval/{k}"], float) for k in ("mse", "ssim", "sharpness", "mse_copy_last"))
    assert list((full / "media").glob("prediction_strip_*.png")) and (full / "eval_per_frame.json").is_file()


def test_train_py_refuses_a_dataset_without_frames(run_dir):
    from tests.conftest import refused

    line = refused(run_dir, "model=diffusion", "data=casino", "env=none", "agent=none")
    assert line.endswith("model=diffusion predicts video frames; valid data: moving_mnist, cartpole_pixels_random")
    assert not run_dir.exists()


def test_the_diamond_preset_builds_and_trains_a_few_cpu_steps():
    """experiment=diffusion_diamond (DIAMOND's published denoiser, sized for a GPU) composes, validates and
    takes optimizer steps on a CPU at a small batch."""
    from omegaconf import OmegaConf

    from tests.conftest import compose_cfg
    from wm.config import typed
    from wm.data.pixel_rollouts import PixelRollouts

    cfg = compose_cfg(["experiment=diffusion_diamond", "device=cpu"])
    model_cfg = typed(Diffusion, cfg.model, "model")
    assert (model_cfg.channels, model_cfg.depth, model_cfg.cond_dim) == ([64, 64, 64, 64], 2, 256)
    assert (model_cfg.sigma_offset_noise, model_cfg.lr, model_cfg.denoising_steps) == (0.3, 1e-4, 3)
    assert OmegaConf.select(cfg, "data.name") == "cartpole_pixels_random"
    model_cfg.batch_size = 2
    data = PixelRollouts(PixelRollouts.Config(size=32, context=4, horizon=1, train_episodes=2, test_episodes=1),
                         seed=0)
    m = Diffusion(model_cfg, data)
    losses = [m.train_step(step)["train/loss"] for step in range(2)]
    assert all(np.isfinite(losses)) and m.predict(data.test).shape == (len(data), 1, 3, 32, 32)
