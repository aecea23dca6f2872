"""Linear-Gaussian state-space models in torch: Kalman filter, RTS smoother, EM. Batched, differentiable.

Model (pykalman's convention: `x0`, `P0` are the prior of the state at the *first* observation):

    x_0 ~ N(x0, P0),   x_t = F x_{t-1} + B u_t + w_t,  w_t ~ N(0, Q)   (t >= 1; u_0 is not used)
    y_t = H x_t + v_t,  v_t ~ N(0, R)

Observations `y` are (T, m) or a padded batch (B, T, m) with `lengths`; a row with any NaN is missing
and skipped in the update (its step only predicts). Controls `u` are (T, p) / (B, T, p). The update is
the Joseph form, the gain comes from a Cholesky solve of the innovation covariance, and the loops run
only over time (the batch is vectorised). Everything is float64 by default and differentiable.

`ExtendedKalmanFilter` takes nonlinear `f(x, u)` / `h(x)` (batched torch functions) and linearises them
with autograd Jacobians at each step (EKF + extended RTS smoother).

`KalmanWorldModel` at the bottom is the `model=kalman` part of the supervised loop (`data=tracking`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from wm.config import Allowed, check_tree, param
from wm.models.base import WorldModel
from wm.models.hmm import DTYPE, as_tensor, em_state, load_em_state, single_threaded

EM_VARS = ("F", "H", "Q", "R", "x0", "P0")


class FilterResult(NamedTuple):
    means: torch.Tensor        # (T, n) / (B, T, n): E[x_t | y_0..t]
    covs: torch.Tensor         # (T, n, n) / (B, T, n, n)
    loglik: torch.Tensor       # () / (B,): log p(y) over the observed steps


class SmoothResult(NamedTuple):
    means: torch.Tensor        # E[x_t | all y]
    covs: torch.Tensor
    loglik: torch.Tensor


def _sym(P):
    return 0.5 * (P + P.mT)


class KalmanFilter:
    def __init__(self, F, H, Q, R, x0, P0, B=None, dtype=DTYPE, device=None):
        self.dtype = dtype
        self.F = as_tensor(F, dtype, device)
        self.device = self.F.device
        self.H, self.Q, self.R = (as_tensor(a, dtype, self.device) for a in (H, Q, R))
        self.x0, self.P0 = as_tensor(x0, dtype, self.device), as_tensor(P0, dtype, self.device)
        self.B = None if B is None else as_tensor(B, dtype, self.device)
        self.history: list[float] = []

    @property
    def n_state(self) -> int:
        return self.x0.shape[0]

    @property
    def n_obs(self) -> int:
        return self.R.shape[0]

    def params(self) -> dict[str, torch.Tensor]:
        p = {"F": self.F, "H": self.H, "Q": self.Q, "R": self.R, "x0": self.x0, "P0": self.P0}
        return p if self.B is None else p | {"B": self.B}

    def set_params(self, **p):
        for k, v in p.items():
            setattr(self, k, None if v is None else as_tensor(v, self.dtype, self.device))

    # -- the two model pieces (overridden by the extended filter) -------------------------------------------
    def _transition(self, x, u_t):
        """-> (mean of x_t given x_{t-1} = x, its Jacobian F_t (n, n) or (B, n, n))."""
        mean = x @ self.F.T
        if u_t is not None:
            mean = mean + u_t @ self.B.T
        return mean, self.F

    def _observation(self, x):
        """-> (predicted observation, Jacobian H_t)."""
        return x @ self.H.T, self.H

    # -- passes ----------------------------------------------------------------------------------------------
    def _prepare(self, y, u, lengths):
        y = as_tensor(y, self.dtype, self.device)
        single = y.dim() == 2
        if single:
            y = y[None]
        Bn, T, _ = y.shape
        valid = torch.ones(Bn, T, dtype=torch.bool, device=self.device)
        if lengths is not None:
            lengths = torch.as_tensor(np.asarray(lengths), device=self.device).reshape(-1)
            valid = torch.arange(T, device=self.device)[None] < lengths[:, None]
        ok = valid & ~torch.isnan(y).any(-1)
        y = torch.where(ok[..., None], y, torch.zeros((), dtype=y.dtype))
        if u is not None:
            if self.B is None:
                raise ValueError("controls u given but the model has no B")
            u = as_tensor(u, self.dtype, self.device)
            u = u[None] if single else u
        return y, u, ok, valid, single

    def _filter(self, y, u, ok):
        """Time-major loop. Returns dict of (B, T, ...) tensors xp, Pp, xf, Pf, ll (B,) and Fs (list).

        The per-step log-likelihood terms are evaluated after the loop from the stored innovations and
        their covariances (one batched Cholesky), which keeps the loop short.
        """
        Bn, T, m = y.shape
        n = self.n_state
        eye = torch.eye(n, dtype=self.dtype, device=self.device)
        y_t = y.transpose(0, 1)
        u_t = None if u is None else u.transpose(0, 1)
        ok_t = ok.transpose(0, 1)
        partial = (~ok_t).any(1).tolist()  # steps where some sequence has no observation
        x = self.x0.expand(Bn, n)
        P = self.P0.expand(Bn, n, n)
        R = self.R
        xp, Pp, xf, Pf, Fs, Ss, rs = [], [], [], [], [], [], []
        for t in range(T):
            if t > 0:
                x, Fj = self._transition(x, None if u_t is None else u_t[t])
                P = Fj @ P @ Fj.mT + self.Q
                Fs.append(Fj)
            xp.append(x)
            Pp.append(P)
            yhat, Hj = self._observation(x)
            PHt = P @ Hj.mT                                   # (B, n, m)
            S = Hj @ PHt + R                                  # innovation covariance
            r = y_t[t] - yhat
            K = torch.linalg.solve(S, PHt.mT).mT              # P H^T S^-1
            IKH = eye - K @ Hj
            Pn = IKH @ P @ IKH.mT + K @ R @ K.mT              # Joseph form
            xn = x + (K @ r[..., None])[..., 0]
            if partial[t]:
                o = ok_t[t]
                x = torch.where(o[:, None], xn, x)
                P = torch.where(o[:, None, None], Pn, P)
            else:
                x, P = xn, Pn
            xf.append(x)
            Pf.append(P)
            Ss.append(S)
            rs.append(r)
        S, r = torch.stack(Ss, 1), torch.stack(rs, 1)
        L = torch.linalg.cholesky(S)
        z = torch.linalg.solve_triangular(L, r[..., None], upper=False)[..., 0]
        llt = -0.5 * (m * math.log(2 * math.pi) + 2 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)
                      + (z * z).sum(-1))
        ll = torch.where(ok, llt, torch.zeros((), dtype=llt.dtype)).sum(1)
        return {"xp": torch.stack(xp, 1), "Pp": torch.stack(Pp, 1), "xf": torch.stack(xf, 1), "Pf": torch.stack(Pf, 1),
                    "ll": ll, "Fs": Fs}  # Fs: Jacobians of the transitions into t = 1..T-1

    def _smooth(self, f, valid):
        """Rauch-Tung-Striebel backward pass. Adds xs, Ps and G (gains, (B, T-1, n, n)) to `f`."""
        xp, Pp, xf, Pf = f["xp"], f["Pp"], f["xf"], f["Pf"]
        Bn, T, n = xf.shape
        xs, Ps = xf[:, -1], Pf[:, -1]
        xss, Pss, Gs = [xs], [Ps], []
        zero = torch.zeros((), dtype=self.dtype)
        for t in range(T - 2, -1, -1):
            Fj = f["Fs"][t]
            G = torch.linalg.solve(Pp[:, t + 1], Fj @ Pf[:, t]).mT   # Pf_t F^T Pp_{t+1}^-1 (Pp symmetric)
            v = valid[:, t + 1]
            xn = xf[:, t] + (G @ (xs - xp[:, t + 1])[..., None])[..., 0]
            Pn = Pf[:, t] + G @ (Ps - Pp[:, t + 1]) @ G.mT
            xs = torch.where(v[:, None], xn, xf[:, t])
            Ps = torch.where(v[:, None, None], Pn, Pf[:, t])
            G = torch.where(v[:, None, None], G, zero)
            xss.append(xs)
            Pss.append(Ps)
            Gs.append(G)
        f["xs"] = torch.stack(xss[::-1], 1)
        f["Ps"] = torch.stack(Pss[::-1], 1)
        f["G"] = torch.stack(Gs[::-1], 1) if Gs else xf.new_zeros(Bn, 0, n, n)
        return f

    # -- public API -------------------------------------------------------------------------------------------
    @single_threaded
    def filter(self, y, u=None, lengths=None) -> FilterResult:
        y, u, ok, _valid, single = self._prepare(y, u, lengths)
        f = self._filter(y, u, ok)
        res = FilterResult(f["xf"], f["Pf"], f["ll"])
        return FilterResult(*(a[0] for a in res)) if single else res

    @single_threaded
    def smooth(self, y, u=None, lengths=None) -> SmoothResult:
        y, u, ok, valid, single = self._prepare(y, u, lengths)
        f = self._smooth(self._filter(y, u, ok), valid)
        res = SmoothResult(f["xs"], f["Ps"], f["ll"])
        return SmoothResult(*(a[0] for a in res)) if single else res

    def log_likelihood(self, y, u=None, lengths=None) -> torch.Tensor:
        return self.filter(y, u, lengths).loglik

    @torch.no_grad()
    def sample(self, T: int, generator: torch.Generator | None = None, n: int | None = None, u=None):
        """Draw (states, observations): (T, n_state), (T, m), or with n: (n, T, ...)."""
        N = 1 if n is None else n
        kw = {"generator": generator, "dtype": self.dtype}

        def gauss(mean, chol):
            return mean + torch.randn(mean.shape, **kw).to(self.device) @ chol.mT

        LP0, LQ, LR = (torch.linalg.cholesky(c) for c in (self.P0, self.Q, self.R))
        if u is not None:
            u = as_tensor(u, self.dtype, self.device)
            u = u[None].expand(N, -1, -1) if u.dim() == 2 else u
        x = gauss(self.x0.expand(N, -1), LP0)
        xs = [x]
        for t in range(1, T):
            x = gauss(self._transition(x, None if u is None else u[:, t])[0], LQ)
            xs.append(x)
        xs = torch.stack(xs, 1)
        ys = gauss(self._observation(xs.reshape(N * T, -1))[0], LR).view(N, T, -1)
        return (xs[0], ys[0]) if n is None else (xs, ys)

    def _keep_rows(self, best: torch.Tensor, old: torch.Tensor, fixed_rows) -> torch.Tensor:
        """Constrained M-step for [F B] with the rows `fixed_rows` held at `old` (known kinematics).

        The expected complete-data log-likelihood is tr(Q^-1 (M - best) S (M - best)^T) + const in M = [F B];
        with rows a fixed, its maximiser over the free rows b (at the current Q) is
        M_b = best_b + Q_ba Q_aa^-1 (old_a - best_a): an exact conditional step, so EM stays monotone.
        """
        if not fixed_rows:
            return best
        a = torch.as_tensor(list(fixed_rows), device=self.device)
        b = torch.as_tensor([i for i in range(self.n_state) if i not in set(fixed_rows)], device=self.device)
        out = old.clone()
        shift = torch.linalg.solve(self.Q[a][:, a], old[a] - best[a])
        out[b] = best[b] + self.Q[b][:, a] @ shift
        return out

    @single_threaded
    @torch.no_grad()
    def em_step(self, y, u=None, lengths=None, em_vars=EM_VARS, fixed_rows=()) -> float:
        """One EM iteration (Shumway & Stoffer; the updates and their order follow pykalman) summed over
        the sequences; with controls and "B" in em_vars, [F B] is one joint regression, and `fixed_rows`
        keeps those rows of [F B] as they are (e.g. position += dt * velocity). Returns the total
        log-likelihood before the update."""
        y, u, ok, valid, _ = self._prepare(y, u, lengths)
        f = self._smooth(self._filter(y, u, ok), valid)
        xs, Ps, G = f["xs"], f["Ps"], f["G"]
        w = ok.to(self.dtype)[..., None, None]
        tr = (valid[:, 1:] & valid[:, :-1]).to(self.dtype)[..., None, None]
        outer = lambda a, b: a[..., :, None] * b[..., None, :]
        Exx = Ps + outer(xs, xs)
        n_obs, n_tr = w.sum(), tr.sum()
        p = {}
        H = self.H
        if "H" in em_vars:
            num, den = (w * outer(y, xs)).sum((0, 1)), (w * Exx).sum((0, 1))
            H = p["H"] = torch.linalg.solve(den, num.T).T
        if "R" in em_vars:
            e = y - xs @ H.T
            p["R"] = _sym((w * (outer(e, e) + H @ Ps @ H.T)).sum((0, 1)) / n_obs.clamp_min(1))
        # pairwise Cov(x_t, x_{t-1} | all) = Ps_t G_{t-1}^T
        V = Ps[:, 1:] @ G.mT
        x1, x0 = xs[:, 1:], xs[:, :-1]
        F, Bm = self.F, self.B
        ut = None if u is None else u[:, 1:]
        if "F" in em_vars:
            Exy = (tr * (V + outer(x1, x0))).sum((0, 1))           # sum E[x_t x_{t-1}^T]
            Eyy = (tr * Exx[:, :-1]).sum((0, 1))                   # sum E[x_{t-1} x_{t-1}^T]
            if ut is not None and "B" in em_vars:
                Exu = (tr * outer(x1, ut)).sum((0, 1))
                Eyu = (tr * outer(x0, ut)).sum((0, 1))
                Euu = (tr * outer(ut, ut)).sum((0, 1))
                num = torch.cat([Exy, Exu], 1)
                den = torch.cat([torch.cat([Eyy, Eyu], 1), torch.cat([Eyu.T, Euu], 1)], 0)
                FB = self._keep_rows(torch.linalg.solve(den, num.T).T, torch.cat([F, Bm], 1), fixed_rows)
                F, Bm = FB[:, : self.n_state], FB[:, self.n_state:]
                p["B"] = Bm
            else:
                if ut is not None:
                    Exy = Exy - (tr * outer(ut @ Bm.T, x0)).sum((0, 1))
                F = self._keep_rows(torch.linalg.solve(Eyy, Exy.T).T, F, fixed_rows)
            p["F"] = F
        if "Q" in em_vars:
            e = x1 - x0 @ F.T - (0 if ut is None else ut @ Bm.T)
            VF = V @ F.T
            Qs = outer(e, e) + F @ Ps[:, :-1] @ F.T + Ps[:, 1:] - VF - VF.mT
            p["Q"] = _sym((tr * Qs).sum((0, 1)) / n_tr.clamp_min(1))
        if "x0" in em_vars:
            p["x0"] = xs[:, 0].mean(0)
        if "P0" in em_vars:
            d = xs[:, 0] - p.get("x0", self.x0)
            p["P0"] = _sym((Ps[:, 0] + outer(d, d)).mean(0))
        self.set_params(**p)
        return float(f["ll"].sum())

    def fit(self, y, u=None, lengths=None, n_iter: int = 10, em_vars=EM_VARS, tol: float | None = None,
            fixed_rows=()):
        """EM for the parameters named in `em_vars`; `history` = total log-likelihood before each step."""
        self.history = []
        for _ in range(n_iter):
            self.history.append(self.em_step(y, u, lengths, em_vars, fixed_rows))
            if tol is not None and len(self.history) > 1 and self.history[-1] - self.history[-2] < tol:
                break
        return self


class ExtendedKalmanFilter(KalmanFilter):
    """EKF / extended RTS smoother for x_t = f(x_{t-1}, u_t) + w, y_t = h(x_t) + v.

    `f(x, u)` and `h(x)` map a batch (B, n) (and (B, p)) to (B, n) / (B, m); their Jacobians come from
    autograd per step. `F`/`H`/`B` are not used; `em_step` is not available (only Q, R, x0, P0 could be
    refitted around the linearisation, which this class does not attempt).
    """

    def __init__(self, f: Callable, h: Callable, Q, R, x0, P0, dtype=DTYPE, device=None):
        n = len(x0)
        super().__init__(torch.eye(n), torch.zeros(len(R), n), Q, R, x0, P0, B=torch.zeros(n, 1), dtype=dtype,
                         device=device)
        self.f, self.h = f, h

    @staticmethod
    def _jac(fn, x):
        """fn(x) and its Jacobian (B, out, in); the graph is kept only when x is part of one."""
        track = torch.is_grad_enabled() and x.requires_grad
        xg = x if track else x.detach().requires_grad_(True)
        with torch.enable_grad():
            out = fn(xg)
            rows = [torch.autograd.grad(out[:, i].sum(), xg, retain_graph=True, create_graph=track)[0]
                    for i in range(out.shape[1])]  # batch rows are independent, so a sum gives each row's
        J = torch.stack(rows, 1)
        return (out, J) if track else (out.detach(), J)

    def _transition(self, x, u_t):
        if u_t is None:
            return self._jac(lambda z: self.f(z, None), x)
        return self._jac(lambda z: self.f(z, u_t), x)

    def _observation(self, x):
        return self._jac(self.h, x)

    def em_step(self, *a, **k):
        raise NotImplementedError("EM is implemented for the linear KalmanFilter only")


def pendulum_ekf(dt: float = 0.05, g: float = 9.81, length: float = 1.0, q: float = 1e-3, r: float = 0.05):
    """An EKF for a pendulum (state: angle, angular velocity) observed through its x-position sin(angle)."""
    def f(x, u):
        th, om = x[:, 0], x[:, 1]
        return torch.stack([th + dt * om, om - dt * g / length * torch.sin(th)], 1)

    def h(x):
        return torch.sin(x[:, :1])

    return ExtendedKalmanFilter(f, h, Q=q * torch.eye(2), R=[[r**2]], x0=[0.0, 0.0], P0=torch.eye(2))


def best_rmse(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """Root mean square of a - b over the rows where mask holds (all rows by default)."""
    d = (a - b).pow(2).sum(-1)
    if mask is not None:
        d = d[mask]
    return float(d.mean().sqrt())


# ---- model=kalman: the supervised-loop part ------------------------------------------------------------
class KalmanWorldModel(WorldModel):
    """EM for a linear-Gaussian model on the dataset of `data=tracking`: one EM iteration per train step.

    The dataset provides `true_params` (the true model's F, H, Q, R, x0, P0), `train_obs`, `test_obs` ((N, T, m), NaN = missing),
    `test_states`, optionally `train_u`/`test_u`. EM starts from the true parameters perturbed by
    `perturb` (seeded) and refits those named in `em_vars`.
    """

    loop = "supervised"
    datasets = ("tracking",)  # the env options this model can be trained on (for validation)

    @classmethod
    def refuse(cls, plan) -> str | None:
        return cls.check_dataset(plan.data_cls)

    @classmethod
    def check_dataset(cls, env_cls: type) -> str | None:
        """None if the dataset class fits this model, else a one-line reason (for wm.validate)."""
        if env_cls.__module__ + "." + env_cls.__qualname__ == "wm.data.tracking.Tracking":
            return None
        return f"model={cls.Config.name} needs a dataset with a true model; valid data: {', '.join(cls.datasets)}"

    @dataclass
    class Config:
        name: str = param("kalman", free="the option's name")
        perturb: float = param(1.0, ge=0)  # size of the random change to each fitted parameter at the start
        init_seed: int = param(0, ge=0)
        # what EM refits. With H known, F is identifiable only up to a change of basis of the unobserved
        # velocity block (same likelihood, different states), so by default the dynamics stay known and
        # the noise levels and the initial state are learned; add "F" to fit the dynamics as well.
        em_vars: list[str] = param(["Q", "R", "x0", "P0"], each=Allowed(choices=(*EM_VARS, "B")))
        plot_steps: int = param(200, gt=0)
        # EM has converged once an iteration gains less total log-likelihood; later train steps then do
        # nothing (so a large total_steps is cheap)
        tol: float = param(1e-4, ge=0)

    def __init__(self, cfg: KalmanWorldModel.Config, data: Any, device: torch.device | str = "cpu"):
        super().__init__()
        params = getattr(data, "true_params", None)
        if not isinstance(params, dict) or "F" not in params:
            raise TypeError("model=kalman needs a linear-Gaussian dataset (data=tracking)")
        check_tree(cfg, "model")  # also when built directly, not through typed()
        self.cfg, self.data, self.device_ = cfg, data, torch.device(device)
        g = torch.Generator().manual_seed(int(getattr(data, "seed", 0)) + cfg.init_seed)
        self.truth = truth = KalmanFilter(**params)
        start = {}
        for k, v in truth.params().items():
            if k not in cfg.em_vars:
                start[k] = v
            elif v.dim() == 2 and v.shape[0] == v.shape[1] and k in ("Q", "R", "P0"):  # stay SPD: scale
                s = torch.exp(cfg.perturb * torch.randn((), generator=g, dtype=v.dtype))
                start[k] = v * s
            else:
                noise = torch.randn(v.shape, generator=g, dtype=v.dtype)
                start[k] = v + cfg.perturb * v.abs().mean().clamp_min(0.1) * noise * 0.2
        self.kf = KalmanFilter(**{k: start[k].to(self.device_) for k in ("F", "H", "Q", "R", "x0", "P0")},
                               B=start.get("B"), device=self.device_)
        self.train_obs = data.train_obs.to(self.device_)
        self.test_obs = data.test_obs.to(self.device_)
        self.train_u = getattr(data, "train_u", None)
        self.test_u = getattr(data, "test_u", None)
        self.n_train_obs = int((~torch.isnan(data.train_obs).any(-1)).sum())
        self.n_test_obs = int((~torch.isnan(data.test_obs).any(-1)).sum())
        self.last_loglik, self.gain, self.converged = float("nan"), float("nan"), False
        self.steps_done = 0

    def train_step(self, step: int) -> dict[str, float]:
        self.steps_done = step + 1
        if not self.converged:
            ll = self.kf.em_step(self.train_obs, self.train_u, em_vars=tuple(self.cfg.em_vars))
            self.gain = ll - self.last_loglik if math.isfinite(self.last_loglik) else float("nan")
            self.converged = self.gain < self.cfg.tol
            self.last_loglik = ll
        return {"model/loglik": self.last_loglik / self.n_train_obs, "model/loglik_gain": self.gain,
                "model/converged": float(self.converged)}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        truth = self.truth
        sm = self.kf.smooth(self.test_obs, self.test_u)
        sm_true = truth.smooth(self.data.test_obs, self.test_u)
        st = self.data.test_states
        return {
            "eval/loglik": float(sm.loglik.sum()) / self.n_test_obs,
            "eval/loglik_true": float(sm_true.loglik.sum()) / self.n_test_obs,
            "eval/state_rmse": best_rmse(sm.means.cpu(), st),
            "eval/state_rmse_true": best_rmse(sm_true.means, st),
        }

    @torch.no_grad()
    def artifacts(self, out_dir: Path, logger=None) -> Path:
        """Plot the true track, the observations and the smoothed track with its 2-sigma band (sequence 0)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        n = min(self.cfg.plot_steps, self.test_obs.shape[1])
        y = self.data.test_obs[0, :n].numpy()
        x = self.data.test_states[0, :n].numpy()
        sm = self.kf.smooth(self.test_obs[0, :n], None if self.test_u is None else self.test_u[0, :n])
        mu, sd = sm.means.cpu().numpy(), np.sqrt(np.diagonal(sm.covs.cpu().numpy(), axis1=1, axis2=2))
        t = np.arange(n)
        fig, ax = plt.subplots(1, 3, figsize=(14, 4))
        ax[0].plot(x[:, 0], x[:, 1], "k-", lw=1, label="true")
        ax[0].plot(y[:, 0], y[:, 1], ".", ms=3, color="C0", label="observed")
        ax[0].plot(mu[:, 0], mu[:, 1], "-", color="C3", lw=1, label="smoothed")
        ax[0].set_title("track (x, y)")
        ax[0].legend(fontsize=8)
        for i, a in enumerate(ax[1:]):  # errors against the truth, so the 2-sigma band is visible
            a.axhline(0, color="k", lw=1, label="true")
            a.plot(t, y[:, i] - x[:, i], ".", ms=3, color="C0", label="observed - true (gaps: missing)")
            a.plot(t, mu[:, i] - x[:, i], "-", color="C3", lw=1, label="smoothed - true")
            a.fill_between(t, mu[:, i] - x[:, i] - 2 * sd[:, i], mu[:, i] - x[:, i] + 2 * sd[:, i], color="C3",
                           alpha=0.25, label="smoothed 2-sigma band")
            a.set_title(f"position {'xy'[i]}: error against the true state")
            a.set_xlabel("t")
        ax[1].legend(fontsize=8)
        fig.tight_layout()
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "kalman_track.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        if logger is not None and hasattr(logger, "log_file"):
            logger.log_file("eval/track_plot", path, "image", self.steps_done)
        return path

    def state_dict(self, *args, **kwargs):
        return em_state(self, self.kf)

    def load_state_dict(self, state, strict: bool = True):
        load_em_state(self, self.kf, state)
