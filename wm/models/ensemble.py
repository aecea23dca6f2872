"""MBPO's world model: a bootstrapped ensemble of probabilistic MLPs and the model-env step it offers.

Janner et al. 2019, "When to Trust Your Model: Model-Based Policy Optimization". This file holds only model
things; the algorithm (the model buffer, the branched rollouts and their schedule) is in wm/agents/mbpo.py,
run by SAC (wm/agents/sac.py). Reads top to bottom:

- ``ProbabilisticEnsemble``: E MLPs evaluated in one batched matmul; each predicts a Gaussian over
  (next_obs - obs, reward) with a soft-bounded log-variance (learned per-member max/min bounds).
- ``MBPO.train_step`` (every ``update.every`` env steps): ``fit`` the ensemble on all real transitions
  (input/output standardisation, per-member bootstrap resamples, a random holdout, early stopping when no
  member improves its holdout error by ``improvement`` for ``patience`` epochs, each member restored to its
  best epoch), then pick the ``elites`` members with the lowest holdout error. Right after it the loop calls
  the agent's ``after_model_update``, where MBPO rolls out.
- ``MBPO.step(obs, action) -> next_obs, reward, terminal``: the model env an algorithm rolls out in (a random
  elite per row; termination from ``wm.envs.termination``: the true function, not learned).
- ``MBPO.rng``: the model env's numpy stream, shared with the algorithm's draw of rollout start states.

The rollout keys (``rollout_batch_size``, ``rollout``, ``retain``, ``deterministic``) sit in this Config,
where the presets set them, but only the agent's ``BranchedRollouts`` reads them.

Shapes: obs (B, O), action (B, A) in env units, reward (B,), terminal (B,) bool.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wm.config import POSITIVE, param, require
from wm.core.schedule import Schedule
from wm.envs import termination
from wm.models.base import WorldModel


# ---- the network ------------------------------------------------------------------------------------
class EnsembleLinear(nn.Module):
    """E independent linear layers: (E, B, in) -> (E, B, out)."""

    def __init__(self, members: int, n_in: int, n_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(members, n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(members, 1, n_out))
        nn.init.trunc_normal_(self.weight, std=1.0 / (2.0 * math.sqrt(n_in)))  # as in MBPO

    def forward(self, x: torch.Tensor, member: int | None = None) -> torch.Tensor:
        if member is None:
            return torch.baddbmm(self.bias, x, self.weight)
        return torch.addmm(self.bias[member], x, self.weight[member])  # one member on (B, in)


class ProbabilisticEnsemble(nn.Module):
    """Gaussian outputs with log-variance softly bounded to [min_logvar, max_logvar] (both learned)."""

    def __init__(self, members: int, n_in: int, n_out: int, hidden: list[int]):
        super().__init__()
        sizes = [n_in, *hidden, 2 * n_out]
        self.layers = nn.ModuleList(EnsembleLinear(members, a, b) for a, b in itertools.pairwise(sizes))
        self.max_logvar = nn.Parameter(torch.full((members, 1, n_out), 0.5))
        self.min_logvar = nn.Parameter(torch.full((members, 1, n_out), -10.0))
        self.n_out = n_out

    def forward(self, x: torch.Tensor, member: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        for i, layer in enumerate(self.layers):
            x = layer(x, member)
            if i < len(self.layers) - 1:
                x = F.silu(x)
        mean, logvar = x.split(self.n_out, dim=-1)
        hi = self.max_logvar if member is None else self.max_logvar[member]
        lo = self.min_logvar if member is None else self.min_logvar[member]
        logvar = hi - F.softplus(hi - logvar)
        logvar = lo + F.softplus(logvar - lo)
        return mean, logvar


# ---- config -----------------------------------------------------------------------------------------
@dataclass
class RolloutSchedule:
    """Rollout length k grows linearly from min_length at env step ``start`` to max_length at ``end``."""

    start: int = param(0, ge=0)
    end: int = param(1, gt=0)
    min_length: int = param(1, gt=0)
    max_length: int = param(1, gt=0)

    def check(self) -> None:
        require(self.end > self.start, "end", f"must be > start (got {self.end} <= {self.start})")

    def length(self, step: int) -> int:
        frac = min(max((step - self.start) / (self.end - self.start), 0.0), 1.0)
        return round(self.min_length + frac * (self.max_length - self.min_length))


@dataclass
class MBPOConfig:
    ensemble_size: int = param(7, gt=0)
    elites: int = param(5, gt=0)
    hidden: list[int] = param([200, 200, 200, 200], each=POSITIVE)
    lr: float = param(1e-3, gt=0)
    weight_decay: float = param(5e-5, ge=0)
    batch_size: int = param(256, gt=0)
    holdout_ratio: float = param(0.2, gt=0, lt=1)
    max_holdout: int = param(5000, gt=0)
    patience: int = param(5, gt=0)  # epochs without a >= `improvement` relative holdout gain before stopping
    improvement: float = param(0.01, ge=0)
    max_epochs: int = param(0, ge=0)  # cap on epochs per retrain (0: until early stopping)
    logvar_bound_weight: float = param(0.01, ge=0)
    # MBPO's rollout settings: read by the agent's BranchedRollouts (wm/agents/mbpo.py), not by the model
    rollout_batch_size: int = param(100_000, gt=0)
    rollout: RolloutSchedule = field(default_factory=RolloutSchedule)
    retain: int = param(1, gt=0)  # the agent's model buffer holds the rollouts of this many retrains
    deterministic: bool = False  # rollouts use the predicted mean instead of sampling
    # a name in wm.envs.termination or a gymnasium id (the env's own function)
    termination: str = param("never", free="a termination function name or env id, checked in check()")
    update: Schedule = field(default_factory=lambda: Schedule(every=250, updates=1, start=250))

    def check(self) -> None:
        require(self.elites <= self.ensemble_size, "elites",
                f"must be <= ensemble_size={self.ensemble_size} (got {self.elites})")
        require(termination.resolve_name(self.termination) is not None, "termination",
                f"no known termination function for {self.termination!r}; valid: "
                f"{', '.join(termination.FUNCTIONS)} or one of the env ids "
                f"{', '.join(termination.BY_ENV_ID)}-v5")


# ---- the model --------------------------------------------------------------------------------------
class MBPO(WorldModel):
    loop = "online"
    Config = MBPOConfig

    @classmethod
    def refuse(cls, plan) -> str | None:
        return cls.check_spaces(*plan.spaces)

    @staticmethod
    def check_spaces(obs_space: gym.Space, act_space: gym.Space) -> str | None:
        """The ensemble models flat vectors: pixel observations (CarRacing) would need an encoder first."""
        if not (isinstance(obs_space, gym.spaces.Box) and len(obs_space.shape) == 1
                and isinstance(act_space, gym.spaces.Box)):
            return (f"model=mbpo needs vector observations and continuous actions "
                    f"(got {type(obs_space).__name__}{obs_space.shape}, {type(act_space).__name__})")
        return None

    def __init__(self, cfg: MBPOConfig, obs_space: gym.Space, act_space: gym.Space,
                 device: torch.device | str = "cpu"):
        super().__init__()
        if problem := self.check_spaces(obs_space, act_space):
            raise TypeError(problem)
        self.cfg, self.device = cfg, torch.device(device)
        self.obs_dim, self.act_dim = int(np.prod(obs_space.shape)), int(np.prod(act_space.shape))
        n_in, n_out = self.obs_dim + self.act_dim, self.obs_dim + 1
        self.net = ProbabilisticEnsemble(cfg.ensemble_size, n_in, n_out, cfg.hidden).to(self.device)
        self.optim = torch.optim.Adam(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        for name, dim in (("in_mean", n_in), ("in_std", n_in), ("out_mean", n_out), ("out_std", n_out)):
            self.register_buffer(name, torch.zeros(dim, device=self.device) if "mean" in name
                                 else torch.ones(dim, device=self.device))
        self.elites = list(range(cfg.elites))
        self.terminal_fn = termination.get(cfg.termination)
        # the model env's numpy stream (seeded from the run's torch RNG): the fit's holdout split, bootstrap
        # and shuffles, then the algorithm's draw of rollout start states, in that order (checkpointed here)
        self.rng = np.random.default_rng(int(torch.randint(2**31, ()).item()))
        self.retrains = 0

    # ---- prediction -----------------------------------------------------------------------------
    def _inputs(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return (torch.cat([obs, action], -1) - self.in_mean) / self.in_std

    @torch.no_grad()
    def predict(self, obs: torch.Tensor, action: torch.Tensor, member: torch.Tensor | None = None,
                deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Next obs and reward, each sample drawn from its ``member`` (a random elite by default)."""
        x = self._inputs(obs.float(), action.float())
        if member is None:
            elites = torch.as_tensor(self.elites, device=self.device)
            member = elites[torch.randint(len(elites), (len(x),), device=self.device)]
        out = torch.empty(len(x), self.net.n_out, device=self.device)
        for m in member.unique().tolist():  # only the chosen member runs on each sample
            rows = member == m
            mean, logvar = self.net(x[rows], member=m)
            if not deterministic:
                mean = mean + torch.randn_like(mean) * (0.5 * logvar).exp()
            out[rows] = mean
        out = out * self.out_std + self.out_mean
        return obs + out[:, :-1], out[:, -1]

    @torch.no_grad()
    def step(self, obs: torch.Tensor, action: torch.Tensor,
             deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The model env's step, for an algorithm's rollouts.

        obs (B, O) and action (B, A) in env units -> next_obs (B, O), reward (B,), terminal (B,) bool: each
        row from a random elite (the run's torch RNG draws the member, then its Gaussian noise unless
        ``deterministic``: the predicted mean), terminal from the true termination function.
        """
        next_obs, reward = self.predict(obs, action, deterministic=deterministic)
        return next_obs, reward, self.terminal_fn(obs, action, next_obs)

    # ---- training -------------------------------------------------------------------------------
    def train_step(self, replay, step: int) -> dict[str, float]:
        """Refit on every real transition (the agent's rollouts follow: ``Agent.after_model_update``)."""
        return self.fit(replay.all_transitions())

    def fit(self, data: dict[str, torch.Tensor]) -> dict[str, float]:
        """Train the ensemble on ``data`` (all real transitions) until the holdout error stops improving."""
        cfg, E = self.cfg, self.cfg.ensemble_size
        t0 = time.perf_counter()
        obs, action = data["obs"].float(), data["action"].float().reshape(len(data["obs"]), -1)
        x = torch.cat([obs, action], -1)
        y = torch.cat([data["next_obs"].float() - obs, data["reward"].float()[:, None]], -1)
        n = len(x)
        perm = torch.as_tensor(self.rng.permutation(n), device=self.device)
        n_hold = min(int(n * cfg.holdout_ratio), cfg.max_holdout) if n >= 2 else 0
        hold, train = perm[:n_hold], perm[n_hold:]
        self.in_mean, self.in_std = x[train].mean(0), x[train].std(0).nan_to_num(1.0).clamp_min(1e-6)
        self.out_mean, self.out_std = y[train].mean(0), y[train].std(0).nan_to_num(1.0).clamp_min(1e-6)
        xn, yn = (x - self.in_mean) / self.in_std, (y - self.out_mean) / self.out_std
        x_train, y_train = xn[train], yn[train]
        x_hold, y_hold = (xn[hold], yn[hold]) if n_hold else (x_train, y_train)
        n_train = len(train)
        boot = torch.as_tensor(self.rng.integers(n_train, size=(E, n_train)), device=self.device)

        best = self._holdout_mse(x_hold, y_hold)
        snapshot = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
        epochs, since_improved, losses = 0, 0, []
        while True:
            order = torch.as_tensor(self.rng.random((E, n_train)).argsort(1), device=self.device)
            idx = boot.gather(1, order)
            for k in range(0, n_train, cfg.batch_size):
                b = idx[:, k: k + cfg.batch_size]
                mean, logvar = self.net(x_train[b])
                nll = ((mean - y_train[b]) ** 2 * (-logvar).exp() + logvar).mean((1, 2)).sum()
                bounds = cfg.logvar_bound_weight * (self.net.max_logvar.sum() - self.net.min_logvar.sum())
                loss = nll + bounds
                self.optim.zero_grad(set_to_none=True)
                loss.backward()
                self.optim.step()
                losses.append(nll.item() / E)
            epochs += 1
            mse = self._holdout_mse(x_hold, y_hold)
            better = (best - mse) / best.clamp_min(1e-12) > cfg.improvement
            if better.any():
                state = self.net.state_dict()
                for key, value in state.items():
                    snapshot[key][better] = value[better].detach()
                best = torch.where(better, mse, best)
                since_improved = 0
            else:
                since_improved += 1
            if since_improved >= cfg.patience or (cfg.max_epochs and epochs >= cfg.max_epochs):
                break
        self.net.load_state_dict(snapshot)  # every member at its best holdout epoch
        self.elites = best.argsort()[: cfg.elites].tolist()
        self.retrains += 1
        m = {f"model/holdout_mse/{i}": best[i].item() for i in range(E)}
        m.update({f"model/elite/{i}": float(i in self.elites) for i in range(E)})
        m.update({
            "model/holdout_mse_elites": best[self.elites].mean().item(),  # normalised targets
            "model/holdout_mse_raw": self._holdout_mse(x_hold, y_hold, raw=True)[self.elites].mean().item(),
            "model/train_nll": float(np.mean(losses[-max(1, n_train // cfg.batch_size):])),
            "model/train_epochs": float(epochs), "model/train_seconds": time.perf_counter() - t0,
            "model/real_size": float(n), "model/holdout_size": float(n_hold),
        })
        return m

    @torch.no_grad()
    def _holdout_mse(self, x: torch.Tensor, y: torch.Tensor, raw: bool = False) -> torch.Tensor:
        """Per-member mean squared error of the predicted mean (in normalised units unless ``raw``)."""
        mean, _ = self.net(x.expand(self.cfg.ensemble_size, -1, -1))
        err = (mean - y) * self.out_std if raw else mean - y
        return (err ** 2).mean((1, 2))

    # ---- checkpoint -----------------------------------------------------------------------------
    def state_dict(self, *args, **kwargs):
        return {"nets": super().state_dict(), "optim": self.optim.state_dict(), "elites": list(self.elites),
                "rng": self.rng.bit_generator.state, "retrains": self.retrains}

    def load_state_dict(self, state, strict: bool = True):
        super().load_state_dict(state["nets"], strict=strict)
        self.optim.load_state_dict(state["optim"])
        self.elites, self.retrains = list(state["elites"]), state["retrains"]
        self.rng.bit_generator.state = state["rng"]
