import pytest
import torch

from wm.data.pixel_rollouts import PixelRollouts


@pytest.fixture(scope="module")
def data():
    cfg = PixelRollouts.Config(size=32, context=3, horizon=4, train_episodes=4, test_episodes=2)
    return PixelRollouts(cfg, seed=0)


def test_windows_shapes_and_actions(data):
    b = data.train_batch(0, 3)
    assert b["frames"].shape == (3, 7, 3, 32, 32) and b["frames"].dtype == torch.uint8
    assert b["actions"].shape == (3, 7, 2)
    assert torch.equal(b["actions"].sum(-1), torch.ones(3, 7))  # one-hot CartPole actions
    assert torch.equal(b["frames"], data.train_batch(0, 3)["frames"])
    assert data.background.shape == (3, 32, 32) and data.background.max() <= 1
    assert data.action_dim == 2 and data.channels == 3
    n = sum(len(x["frames"]) for x in data.test_batches(2))
    assert n == len(data) > 0


def test_consecutive_frames_follow_the_env(data):
    f, a = data.train_eps[0]
    assert len(f) == len(a) >= 7
    assert (f[1:] != f[:-1]).any()  # the cart or pole moves


def test_test_set_ignores_the_run_seed(data):
    other = PixelRollouts(data.cfg, seed=1)
    assert torch.equal(other.test["frames"], data.test["frames"])
    assert not torch.equal(other.train_batch(0, 3)["frames"], data.train_batch(0, 3)["frames"])
