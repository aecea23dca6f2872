"""data=casino / data=tracking datasets and the CartPole Kalman bridge."""

import numpy as np
import pytest
import torch

from wm.data.casino import Casino
from wm.data.tracking import Tracking
from wm.models.cartpole_kalman import bridge


def test_casino_is_seeded_and_shaped():
    cfg = Casino.Config(n_train=3, train_length=50, n_test=2, test_length=40)
    a, b, c = Casino(cfg, seed=1), Casino(cfg, seed=1), Casino(cfg, seed=2)
    assert torch.equal(a.train_obs, b.train_obs) and torch.equal(a.test_states, b.test_states)
    assert not torch.equal(a.train_obs, c.train_obs)
    assert a.train_obs.shape == (3, 50) and a.test_obs.shape == (2, 40)
    assert a.train_obs.min() >= 0 and a.train_obs.max() <= 5
    assert set(a.train_states.unique().tolist()) <= {0, 1}


def test_tracking_is_seeded_with_missing_fixes():
    cfg = Tracking.Config(n_train=4, train_length=300, n_test=2, test_length=30, p_missing=0.2)
    a, b = Tracking(cfg, seed=3), Tracking(cfg, seed=3)
    torch.testing.assert_close(a.train_obs, b.train_obs, equal_nan=True)
    assert a.train_states.shape == (4, 300, 4) and a.train_obs.shape == (4, 300, 2)
    lost = torch.isnan(a.train_obs).all(-1).double().mean()
    assert abs(float(lost) - 0.2) < 0.05
    seen = ~torch.isnan(a.train_obs).any(-1)
    err = (a.train_obs - a.train_states[..., :2])[seen]
    assert abs(float(err.std()) - cfg.r) < 0.1  # fixes are true positions plus N(0, r^2) noise


@pytest.mark.parametrize("bad", [{"p_missing": 1.0}, {"n_test": 0}])
def test_tracking_rejects_bad_config(bad):
    with pytest.raises(ValueError):
        Tracking(Tracking.Config(**bad), seed=0)


def test_cartpole_bridge_learns_the_velocities():
    """EM from a physics-free start estimates CartPole's velocities from noisy positions better."""
    r = bridge(n_train=8, n_test=6, T=150, n_iter=25)
    assert r["em_monotone"]
    start, fitted = r["state_rmse_start_model"], r["state_rmse_fitted"]
    for v in ("x_dot", "theta_dot"):
        assert fitted[v] < 0.85 * start[v], (v, start[v], fitted[v])
        assert fitted[v] < r["state_rmse_finite_difference"][v]
    for p in ("x", "theta"):
        assert fitted[p] < 1.05 * start[p]
    assert np.isfinite(r["history"]).all()


def test_datasets_draw_what_their_true_models_draw():
    """The data layer samples from parameters alone; the draws equal the model classes' own samplers."""
    from wm.models.hmm import CategoricalHMM
    from wm.models.kalman import KalmanFilter

    c = Casino(Casino.Config(n_train=3, train_length=40, n_test=2, test_length=30), seed=4)
    g = torch.Generator().manual_seed(4)
    truth = CategoricalHMM(**c.true_params)
    for states, obs, (n, T) in ((c.train_states, c.train_obs, (3, 40)), (c.test_states, c.test_obs, (2, 30))):
        s, o = truth.sample(T, g, n=n)
        assert torch.equal(s, states) and torch.equal(o, obs)
    t = Tracking(Tracking.Config(n_train=2, train_length=25, n_test=1, test_length=10, p_missing=0.0), seed=5)
    s, o = KalmanFilter(**t.true_params).sample(25, torch.Generator().manual_seed(5), n=2)
    assert torch.equal(s, t.train_states) and torch.equal(o, t.train_obs)
