"""HMMs against hmmlearn (random models and sequences), EM monotonicity and recovery, gradients."""

import itertools

import numpy as np
import pytest
import torch

from wm.data.casino import Casino
from wm.models.hmm import CategoricalHMM, GaussianHMM, HMMWorldModel, best_permutation, perturbed

hmm = pytest.importorskip("hmmlearn.hmm")

RTOL = 1e-6


def rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def random_categorical(rng, K, M):
    return rng.dirichlet(np.ones(K)), rng.dirichlet(np.ones(K), K), rng.dirichlet(np.ones(M), K)


def random_gaussian(rng, K, D, cov):
    means = rng.normal(size=(K, D)) * 2
    if cov == "full":
        W = rng.normal(size=(K, D, D))
        covars = W @ W.transpose(0, 2, 1) + 0.3 * np.eye(D)
    else:
        covars = rng.uniform(0.3, 2.0, size=(K, D))
    return rng.dirichlet(np.ones(K)), rng.dirichlet(np.ones(K), K), means, covars


def hmmlearn_categorical(pi, A, E):
    ref = hmm.CategoricalHMM(len(pi), init_params="", params="ste", n_iter=1, tol=-np.inf)
    ref.startprob_, ref.transmat_, ref.emissionprob_, ref.n_features = pi, A, E, E.shape[1]
    return ref


def hmmlearn_gaussian(pi, A, means, covars, cov):
    ref = hmm.GaussianHMM(len(pi), covariance_type=cov, init_params="", n_iter=1)
    ref.startprob_, ref.transmat_, ref.means_, ref.covars_ = pi, A, means, covars
    ref.n_features = means.shape[1]
    return ref


def check_against(model, ref, seqs, as_ref):
    """Our batch (padded, with lengths) against hmmlearn one sequence at a time."""
    lengths = [len(s) for s in seqs]
    ll = model.log_likelihood(seqs)
    post = model.posterior(seqs)
    vlp, path = model.viterbi(seqs)
    assert ll.shape == (len(seqs),) and post.shape[:2] == (len(seqs), max(lengths))
    for i, s in enumerate(seqs):
        L = len(s)
        assert rel(ll[i], ref.score(as_ref(s))) < RTOL
        assert rel(post[i, :L], ref.predict_proba(as_ref(s))) < RTOL
        assert (post[i, L:] == 0).all()
        rlp, rpath = ref.decode(as_ref(s), algorithm="viterbi")
        assert rel(vlp[i], rlp) < RTOL
        np.testing.assert_array_equal(path[i, :L].numpy(), rpath)
        assert (path[i, L:] == -1).all()
    # a single sequence gives unbatched shapes and the same numbers
    s = seqs[0]
    assert model.log_likelihood(s).shape == () and rel(model.log_likelihood(s), ll[0]) < 1e-12
    assert model.posterior(s).shape == (len(s), model.n_states)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_categorical_matches_hmmlearn(seed):
    rng = np.random.default_rng(seed)
    K, M = 3 + seed, 4 + seed
    pi, A, E = random_categorical(rng, K, M)
    seqs = [rng.integers(0, M, size=L) for L in (60, 25, 1, 40)]
    check_against(CategoricalHMM(pi, A, E), hmmlearn_categorical(pi, A, E), seqs, lambda s: s[:, None])


@pytest.mark.parametrize("cov", ["full", "diag"])
@pytest.mark.parametrize("seed", [0, 1])
def test_gaussian_matches_hmmlearn(cov, seed):
    rng = np.random.default_rng(10 + seed)
    K, D = 4, 3
    pi, A, means, covars = random_gaussian(rng, K, D, cov)
    model = GaussianHMM(pi, A, means, covars)
    assert model.covariance_type == cov
    seqs = [rng.normal(size=(L, D)) * 2 for L in (50, 30, 7)]
    check_against(model, hmmlearn_gaussian(pi, A, means, covars, cov), seqs, lambda s: s)


def test_padded_tensor_with_lengths_equals_list():
    rng = np.random.default_rng(3)
    pi, A, E = random_categorical(rng, 3, 5)
    m = CategoricalHMM(pi, A, E)
    seqs = [rng.integers(0, 5, size=L) for L in (20, 9)]
    padded = np.full((2, 20), 4)  # padding values must not matter
    for i, s in enumerate(seqs):
        padded[i, : len(s)] = s
    torch.testing.assert_close(m.log_likelihood(padded, lengths=[20, 9]), m.log_likelihood(seqs), rtol=0, atol=0)


def test_long_sequence_is_stable():
    """100,000 steps: the scaled forward stays finite and equal to hmmlearn's."""
    rng = np.random.default_rng(4)
    pi, A, E = random_categorical(rng, 5, 6)
    m = CategoricalHMM(pi, A, E)
    obs = torch.as_tensor(rng.integers(0, 6, size=100_000))
    ll = m.log_likelihood(obs)
    assert torch.isfinite(ll)
    assert rel(ll, hmmlearn_categorical(pi, A, E).score(obs.numpy()[:, None])) < RTOL


def test_em_step_matches_hmmlearn():
    rng = np.random.default_rng(5)
    pi, A, E = random_categorical(rng, 3, 4)
    seqs = [rng.integers(0, 4, size=L) for L in (40, 25, 60)]
    ref = hmmlearn_categorical(pi, A, E)
    ref.fit(np.concatenate(seqs)[:, None], [len(s) for s in seqs])
    m = CategoricalHMM(pi, A, E)
    m.em_step(seqs)
    assert rel(m.startprob, ref.startprob_) < RTOL
    assert rel(m.transmat, ref.transmat_) < RTOL
    assert rel(m.emissionprob, ref.emissionprob_) < RTOL


def assert_monotone(history):
    h = np.asarray(history)
    assert len(h) > 5
    assert (np.diff(h) >= -1e-9 * np.abs(h[1:])).all(), np.diff(h).min()


def test_em_monotone_categorical():
    rng = np.random.default_rng(6)
    truth = CategoricalHMM(*random_categorical(rng, 3, 5))
    _, obs = truth.sample(150, torch.Generator().manual_seed(1), n=8)
    m = CategoricalHMM(*random_categorical(rng, 3, 5)).fit(obs, lengths=[150] * 4 + [90] * 4, n_iter=40, tol=-1)
    assert_monotone(m.history)


@pytest.mark.parametrize("cov", ["full", "diag"])
def test_em_monotone_gaussian(cov):
    rng = np.random.default_rng(7)
    truth = GaussianHMM(*random_gaussian(rng, 3, 2, cov))
    _, obs = truth.sample(150, torch.Generator().manual_seed(2), n=6)
    start = GaussianHMM(*random_gaussian(rng, 3, 2, cov), min_covar=0.0)
    m = start.fit(obs, n_iter=40, tol=-1)
    assert_monotone(m.history)
    assert m.history[-1] > m.history[0]


def test_casino_em_recovers_loaded_die():
    """10,000 rolls (50 x 200), perturbed start: the loaded die's six probabilities within 0.05."""
    data = Casino(Casino.Config(n_train=50, train_length=200, n_test=2, test_length=200), seed=0)
    truth = CategoricalHMM(**data.true_params)
    m = perturbed(truth, 0.5, torch.Generator().manual_seed(0))
    m.fit(data.train_obs, n_iter=500, tol=1e-4)
    assert_monotone(m.history)
    perm = best_permutation(truth.emissionprob, m.emissionprob)
    loaded = m.emissionprob[perm[1]]
    assert (loaded - truth.emissionprob[1]).abs().max() < 0.05, loaded


def test_gradients_match_finite_differences():
    rng = np.random.default_rng(8)
    pi, A, E = (torch.tensor(a, requires_grad=True) for a in random_categorical(rng, 3, 4))
    obs = torch.as_tensor(rng.integers(0, 4, size=(2, 15)))
    fn = lambda p, a, e: CategoricalHMM(p, a, e).log_likelihood(obs, lengths=[15, 9])
    assert torch.autograd.gradcheck(fn, (pi, A, E))

    pi, A, means, _ = random_gaussian(rng, 3, 2, "diag")
    W = torch.tensor(rng.normal(size=(3, 2, 2)), requires_grad=True)
    args = (torch.tensor(pi, requires_grad=True), torch.tensor(A, requires_grad=True),
            torch.tensor(means, requires_grad=True), W)
    y = torch.tensor(rng.normal(size=(12, 2)))
    full = lambda p, a, mu, w: GaussianHMM(p, a, mu, w @ w.mT + 0.5 * torch.eye(2)).log_likelihood(y)
    assert torch.autograd.gradcheck(full, args)
    diag = lambda p, a, mu, w: GaussianHMM(p, a, mu, (w**2).sum(-1) + 0.5).log_likelihood(y)
    assert torch.autograd.gradcheck(diag, args)


def test_sample_shapes_and_frequencies():
    data = Casino(Casino.Config(n_train=1, train_length=5, n_test=1, test_length=5), seed=0)
    states, obs = CategoricalHMM(**data.true_params).sample(20_000, torch.Generator().manual_seed(3))
    assert states.shape == obs.shape == (20_000,)
    # stationary share of the loaded die: 0.05 / (0.05 + 0.1) = 1/3
    assert abs(float(states.double().mean()) - 1 / 3) < 0.05
    sixes_when_loaded = (obs[states == 1] == 5).double().mean()
    assert abs(float(sixes_when_loaded) - 0.5) < 0.03
    g = GaussianHMM(*random_gaussian(np.random.default_rng(0), 2, 3, "full"))
    s, y = g.sample(7, torch.Generator().manual_seed(0), n=4)
    assert s.shape == (4, 7) and y.shape == (4, 7, 3)


def test_world_model_steps_evaluates_and_plots(tmp_path):
    data = Casino(Casino.Config(n_train=20, train_length=200, n_test=4, test_length=300), seed=1)
    model = HMMWorldModel(HMMWorldModel.Config(), data=data, device="cpu")
    assert model.loop == "supervised"
    before = model.evaluate()
    lls = [model.train_step(i)["model/loglik"] for i in range(30)]
    assert all(b >= a - 1e-12 for a, b in itertools.pairwise(lls))
    after = model.evaluate()
    assert set(after) >= {"eval/loglik", "eval/loglik_true", "eval/state_accuracy"}
    assert after["eval/loglik"] > before["eval/loglik"]
    assert after["eval/loglik"] > after["eval/loglik_true"] - 0.01
    assert after["eval/state_accuracy"] > 0.7
    assert (tmp_path / "hmm_states.png") == model.artifacts(tmp_path, None)
    assert (tmp_path / "hmm_states.png").stat().st_size > 0
    state = model.state_dict()
    other = HMMWorldModel(HMMWorldModel.Config(), data=data, device="cpu")
    other.load_state_dict(state)
    assert other.evaluate() == after


def test_train_py_runs_hmm_casino_and_resumes(tmp_path):
    from tests.conftest import summary, train

    small = ["data.n_train=5", "data.train_length=200", "data.n_test=2", "data.test_length=200", "eval.every=2",
             "checkpoint.every=2", "log_every=2", "device=cpu"]
    run = tmp_path / "run"
    proc = train(run, "experiment=hmm_casino", "total_steps=4", *small)
    assert proc.returncode == 0, proc.stderr[-2000:]
    s = summary(run)
    assert s["status"] == "completed" and s["steps"] == 4 and s["steps_unit"] == "train steps (optimizer or EM)"
    config = (run / "config.yaml").read_text()
    assert config.startswith("# total_steps counts train steps") and "\nenv:" not in config and "\ndata:" in config
    for key in ("eval/loglik", "eval/loglik_true", "eval/state_accuracy"):
        assert isinstance(s[key], float)
    assert (run / "hmm_states.png").stat().st_size > 0
    proc = train(run, "experiment=hmm_casino", "total_steps=6", *small, "resume=true")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert summary(run)["steps"] == 6


def test_models_name_the_datasets_they_fit():
    from wm.data.tracking import Tracking
    from wm.models.kalman import KalmanWorldModel

    assert HMMWorldModel.check_dataset(Casino) is None and KalmanWorldModel.check_dataset(Tracking) is None
    assert "valid data: casino" in HMMWorldModel.check_dataset(Tracking)
    assert "valid data: tracking" in KalmanWorldModel.check_dataset(Casino)
