"""Hidden Markov models in torch: batched, float64 by default, differentiable.

`CategoricalHMM(startprob, transmat, emissionprob)` and `GaussianHMM(startprob, transmat, means, covars)`
(full covariances (K, D, D) or diagonal ones (K, D)). Every method takes one sequence, a padded batch
with `lengths`, or a list of sequences of different lengths:

    categorical: (T,) | (B, T) int            gaussian: (T, D) | (B, T, D) float

and loops only over time; the batch and the states are vectorised. The forward-backward pass is the
scaled one (each step normalised, the log of the normaliser accumulated), so it is stable for
sequences of any length (tested at 100,000 steps) and `log_likelihood` is differentiable with respect
to the parameters (pass tensors with `requires_grad=True`). Viterbi runs in log space.

Shapes out: `log_likelihood` -> () or (B,); `posterior` -> (T, K) or (B, T, K) (zeros at padding);
`viterbi` -> (log prob, path) with path (T,) or (B, T) (-1 at padding).

One limit of the scaled pass: an emission log-density more than ~700 nats below the best state's at
the same step underflows to zero; the likelihood is then exact unless *every* state reachable at that
step underflows (an observation ~38 sigma from all reachable states), which gives -inf.

`HMMWorldModel` at the bottom is the `model=hmm` part of the supervised loop (one EM iteration per
train step on the `data=casino` dataset).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wm.config import param
from wm.data.generative import markov_states
from wm.models.base import WorldModel

DTYPE = torch.float64


def as_tensor(x, dtype=DTYPE, device=None) -> torch.Tensor:
    """numpy / list / tensor -> tensor of `dtype` (a tensor already of that dtype keeps its graph)."""
    if isinstance(x, torch.Tensor):
        return x.to(dtype=dtype, device=device if device is not None else x.device)
    return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)


@contextlib.contextmanager
def one_thread():
    """Run torch on one intra-op thread inside the block (restored afterwards; process-wide meanwhile).

    The recursions here are long loops of small ops (a (B, K) @ (K, K) product per step): threads cost
    more than they save there, and on busy cores a multithreaded BLAS call per step is many times slower.
    """
    n = torch.get_num_threads()
    if n > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if n > 1:
            torch.set_num_threads(n)


def single_threaded(fn):
    """Decorator form of `one_thread` for the public methods."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with one_thread():
            return fn(*args, **kwargs)
    return wrapper


def pad_batch(obs, lengths, event_ndim: int, dtype, device):
    """Normalise the accepted observation forms to a padded batch.

    Returns (obs (B, T, *event), mask (B, T) bool, single) where `single` says a lone sequence came in.
    """
    if isinstance(obs, (list, tuple)):
        seqs = [as_tensor(s, dtype, device) for s in obs]
        lens = [len(s) for s in seqs]
        out = torch.zeros((len(seqs), max(lens)) + tuple(seqs[0].shape[1:]), dtype=dtype, device=device)
        for i, s in enumerate(seqs):
            out[i, : len(s)] = s
        lengths, obs, single = torch.tensor(lens, device=device), out, False
    else:
        obs = as_tensor(obs, dtype, device)
        single = obs.dim() == event_ndim + 1
        if single:
            obs = obs.unsqueeze(0)
        if obs.dim() != event_ndim + 2:
            raise ValueError(f"observations must have {event_ndim + 1} or {event_ndim + 2} dims, got {obs.dim()}")
    B, T = obs.shape[:2]
    if lengths is None:
        mask = torch.ones(B, T, dtype=torch.bool, device=obs.device)
    else:
        lengths = torch.as_tensor(np.asarray(lengths) if not torch.is_tensor(lengths) else lengths,
                                  device=obs.device).reshape(-1)
        mask = torch.arange(T, device=obs.device)[None, :] < lengths[:, None]
    return obs, mask, single


class _HMM:
    """Shared algorithms; subclasses define the emission model."""

    event_ndim = 0
    obs_dtype = DTYPE

    def __init__(self, startprob, transmat, dtype=DTYPE, device=None):
        self.dtype, self.device = dtype, device
        self.startprob = as_tensor(startprob, dtype, device)
        self.transmat = as_tensor(transmat, dtype, device)
        self.device = self.startprob.device
        self.history: list[float] = []

    @property
    def n_states(self) -> int:
        return self.startprob.shape[0]

    # -- emission model (subclasses) ------------------------------------------------------------------
    def log_emission(self, obs: torch.Tensor) -> torch.Tensor:
        """(B, T, *event) -> (B, T, K) log p(obs_t | state)."""
        raise NotImplementedError

    def _m_step_emission(self, obs, weights):
        raise NotImplementedError

    def _sample_emission(self, states, generator):
        raise NotImplementedError

    def params(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def set_params(self, **p):
        for k, v in p.items():
            setattr(self, k, as_tensor(v, self.dtype, self.device))

    # -- core passes -------------------------------------------------------------------------------------
    def _prepare(self, obs, lengths):
        obs, mask, single = pad_batch(obs, lengths, self.event_ndim, self.obs_dtype, self.device)
        clean = torch.where(mask.view(mask.shape + (1,) * self.event_ndim), obs, torch.zeros((), dtype=obs.dtype))
        logb = self.log_emission(clean).masked_fill(~mask[..., None], 0.0)
        return clean, logb, mask, single

    def _forward(self, logb, mask, store: bool = True):
        """Scaled forward pass.


        Returns alpha_hat (B, T, K) (filtered marginals), the scaled emissions E (B, T, K), the step
        normalisers c (B, T) and the per-step log-likelihood terms log c + shift (B, T, zero at padding).
        """
        shift = logb.max(-1, keepdim=True).values
        emis = torch.exp(logb - shift).transpose(0, 1).contiguous()  # (T, B, K)
        A = self.transmat
        a = self.startprob * emis[0]
        c = a.sum(-1, keepdim=True)
        a = a / c
        alphas, cs = [a], [c]
        for t in range(1, emis.shape[0]):
            a = (a @ A) * emis[t]
            c = a.sum(-1, keepdim=True)
            a = a / c
            if store:
                alphas.append(a)
            cs.append(c)
        c = torch.cat(cs, -1)
        logc = (torch.log(c) + shift[..., 0]).masked_fill(~mask, 0.0)
        alpha = torch.stack(alphas, 1) if store else None
        return alpha, emis.transpose(0, 1), c, logc

    def _backward(self, emis, c, mask):
        """Scaled backward pass with the forward normalisers: beta_hat (B, T, K), 1 at padding."""
        B, T, K = emis.shape
        emis_t, c_t, mask_t = emis.transpose(0, 1), c.transpose(0, 1), mask.transpose(0, 1)
        b = torch.ones(B, K, dtype=emis.dtype, device=emis.device)
        betas = [b]
        At, one = self.transmat.T, torch.ones((), dtype=emis.dtype)
        for t in range(T - 2, -1, -1):
            nb = ((emis_t[t + 1] * b) @ At) / c_t[t + 1, :, None]
            b = torch.where(mask_t[t + 1, :, None], nb, one)
            betas.append(b)
        return torch.stack(betas[::-1], 1)

    def _e_step(self, logb, mask):
        alpha, emis, c, logc = self._forward(logb, mask)
        beta = self._backward(emis, c, mask)
        gamma = alpha * beta * mask[..., None]
        # expected transition counts: sum_t alpha_{t-1}[i] A[i,j] E_t[j] beta_t[j] / c_t
        right = (emis * beta / c[..., None] * mask[..., None])[:, 1:]
        xi = self.transmat * torch.einsum("bti,btj->ij", alpha[:, :-1], right)
        return logc.sum(-1), gamma, xi

    # -- public API ----------------------------------------------------------------------------------------
    @single_threaded
    def log_likelihood(self, obs, lengths=None) -> torch.Tensor:
        """log p(obs) by the forward algorithm: () for one sequence, (B,) for a batch."""
        _, logb, mask, single = self._prepare(obs, lengths)
        ll = self._forward(logb, mask, store=False)[3].sum(-1)
        return ll[0] if single else ll

    @single_threaded
    def posterior(self, obs, lengths=None) -> torch.Tensor:
        """Forward-backward state marginals p(z_t | obs): (T, K) or (B, T, K)."""
        _, logb, mask, single = self._prepare(obs, lengths)
        gamma = self._e_step(logb, mask)[1]
        return gamma[0] if single else gamma

    @single_threaded
    def viterbi(self, obs, lengths=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Most likely state path: (log prob, path), path -1 at padding."""
        _, logb, mask, single = self._prepare(obs, lengths)
        B, T, K = logb.shape
        logA = torch.log(self.transmat)
        logb_t, mask_t = logb.transpose(0, 1), mask.transpose(0, 1)
        keep = torch.arange(K, device=logb.device).expand(B, K)
        d = torch.log(self.startprob) + logb_t[0]
        ptrs = []
        for t in range(1, T):
            best, arg = (d[:, :, None] + logA).max(1)
            m = mask_t[t, :, None]
            d = torch.where(m, best + logb_t[t], d)
            ptrs.append(torch.where(m, arg, keep))
        logp, state = d.max(-1)
        path = [state]
        for arg in reversed(ptrs):
            state = arg.gather(1, state[:, None])[:, 0]
            path.append(state)
        path = torch.stack(path[::-1], 1).masked_fill(~mask, -1)
        return (logp[0], path[0]) if single else (logp, path)

    @torch.no_grad()
    def sample(self, T: int, generator: torch.Generator | None = None, n: int | None = None):
        """Draw (states, obs): (T,), (T, *event) or with n: (n, T), (n, T, *event).

        States by inverse CDF on pre-drawn uniforms (wm.data.generative.markov_states)."""
        m = 1 if n is None else n
        u = torch.rand(m, T, generator=generator, dtype=self.dtype).to(self.device)
        states = markov_states(self.startprob, self.transmat, u)
        obs = self._sample_emission(states, generator)
        return (states[0], obs[0]) if n is None else (states, obs)

    @single_threaded
    @torch.no_grad()
    def em_step(self, obs, lengths=None) -> float:
        """One Baum-Welch iteration over all sequences; returns the total log-likelihood before it."""
        clean, logb, mask, _ = self._prepare(obs, lengths)
        ll, gamma, xi = self._e_step(logb, mask)
        tiny = torch.finfo(self.dtype).tiny
        start = gamma[:, 0].sum(0)
        self.startprob = start / start.sum()
        self.transmat = xi / xi.sum(1, keepdim=True).clamp_min(tiny)
        self._m_step_emission(clean, gamma)
        return float(ll.sum())

    def fit(self, sequences, lengths=None, n_iter: int = 100, tol: float = 1e-6):
        """Baum-Welch EM over several sequences until the gain in total log-likelihood is below `tol`.

        `self.history` holds the total log-likelihood before each iteration (never decreasing: exact EM).
        """
        self.history = []
        for _ in range(n_iter):
            self.history.append(self.em_step(sequences, lengths))
            if len(self.history) > 1 and self.history[-1] - self.history[-2] < tol:
                break
        return self


class CategoricalHMM(_HMM):
    """Discrete emissions: emissionprob (K, M), observations are integers in [0, M)."""

    event_ndim = 0
    obs_dtype = torch.long

    def __init__(self, startprob, transmat, emissionprob, dtype=DTYPE, device=None):
        super().__init__(startprob, transmat, dtype, device)
        self.emissionprob = as_tensor(emissionprob, dtype, self.device)

    def log_emission(self, obs):
        return torch.log(self.emissionprob).T[obs]

    def _m_step_emission(self, obs, gamma):
        onehot = torch.nn.functional.one_hot(obs, self.emissionprob.shape[1]).to(self.dtype)
        counts = torch.einsum("btk,btm->km", gamma, onehot)
        self.emissionprob = counts / counts.sum(1, keepdim=True).clamp_min(torch.finfo(self.dtype).tiny)

    def _sample_emission(self, states, generator):
        u = torch.rand(states.shape, generator=generator, dtype=self.dtype).to(self.device)
        cum = self.emissionprob.cumsum(1)[states]
        return (u[..., None] > cum).sum(-1).clamp_max(self.emissionprob.shape[1] - 1)

    def params(self):
        return {"startprob": self.startprob, "transmat": self.transmat, "emissionprob": self.emissionprob}


class GaussianHMM(_HMM):
    """Gaussian emissions: means (K, D), covars full (K, D, D) or diagonal (K, D)."""

    event_ndim = 1

    def __init__(self, startprob, transmat, means, covars, dtype=DTYPE, device=None, min_covar: float = 1e-6):
        super().__init__(startprob, transmat, dtype, device)
        self.means = as_tensor(means, dtype, self.device)
        self.covars = as_tensor(covars, dtype, self.device)
        self.min_covar = min_covar
        if self.covars.dim() not in (2, 3):
            raise ValueError("covars must be (K, D) (diagonal) or (K, D, D) (full)")

    @property
    def covariance_type(self) -> str:
        return "full" if self.covars.dim() == 3 else "diag"

    def log_emission(self, obs):
        D = self.means.shape[1]
        diff = obs[..., None, :] - self.means  # (B, T, K, D)
        if self.covariance_type == "diag":
            maha = (diff**2 / self.covars).sum(-1)
            logdet = torch.log(self.covars).sum(-1)
        else:
            L = torch.linalg.cholesky(self.covars)
            Linv = torch.linalg.solve_triangular(L, torch.eye(D, dtype=L.dtype, device=L.device), upper=False)
            maha = torch.einsum("kij,btkj->btki", Linv, diff).pow(2).sum(-1)
            logdet = 2 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)
        return -0.5 * (D * math.log(2 * math.pi) + logdet + maha)

    def _m_step_emission(self, obs, gamma):
        nk = gamma.sum((0, 1)).clamp_min(torch.finfo(self.dtype).tiny)
        self.means = torch.einsum("btk,btd->kd", gamma, obs) / nk[:, None]
        diff = obs[..., None, :] - self.means
        D = self.means.shape[1]
        if self.covariance_type == "diag":
            self.covars = torch.einsum("btk,btkd->kd", gamma, diff**2) / nk[:, None] + self.min_covar
        else:
            cov = torch.einsum("btk,btkd,btke->kde", gamma, diff, diff) / nk[:, None, None]
            self.covars = cov + self.min_covar * torch.eye(D, dtype=self.dtype, device=self.device)

    def _sample_emission(self, states, generator):
        D = self.means.shape[1]
        z = torch.randn(states.shape + (D,), generator=generator, dtype=self.dtype, device=self.device)
        if self.covariance_type == "diag":
            return self.means[states] + z * self.covars[states].sqrt()
        L = torch.linalg.cholesky(self.covars)[states]
        return self.means[states] + (L @ z[..., None])[..., 0]

    def params(self):
        return {"startprob": self.startprob, "transmat": self.transmat, "means": self.means, "covars": self.covars}


def best_permutation(true_emission: torch.Tensor, fitted_emission: torch.Tensor) -> tuple[int, ...]:
    """perm[i] = fitted state that plays true state i (min L1 distance of emission rows; small K only)."""
    K = true_emission.shape[0]
    return min(itertools.permutations(range(K)),
               key=lambda p: float(sum((true_emission[i] - fitted_emission[p[i]]).abs().sum() for i in range(K))))


def perturbed(model: _HMM, scale: float, generator: torch.Generator) -> _HMM:
    """A copy of `model` with its parameters moved away from the truth (EM's starting point)."""
    def mix(p):  # mix each probability row with a random one
        noise = torch.rand(p.shape, generator=generator, dtype=p.dtype).to(p.device)
        q = (1 - scale) * p + scale * noise / noise.sum(-1, keepdim=True)
        return q / q.sum(-1, keepdim=True)

    start, trans = mix(model.startprob), mix(model.transmat)
    if isinstance(model, CategoricalHMM):
        return CategoricalHMM(start, trans, mix(model.emissionprob), model.dtype, model.device)
    spread = model.means.std(0, keepdim=True).clamp_min(1.0)
    noise = torch.randn(model.means.shape, generator=generator, dtype=model.dtype).to(model.device)
    return GaussianHMM(start, trans, model.means + scale * spread * noise, model.covars * (1 + scale),
                       model.dtype, model.device, model.min_covar)


# ---- model=hmm: the supervised-loop part --------------------------------------------------------------
def em_state(model, inner) -> dict[str, torch.Tensor]:
    """Checkpoint of an EM world model: the parameters plus the EM bookkeeping."""
    return {k: v.detach().cpu().clone() for k, v in inner.params().items()} | {
        "last_loglik": torch.tensor(model.last_loglik, dtype=torch.float64),
        "gain": torch.tensor(model.gain, dtype=torch.float64), "converged": torch.tensor(model.converged)}


def load_em_state(model, inner, state) -> None:
    state = dict(state)
    model.last_loglik, model.gain = float(state.pop("last_loglik")), float(state.pop("gain"))
    model.converged = bool(state.pop("converged"))
    inner.set_params(**{k: None if v is None else v.to(model.device_) for k, v in state.items()})


# ---- --------------------------------------------------------------
class HMMWorldModel(WorldModel):
    """Baum-Welch on the dataset of `data=casino`: one EM iteration per train step.

    The dataset provides `true_params` (the true HMM's parameters), `train_obs`, `train_lengths`, `test_obs`, `test_lengths`,
    `test_states`. EM starts from the true model perturbed by `perturb` (seeded).
    """

    loop = "supervised"
    datasets = ("casino",)  # the env options this model can be trained on (for validation)

    @classmethod
    def refuse(cls, plan) -> str | None:
        return cls.check_dataset(plan.data_cls)

    @classmethod
    def check_dataset(cls, env_cls: type) -> str | None:
        """None if the dataset class fits this model, else a one-line reason (for wm.validate)."""
        if env_cls.__module__ + "." + env_cls.__qualname__ == "wm.data.casino.Casino":
            return None
        return f"model={cls.Config.name} needs a dataset with a true model; valid data: {', '.join(cls.datasets)}"

    @dataclass
    class Config:
        name: str = param("hmm", free="the option's name")
        perturb: float = param(0.5, ge=0, le=1)  # 0: start at the truth, 1: fully random probability rows
        init_seed: int = param(0, ge=0)  # added to the run seed for the perturbed start
        min_covar: float = param(1e-6, ge=0)  # Gaussian emissions only
        plot_steps: int = param(300, gt=0)  # how many steps of the first held-out sequence the plot shows
        # EM has converged once an iteration gains less total log-likelihood; later train steps then do
        # nothing (so a large total_steps is cheap)
        tol: float = param(1e-4, ge=0)

    def __init__(self, cfg: HMMWorldModel.Config, data: Any, device: torch.device | str = "cpu"):
        super().__init__()
        params = getattr(data, "true_params", None)
        if not isinstance(params, dict) or "transmat" not in params:
            raise TypeError("model=hmm needs an HMM dataset (data=casino)")
        self.cfg, self.data, self.device_ = cfg, data, torch.device(device)
        g = torch.Generator().manual_seed(int(getattr(data, "seed", 0)) + cfg.init_seed)
        self.truth = truth = (GaussianHMM if "means" in params else CategoricalHMM)(**params)
        self.hmm = perturbed(truth, cfg.perturb, g)
        self.hmm.set_params(**{k: v.to(self.device_) for k, v in self.hmm.params().items()})
        self.hmm.device = self.device_
        if isinstance(self.hmm, GaussianHMM):
            self.hmm.min_covar = cfg.min_covar
        self.train_obs = data.train_obs.to(self.device_)
        self.test_obs = data.test_obs.to(self.device_)
        self.n_train_steps = int(data.train_lengths.sum())
        self.n_test_steps = int(data.test_lengths.sum())
        self.last_loglik, self.gain, self.converged = float("nan"), float("nan"), False
        self.steps_done = 0

    def train_step(self, step: int) -> dict[str, float]:
        self.steps_done = step + 1
        if not self.converged:
            ll = self.hmm.em_step(self.train_obs, self.data.train_lengths)
            self.gain = ll - self.last_loglik if math.isfinite(self.last_loglik) else float("nan")
            self.converged = self.gain < self.cfg.tol
            self.last_loglik = ll
        return {"model/loglik": self.last_loglik / self.n_train_steps, "model/loglik_gain": self.gain,
                "model/converged": float(self.converged)}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        truth, lens = self.truth, self.data.test_lengths
        ll = float(self.hmm.log_likelihood(self.test_obs, lens).sum()) / self.n_test_steps
        ll_true = float(truth.log_likelihood(self.data.test_obs, lens).sum()) / self.n_test_steps
        perm = self._perm()
        _, path = self.hmm.viterbi(self.test_obs, lens)
        inv = torch.empty(len(perm), dtype=torch.long)
        inv[list(perm)] = torch.arange(len(perm))
        mask = path.cpu() >= 0
        mapped = inv[path.cpu().clamp_min(0)]
        acc = float((mapped == self.data.test_states)[mask].double().mean())
        _, true_path = truth.viterbi(self.data.test_obs, lens)
        acc_true = float((true_path == self.data.test_states)[true_path >= 0].double().mean())
        out = {"eval/loglik": ll, "eval/loglik_true": ll_true, "eval/state_accuracy": acc,
               "eval/state_accuracy_true": acc_true}
        if isinstance(self.hmm, CategoricalHMM):  # per true state, the largest emission error
            err = (self.hmm.emissionprob.cpu()[list(perm)] - truth.emissionprob).abs().amax()
            out["eval/emission_max_abs_error"] = float(err)
        return out

    def _perm(self):
        if isinstance(self.hmm, CategoricalHMM):
            return best_permutation(self.truth.emissionprob, self.hmm.emissionprob.cpu())
        return best_permutation(self.truth.means, self.hmm.means.cpu())

    @torch.no_grad()
    def artifacts(self, out_dir: Path, logger=None) -> Path:
        """Plot true states, observations and the Viterbi path of the first held-out sequence."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        n = min(self.cfg.plot_steps, int(self.data.test_lengths[0]))
        obs = self.data.test_obs[0, :n]
        perm = self._perm()
        inv = {f: i for i, f in enumerate(perm)}
        _, path = self.hmm.viterbi(self.test_obs[0, :n])
        path = np.array([inv[int(s)] for s in path.cpu()])
        names = getattr(self.data, "state_names", [str(k) for k in range(self.hmm.n_states)])
        fig, ax = plt.subplots(3, 1, figsize=(10, 5), sharex=True)
        t = np.arange(n)
        ax[0].step(t, self.data.test_states[0, :n].numpy(), where="mid", color="k")
        ax[0].set_ylabel("true state")
        ax[1].plot(t, obs.numpy() + (1 if obs.dtype == torch.long else 0), ".", ms=3)
        ax[1].set_ylabel("observation")
        ax[2].step(t, path, where="mid", color="C3")
        ax[2].set_ylabel("Viterbi")
        for a in (ax[0], ax[2]):
            a.set_yticks(range(len(names)), names)
        ax[2].set_xlabel("t")
        fig.suptitle("HMM: true states, observations, Viterbi path (held-out sequence 0)")
        fig.tight_layout()
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        path_png = out_dir / "hmm_states.png"
        fig.savefig(path_png, dpi=100)
        plt.close(fig)
        if logger is not None and hasattr(logger, "log_file"):
            logger.log_file("eval/states_plot", path_png, "image", self.steps_done)
        return path_png

    def state_dict(self, *args, **kwargs):
        return em_state(self, self.hmm)

    def load_state_dict(self, state, strict: bool = True):
        load_em_state(self, self.hmm, state)
