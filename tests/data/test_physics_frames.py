"""data=physics_frames: the frames show the simulated bodies where they are, the states are data=nbody's, the
dataset is a function of the seed, and both readers (C-SWM's stacked observations, ConvLSTM's windows) get
what they are promised."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from tests.conftest import compose_cfg
from wm.config import typed
from wm.data.nbody import NBody
from wm.data.physics_frames import PALETTE, PhysicsFrames, render
from wm.errors import ConfigError
from wm.models.convlstm import ConvLSTM
from wm.validate import validate

SMALL = {"train": 40, "test": 30}


def dataset(seed: int = 0, **over) -> PhysicsFrames:
    return PhysicsFrames(typed(PhysicsFrames, {**SMALL, **over}, "data"), seed=seed)


def test_each_bodys_colour_centroid_is_its_projected_position():
    """Red, green and blue discs: away from overlaps and the border, the intensity centroid of body i's colour
    channel lies within 0.05 px of its true position mapped into the frame (column = (x + view) * scale, row =
    (view - y) * scale)."""
    d = dataset()
    s, c = d.splits["test"], d.cfg
    scale = c.size / (2 * c.view)
    projected = np.stack([s["pos"][..., 0] + c.view, c.view - s["pos"][..., 1]], -1) * scale  # (N, T, 3, 2)
    gap = np.linalg.norm(projected[..., :, None, :] - projected[..., None, :, :], axis=-1)  # (N, T, 3, 3)
    apart = (gap + 10 * np.eye(3) > 2 * c.radius + 1).all(-1)  # no other disc touches this one
    grid = np.arange(c.size) + 0.5
    checked = 0
    for n, t, i in zip(*np.nonzero(apart & ~s["clipped"])):
        img = s["frames"][n, t, i].astype(np.float64)  # channel i holds body i alone (PALETTE[i] is pure)
        centroid = np.array([(img.sum(0) * grid).sum(), (img.sum(1) * grid).sum()]) / img.sum()
        assert np.abs(centroid - projected[n, t, i]).max() < 0.05, (n, t, i, centroid, projected[n, t, i])
        assert abs(img.sum() / 255 - np.pi * c.radius**2) < 1.0  # a whole disc of the stated radius
        checked += 1
    assert checked > 0.4 * s["clipped"].size  # 55% of body-frames here: the others touch another disc


def test_clipped_discs_stay_whole_in_view():
    d = dataset(view=1.5)  # a narrow view: many bodies leave it
    s, c = d.splits["train"], d.cfg
    assert 0.05 < s["clipped"].mean() < 0.95
    assert (s["centre"] >= c.radius).all() and (s["centre"] <= c.size - c.radius).all()
    one = render(np.array([[[c.radius, c.size - c.radius]]]), c.size, c.radius)[0]  # pressed into a corner
    assert abs(one[0].sum() / 255 - np.pi * c.radius**2) < 1.0


def test_painting_order_and_palette():
    frame = render(np.array([[10.0, 10.0], [10.0, 10.0]]), 20, 3.0)  # body 1 (green) on top of body 0 (red)
    assert frame[:, 10, 10].tolist() == [0, 255, 0] and frame.dtype == np.uint8
    assert PALETTE.shape[1] == 3 and len(np.unique(PALETTE, axis=0)) == len(PALETTE)  # a colour each


def test_the_states_are_data_nbody_with_the_same_settings():
    d = dataset(length=11)
    sim = NBody(typed(NBody, {"bodies": 3, "train": 40, "test": 30, "length": 11, "dt": 0.2, "substeps": 20,
                              "test_bodies": [3]}, "data"), seed=0)
    np.testing.assert_array_equal(d.splits["train"]["pos"], sim.splits["train"]["pos"])
    np.testing.assert_array_equal(d.splits["test"]["vel"], sim.splits["test_3"]["vel"][:, :12])
    assert d.splits["test"]["frames"].shape == (30, 12, 3, 50, 50)


def test_frames_are_a_function_of_the_seed():
    a, b, other = dataset(0), dataset(0), dataset(1)
    for split in ("train", "test"):
        np.testing.assert_array_equal(a.splits[split]["frames"], b.splits[split]["frames"])
        assert not np.array_equal(a.splits[split]["frames"], other.splits[split]["frames"])
    for step in (0, 7):
        torch.testing.assert_close(a.train_batch(step, 5)["frames"], b.train_batch(step, 5)["frames"])
        first, second = (a.transition_batch(np.random.default_rng(step), 5) for _ in range(2))
        torch.testing.assert_close(first["obs"], second["obs"])
    assert not torch.equal(a.train_batch(0, 5)["frames"], a.train_batch(1, 5)["frames"])


def test_transitions_pairs_and_video_batches():
    d = dataset(length=11, context=3, horizon=9)
    b = d.transition_batch(np.random.default_rng(0), 6)
    assert b["obs"].shape == b["next_obs"].shape == (6, 6, 50, 50) and b["obs"].dtype == torch.uint8
    torch.testing.assert_close(b["obs"][:, 3:], b["next_obs"][:, :3])  # obs_t+1 starts with obs_t's second frame
    frames = d.splits["test"]["frames"]
    obs0, obs10 = d.pairs(10)
    assert obs0.shape == (30, 6, 50, 50)
    np.testing.assert_array_equal(obs10[:, :3].numpy(), frames[:, 10])
    np.testing.assert_array_equal(obs10[:, 3:].numpy(), frames[:, 11])
    with pytest.raises(ValueError, match="needs frame 12"):
        d.pairs(11)
    video = d.train_batch(0, 4)["frames"]
    assert video.shape == (4, 12, 3, 50, 50) and video.dtype == torch.uint8
    train = d.splits["train"]["frames"].reshape(-1, 3, 50, 50)
    assert all(any(np.array_equal(w[0].numpy(), f) for f in train) for w in video)  # windows of real episodes
    tests = list(d.test_batches(8))
    assert [len(t["frames"]) for t in tests] == [8, 8, 8, 6] and len(d) == 30
    np.testing.assert_array_equal(torch.cat([t["frames"] for t in tests]).numpy(), frames)


def test_convlstm_takes_the_frames():
    """The frame-level baseline's contract: one training step and an evaluation on the test episodes."""
    d = dataset(test=6)
    torch.manual_seed(0)
    model = ConvLSTM(typed(ConvLSTM, {"hidden": [8], "patch": 5, "batch_size": 4, "eval_batch": 4}, "model"), d)
    assert np.isfinite(model.train_step(0)["train/loss"])
    out = model.evaluate()
    assert out["eval/sequences"] == 6 and out["eval/mse"] > 0


@pytest.mark.parametrize("overrides,expect", [
    (["data.length=8"], "data.horizon: context + horizon = 12 frames must fit"),
    (["data.radius=30"], "data.radius: a disc of radius 30.0 does not fit"),
    (["data.bodies=9"], "data.bodies: must be in [2, 8]"),
    (["model=convlstm"], "model.patch=4 must divide the frame size data.size=50"),
])
def test_refusals(tmp_path, overrides, expect):
    with pytest.raises(ConfigError, match=re.escape(expect)):
        validate(compose_cfg(["agent=none", "env=none", "data=physics_frames", "model=cswm", "device=cpu",
                              *overrides]), tmp_path)


def test_bouncing_balls_keep_their_energy_stay_in_view_and_collide():
    """system=balls: kinetic energy exactly conserved, every disc whole and in view (never clipped), discs never
    overlap by more than one substep's travel, collisions between discs happen and change velocities, and the
    frames are a function of the seed."""
    d = dataset(system="balls", length=40)
    for split in ("train", "test"):
        s = d.splits[split]
        assert np.allclose(s["energy"], s["energy"][:, :1], rtol=1e-12)
        assert not s["clipped"].any()
        r, size = d.cfg.radius, d.cfg.size
        assert (s["centre"] >= r - 1e-3).all() and (s["centre"] <= size - r + 1e-3).all()
        c = s["centre"]
        gap = np.linalg.norm(c[:, :, :, None] - c[:, :, None], axis=-1) + np.eye(d.cfg.bodies) * size
        travel = d.cfg.speed * d.cfg.dt / d.cfg.substeps * d.pixels_per_unit
        assert gap.min() > 2 * r - 2 * travel
    # a disc-disc collision turns the velocity without any wall being near
    v, c = d.splits["train"]["vel"], d.splits["train"]["centre"]
    turned = np.abs(np.diff(v, axis=1)).sum(-1) > 1e-6  # (N, T - 1, n)
    near_wall = ((c[:, 1:] < 2 * d.cfg.radius + 2) | (c[:, 1:] > d.cfg.size - 2 * d.cfg.radius - 2)).any(-1)
    assert (turned & ~near_wall).any()
    assert np.array_equal(dataset(seed=3, system="balls").splits["test"]["frames"],
                          dataset(seed=3, system="balls").splits["test"]["frames"])
    assert not np.array_equal(dataset(seed=3, system="balls").splits["test"]["frames"],
                              dataset(seed=4, system="balls").splits["test"]["frames"])
