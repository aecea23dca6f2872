"""Kalman filter / RTS smoother / EM against pykalman and filterpy; monotone EM; recovery; gradients."""

import itertools

import numpy as np
import pytest
import torch

from wm.data.tracking import Tracking
from wm.models.kalman import ExtendedKalmanFilter, KalmanFilter, KalmanWorldModel, pendulum_ekf

pykalman = pytest.importorskip("pykalman")
filterpy_kf = pytest.importorskip("filterpy.kalman")

RTOL = 1e-6


def rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def spd(rng, k, scale=1.0):
    W = rng.normal(size=(k, k))
    return scale * (W @ W.T + 0.5 * np.eye(k))


def random_model(rng, n=4, m=2, p=0):
    F = rng.normal(size=(n, n))
    F *= 0.95 / np.abs(np.linalg.eigvals(F)).max()  # stable
    return {"F": F, "H": rng.normal(size=(m, n)), "Q": spd(rng, n, 0.2), "R": spd(rng, m, 0.5), "x0": rng.normal(size=n),
                "P0": spd(rng, n), "B": rng.normal(size=(n, p)) if p else None}


def reference(p, offsets=None):
    kw = {} if offsets is None else {"transition_offsets": offsets}
    return pykalman.KalmanFilter(
        transition_matrices=p["F"], observation_matrices=p["H"], transition_covariance=p["Q"],
        observation_covariance=p["R"], initial_state_mean=p["x0"], initial_state_covariance=p["P0"], **kw)


def observations(rng, T, m, missing=(3, 10, 11)):
    y = rng.normal(size=(T, m)) * 2
    y[list(missing)] = np.nan
    return y


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_filter_and_smoother_match_pykalman(seed):
    rng = np.random.default_rng(seed)
    n, m = 3 + seed, 1 + seed
    p = random_model(rng, n, m)
    kf, ref = KalmanFilter(**p), reference(p)
    seqs = [observations(rng, T, m) for T in (60, 40, 25)]
    lengths = [len(y) for y in seqs]
    batch = np.full((3, 60, m), 123.0)  # padding values must not matter
    for i, y in enumerate(seqs):
        batch[i, : len(y)] = y
    f, s = kf.filter(batch, lengths=lengths), kf.smooth(batch, lengths=lengths)
    for i, y in enumerate(seqs):
        L, ym = len(y), np.ma.masked_invalid(y)
        fm, fc = ref.filter(ym)
        sm, sc = ref.smooth(ym)
        assert rel(f.means[i, :L], fm) < RTOL and rel(f.covs[i, :L], fc) < RTOL
        assert rel(s.means[i, :L], sm) < RTOL and rel(s.covs[i, :L], sc) < RTOL
        assert rel(f.loglik[i], ref.loglikelihood(ym)) < RTOL
    one = kf.filter(seqs[0])
    assert one.means.shape == (60, n) and one.covs.shape == (60, n, n) and one.loglik.shape == ()
    assert rel(kf.log_likelihood(seqs[0]), f.loglik[0]) < 1e-12


def test_controls_match_pykalman_offsets():
    rng = np.random.default_rng(3)
    p = random_model(rng, 4, 2, p=1)
    T = 50
    u = rng.normal(size=(T, 1))
    y = observations(rng, T, 2)
    offsets = np.zeros((T, 4))
    offsets[:-1] = u[1:] @ p["B"].T  # pykalman's offset t drives the step t -> t+1
    ref = reference(p, offsets)
    kf = KalmanFilter(**p)
    f, s = kf.filter(y, u), kf.smooth(y, u)
    fm, fc = ref.filter(np.ma.masked_invalid(y))
    sm, sc = ref.smooth(np.ma.masked_invalid(y))
    assert rel(f.means, fm) < RTOL and rel(f.covs, fc) < RTOL
    assert rel(s.means, sm) < RTOL and rel(s.covs, sc) < RTOL


def test_filter_matches_filterpy():
    """filterpy's KalmanFilter (Joseph-form update): predict/update one step at a time."""
    rng = np.random.default_rng(4)
    p = random_model(rng, 4, 2)
    y = observations(rng, 40, 2)
    ref = filterpy_kf.KalmanFilter(dim_x=4, dim_z=2)
    ref.F, ref.H, ref.Q, ref.R = p["F"], p["H"], p["Q"], p["R"]
    ref.x, ref.P = p["x0"].copy(), p["P0"].copy()
    means, covs, ll = [], [], 0.0
    for t, yt in enumerate(y):
        if t > 0:
            ref.predict()
        if not np.isnan(yt).any():
            ref.update(yt)
            ll += ref.log_likelihood
        means.append(ref.x.copy())
        covs.append(ref.P.copy())
    f = KalmanFilter(**p).filter(y)
    assert rel(f.means, np.array(means)) < RTOL
    assert rel(f.covs, np.array(covs)) < RTOL
    assert rel(f.loglik, ll) < RTOL


def test_em_matches_pykalman():
    rng = np.random.default_rng(5)
    p = random_model(rng, 3, 2)
    y = observations(rng, 80, 2)
    names = {"F": "transition_matrices", "H": "observation_matrices", "Q": "transition_covariance",
             "R": "observation_covariance", "x0": "initial_state_mean", "P0": "initial_state_covariance"}
    ref = reference(p).em(np.ma.masked_invalid(y), n_iter=3, em_vars=list(names.values()))
    kf = KalmanFilter(**p).fit(y, n_iter=3)
    for ours, theirs in names.items():
        assert rel(getattr(kf, ours), getattr(ref, theirs)) < RTOL, ours


def test_em_monotone_on_batch_with_missing_and_controls():
    rng = np.random.default_rng(6)
    truth = KalmanFilter(**random_model(rng, 3, 2, p=1))
    u = torch.as_tensor(rng.normal(size=(5, 60, 1)))
    _, y = truth.sample(60, torch.Generator().manual_seed(0), n=5, u=u)
    y[:, ::7] = float("nan")
    start = KalmanFilter(**random_model(rng, 3, 2, p=1))
    start.fit(y, u, lengths=[60, 60, 50, 40, 30], n_iter=30, em_vars=("F", "B", "H", "Q", "R", "x0", "P0"))
    h = np.asarray(start.history)
    assert (np.diff(h) >= -1e-9 * np.abs(h[1:])).all(), np.diff(h).min()
    assert h[-1] > h[0]


def test_tracking_fit_reaches_true_loglik():
    """EM from a perturbed start: held-out log-likelihood per step within 1% of the true model's."""
    data = Tracking(Tracking.Config(n_train=10, train_length=150, n_test=10, test_length=150), seed=0)
    model = KalmanWorldModel(KalmanWorldModel.Config(perturb=2.0), data=data, device="cpu")
    start = model.evaluate()
    assert abs(start["eval/loglik"] - start["eval/loglik_true"]) > 0.05 * abs(start["eval/loglik_true"])
    lls = [model.train_step(i)["model/loglik"] for i in range(20)]
    assert all(b >= a - 1e-9 * abs(a) for a, b in itertools.pairwise(lls))
    end = model.evaluate()
    assert abs(end["eval/loglik"] - end["eval/loglik_true"]) < 0.01 * abs(end["eval/loglik_true"])
    assert end["eval/state_rmse"] < 1.1 * end["eval/state_rmse_true"]


def test_world_model_plots_and_restores(tmp_path):
    data = Tracking(Tracking.Config(n_train=3, train_length=50, n_test=2, test_length=60), seed=1)
    model = KalmanWorldModel(KalmanWorldModel.Config(), data=data, device="cpu")
    model.train_step(0)
    assert model.artifacts(tmp_path, None).stat().st_size > 0
    other = KalmanWorldModel(KalmanWorldModel.Config(init_seed=5), data=data, device="cpu")
    other.load_state_dict(model.state_dict())
    assert other.evaluate() == model.evaluate()


def test_gradients_match_finite_differences():
    rng = np.random.default_rng(7)
    p = random_model(rng, 3, 2)
    y = torch.as_tensor(observations(rng, 12, 2, missing=(4,)))
    args = tuple(torch.tensor(p[k], requires_grad=True) for k in ("F", "H", "Q", "R", "x0", "P0"))

    def ll(F, H, Q, R, x0, P0):  # symmetrised covariances so every finite difference stays a valid model
        sym = lambda a: 0.5 * (a + a.mT)
        return KalmanFilter(F, H, sym(Q), sym(R), x0, sym(P0)).log_likelihood(y)

    assert torch.autograd.gradcheck(ll, args)


def test_extended_filter_equals_linear_on_linear_model():
    rng = np.random.default_rng(8)
    p = random_model(rng, 3, 2)
    F, H = torch.tensor(p["F"]), torch.tensor(p["H"])
    ekf = ExtendedKalmanFilter(lambda x, u: x @ F.T, lambda x: x @ H.T, p["Q"], p["R"], p["x0"], p["P0"])
    y = observations(rng, 30, 2)
    a, b = ekf.smooth(y), KalmanFilter(**p).smooth(y)
    assert rel(a.means, b.means) < 1e-10 and rel(a.covs, b.covs) < 1e-10 and rel(a.loglik, b.loglik) < 1e-10


def test_extended_filter_tracks_pendulum():
    """Pendulum seen only through sin(angle): the EKF recovers angle and angular velocity."""
    ekf = pendulum_ekf(dt=0.05, q=1e-4, r=0.05)
    ekf.set_params(x0=[1.0, 0.0], P0=0.1 * torch.eye(2))
    g = torch.Generator().manual_seed(0)
    states, y = ekf.sample(200, g, n=8)
    sm = ekf.smooth(y)
    rmse = (sm.means - states).pow(2).mean((0, 1)).sqrt()
    spread = states.std((0, 1))
    assert (rmse < 0.2 * spread).all(), (rmse, spread)


def test_train_py_runs_kalman_tracking(tmp_path):
    from tests.conftest import summary, train

    run = tmp_path / "run"
    proc = train(run, "experiment=kalman_tracking", "total_steps=3", "eval.every=3", "data.n_train=4",
                 "data.train_length=60", "data.n_test=2", "data.test_length=60", "device=cpu")
    assert proc.returncode == 0, proc.stderr[-2000:]
    s = summary(run)
    assert s["status"] == "completed" and s["steps"] == 3
    for key in ("eval/loglik", "eval/loglik_true", "eval/state_rmse"):
        assert isinstance(s[key], float)
    assert (run / "kalman_track.png").stat().st_size > 0
