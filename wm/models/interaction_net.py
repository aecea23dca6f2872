"""Dynamics models of n-body states (data=nbody, wm/data/nbody.py), trained by the supervised loop:
model=interaction_net here, and the baselines model=constant_velocity and model=state_mlp
(wm/models/nbody_baselines.py), which share ``NBodyModel``'s stepping, training and evaluation.

Every model maps a state (positions, velocities (B, n, 2), masses (B, n), interaction graph (B, n, n)) to two
accelerations per body (B, n, 2) each: ``a_v``, the mean over the step that moves the velocity, and ``a_x``,
the one that moves the position, and steps

    v' = v + dt a_v,    x' = x + dt v + dt^2 / 2 a_x

(a_v = a_x for a constant acceleration; two outputs make the one-step map exact whatever the simulator's
substeps). Training unrolls ``rollout`` steps from a true state and minimises the mean over those steps of the
squared state errors in units of acceleration: ``(x_hat - x) / (dt^2 / 2)`` and ``(v_hat - v) / dt``, divided by
the training data's acceleration scale; for ``rollout=1`` this is the MSE of the normalised accelerations.

model=interaction_net (Battaglia et al. 2016): a relation MLP on every ordered pair (receiver i, sender j) of
bodies joined in the graph, taking both bodies' velocities and masses and the relation's attributes: the
relative position x_j - x_i and the distance (absolute positions are left out: the physics is translation
invariant, and so is the model). Its effects are summed per receiver (forces add, so the sum extends to other
body counts), and an object MLP on (the receiver's velocity and mass, the summed effect) gives its two
accelerations. The same weights take any number of bodies; permuting the bodies permutes the prediction.

``evaluate()`` metrics, for each test body count k (data.test_bodies):
- ``eval/one_step_mse_k``: MSE of the next state from the true state, positions and velocities together (mean
  over every transition of the test split, body and coordinate);
- ``eval/rollout_mse_10_k``, ``eval/rollout_mse_50_k``: position MSE of the autoregressive rollout from each
  test trajectory's first state, averaged over its first 10 (50) steps;
- ``eval/energy_drift_k``: |E_100 - E_0| / |E_0| of that rollout's total energy (the true physics' energy of the
  predicted state; true masses and graph) after 100 steps, median over the test trajectories (a diverged
  rollout counts as infinite drift).
model=state_mlp takes a fixed body count: it reports the k = data.bodies keys only (its other counts are not
reported, not zero). ``artifacts`` writes media/horizon_<step>.png (position MSE vs rollout step, per k) and
media/rollout_<step>.png (true vs predicted paths of one test trajectory of the training count); a mean over
trajectories is dominated by any rollout that diverges, so the horizon plot shows the median (dashed) too;
horizon.json in the run dir holds its numbers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from wm.config import check_tree, param
from wm.core.nets import SavesOptimizers, mlp, optimize
from wm.core.schedule import cosine_lr
from wm.core.seeds import NBODY_STREAM
from wm.data.nbody import NBody

HORIZONS = (10, 50)  # rollout_mse_<h>
DRIFT_STEPS = 100  # energy_drift over this many steps (data.test_length is at least this)


class NBodyModel(SavesOptimizers, nn.Module):
    """Stepping, training and evaluation shared by the n-body models; a model defines ``accelerations``."""

    loop = "supervised"
    datasets = ("nbody",)
    OPTIMIZERS: ClassVar[dict[str, str]] = {"optimizer": "opt"}

    @classmethod
    def refuse(cls, plan) -> str | None:
        if plan.data_cls is None or not issubclass(plan.data_cls, NBody):
            return f"model={plan.model.name} learns n-body dynamics from states; valid data: {', '.join(cls.datasets)}"
        rollout = getattr(plan.model, "rollout", 1)
        if rollout > plan.data.length:
            return (f"model.rollout={rollout} needs training trajectories of at least that many steps "
                    f"(data.length={plan.data.length})")
        return None

    def __init__(self, cfg: Any, data: NBody, device: torch.device | str = "cpu"):
        super().__init__()
        check_tree(cfg, "model")
        self.cfg, self.data, self.device, self.dt = cfg, data, torch.device(device), data.dt
        self.steps_done = 0
        self.curves: dict[int, np.ndarray] = {}  # k -> (2, DRIFT_STEPS + 1): position MSE at each rollout step,
        # mean and median over trajectories (last eval)
        self.example: tuple[np.ndarray, np.ndarray] | None = None  # (true, predicted) positions (T, n, 2)
        # scales of the training data, so inputs and targets are of order one
        tr = data.splits["train"]
        acc = np.diff(tr["vel"], axis=1) / self.dt
        self.x_scale = float(tr["pos"].std())
        self.v_scale = float(tr["vel"].std())
        self.m_scale = float(tr["mass"].mean())
        self.a_scale = float(acc.std())

    # ---- the model -------------------------------------------------------------------------------------
    def accelerations(self, pos: torch.Tensor, vel: torch.Tensor, mass: torch.Tensor, edges: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, n, 2) positions and velocities, (B, n) masses, (B, n, n) graph -> a_v, a_x (B, n, 2)."""
        raise NotImplementedError

    def tensor(self, a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a, device=self.device)

    def step(self, pos, vel, mass, edges) -> tuple[torch.Tensor, torch.Tensor]:
        """One ``dt`` step of (B, n, 2) states: the next positions and velocities."""
        a_v, a_x = self.accelerations(pos, vel, mass, edges)
        return pos + self.dt * vel + 0.5 * self.dt**2 * a_x, vel + self.dt * a_v

    def counts(self) -> tuple[int, ...]:
        """The test body counts this model can be evaluated on."""
        return self.data.test_counts

    # ---- training --------------------------------------------------------------------------------------
    def lr_at(self, step: int) -> float:
        return cosine_lr(self.cfg.lr, step, self.cfg.lr_decay_steps)

    def train_step(self, step: int) -> dict[str, float]:
        rng = np.random.default_rng([self.data.seed, NBODY_STREAM, step])
        b = {k: self.tensor(v) for k, v in self.data.batch(rng, self.cfg.batch, window=self.cfg.rollout).items()}
        x, v = b["pos"][:, 0], b["vel"][:, 0]
        pos_unit, vel_unit = 0.5 * self.dt**2 * self.a_scale, self.dt * self.a_scale
        losses = []
        for t in range(1, self.cfg.rollout + 1):
            x, v = self.step(x, v, b["mass"], b["edges"])
            losses.append((((x - b["pos"][:, t]) / pos_unit) ** 2).mean() + (((v - b["vel"][:, t]) / vel_unit) ** 2).mean())
        loss = torch.stack(losses).mean() / 2
        optimize(self.opt, loss, self.lr_at(step))
        self.steps_done = step + 1
        stats = {"train/loss": loss.item()}
        if self.cfg.rollout > 1:
            stats["train/one_step_loss"] = losses[0].item() / 2
        return stats

    # ---- evaluation ------------------------------------------------------------------------------------
    @torch.no_grad()
    def rollout(self, pos: np.ndarray, vel: np.ndarray, mass: np.ndarray, edges: np.ndarray, steps: int
                ) -> tuple[np.ndarray, np.ndarray]:
        """Autoregressive rollout from (N, n, 2) states: positions and velocities (N, steps + 1, n, 2)."""
        x, v, m, e = (self.tensor(a) for a in (pos, vel, mass, edges))
        xs, vs = [x], [v]
        for _ in range(steps):
            x, v = self.step(x, v, m, e)
            xs.append(x)
            vs.append(v)
        return torch.stack(xs, 1).cpu().numpy(), torch.stack(vs, 1).cpu().numpy()

    @torch.no_grad()
    def one_step_mse(self, split: dict[str, np.ndarray], chunk: int = 10) -> float:
        """MSE of the next position and velocity over every transition of a split, ``chunk`` trajectories at a
        time."""
        total, count = 0.0, 0
        for s in range(0, len(split["mass"]), chunk):
            pos, vel = split["pos"][s: s + chunk], split["vel"][s: s + chunk]
            N, T, n, _ = pos.shape
            now = [self.tensor(a[:, :-1].reshape(N * (T - 1), n, 2)) for a in (pos, vel)]  # every state but the last
            per_state = [self.tensor(np.repeat(split[key][s: s + chunk], T - 1, 0)) for key in ("mass", "edges")]
            x, v = self.step(*now, *per_state)
            nx, nv = (self.tensor(a[:, 1:].reshape(-1, n, 2)) for a in (pos, vel))
            total += float(((x - nx) ** 2).sum() + ((v - nv) ** 2).sum())
            count += 2 * nx.numel()
        return total / count

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        self.eval()
        out: dict[str, float] = {}
        with np.errstate(over="ignore", invalid="ignore"):  # a diverged rollout's errors overflow: inf, as meant
            for k in self.counts():
                self._evaluate_count(k, out)
        self.train()
        return out

    def _evaluate_count(self, k: int, out: dict[str, float]) -> None:
        """The metrics of test split ``test_<k>`` into ``out``; keeps its error curves and an example rollout."""
        s = self.data.splits[f"test_{k}"]
        out[f"eval/one_step_mse_{k}"] = self.one_step_mse(s)
        pos, vel = self.rollout(s["pos"][:, 0], s["vel"][:, 0], s["mass"], s["edges"], DRIFT_STEPS)
        per = ((pos - s["pos"][:, : DRIFT_STEPS + 1]) ** 2).mean((2, 3))  # (N, DRIFT_STEPS + 1), [:, 0] = 0
        err = per.mean(0)
        self.curves[k] = np.stack([err, np.median(per, 0)])
        for h in HORIZONS:
            out[f"eval/rollout_mse_{h}_{k}"] = float(err[1: h + 1].mean())
        f64 = [a.astype(np.float64) for a in (pos[:, -1], vel[:, -1], s["mass"], s["edges"])]
        drift = np.abs(self.data.physics.energy(*f64) - s["energy"][:, 0]) / np.abs(s["energy"][:, 0])
        out[f"eval/energy_drift_{k}"] = float(np.median(np.where(np.isnan(drift), np.inf, drift)))
        if k == self.counts()[0] or k == self.data.cfg.bodies:  # the strip shows the training count if tested
            self.example = (s["pos"][0, : DRIFT_STEPS + 1], pos[0])

    def artifacts(self, out_dir: Path, logger: Any = None) -> dict[str, Path]:
        """media/horizon_<step>.png, media/rollout_<step>.png and horizon.json (the position MSE at each rollout
        step, per body count, mean and median over trajectories) from the last ``evaluate``."""
        if not self.curves:
            return {}
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        media = Path(out_dir) / "media"
        media.mkdir(parents=True, exist_ok=True)
        tag, name = f"{self.steps_done:07d}", self.cfg.name
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        for i, (k, (mean, median)) in enumerate(sorted(self.curves.items())):
            steps = np.arange(1, len(mean))
            ax.plot(steps, mean[1:], color=f"C{i}", label=f"{k} bodies: mean")
            ax.plot(steps, median[1:], color=f"C{i}", ls="--", label="dashed: median over trajectories" if i == 0 else None)
        ax.set_yscale("log")
        ax.set_xlabel("rollout step")
        ax.set_ylabel("position MSE")
        ax.set_title(f"{name} on {self.data.cfg.system}: error vs horizon", fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        written = {"horizon": media / f"horizon_{tag}.png"}
        fig.savefig(written["horizon"], dpi=100)
        plt.close(fig)

        true, pred = self.example
        shown = [h for h in (10, 25, 50, DRIFT_STEPS) if h < len(true)]
        fig, axes = plt.subplots(1, len(shown), figsize=(3 * len(shown), 3.2))
        low, high = true.min((0, 1)), true.max((0, 1))  # the true paths set the view: a diverged rollout leaves it
        centre, half = (low + high) / 2, 0.6 * (high - low).max()
        for ax, h in zip(np.atleast_1d(axes), shown):
            for j in range(true.shape[1]):
                ax.plot(true[: h + 1, j, 0], true[: h + 1, j, 1], color=f"C{j % 10}", lw=1)
                ax.plot(pred[: h + 1, j, 0], pred[: h + 1, j, 1], color=f"C{j % 10}", lw=1, ls="--")
                ax.plot(*true[h, j], "o", color=f"C{j % 10}", ms=4)
                ax.plot(*pred[h, j], "x", color=f"C{j % 10}", ms=5)
            ax.set_title(f"step {h}", fontsize=9)
            ax.set_xlim(centre[0] - half, centre[0] + half)
            ax.set_ylim(centre[1] - half, centre[1] + half)
            ax.set_aspect("equal")
        fig.suptitle(f"{name}: true (solid, o) vs predicted (dashed, x), {true.shape[1]} bodies", fontsize=10)
        fig.tight_layout()
        written["rollout"] = media / f"rollout_{tag}.png"
        fig.savefig(written["rollout"], dpi=100)
        plt.close(fig)
        written["curves"] = Path(out_dir) / "horizon.json"  # the numbers behind the plot (bench.nbody reads them)
        written["curves"].write_text(json.dumps({"step": self.steps_done, "position_mse": {
            str(k): {"mean": _finite(c[0]), "median": _finite(c[1])} for k, c in sorted(self.curves.items())}}))
        if logger is not None:
            logger.log_file("media/horizon", written["horizon"], "image", self.steps_done)
            logger.log_file("media/rollout", written["rollout"], "image", self.steps_done)
        return written


def _finite(values: np.ndarray) -> list[float | None]:
    """A JSON-safe list: a diverged rollout's inf or NaN becomes null."""
    return [float(v) if np.isfinite(v) else None for v in values]


class InteractionNetwork(NBodyModel):
    """model=interaction_net: relation MLP per ordered pair, summed per receiver, object MLP (module docstring)."""

    @dataclass
    class Config:
        name: str = param("interaction_net", free="the option's name")
        hidden: int = param(128, gt=0)  # width of both MLPs' hidden layers
        layers: int = param(2, gt=0)  # hidden layers of each MLP
        effect: int = param(64, gt=0)  # width of a relation's effect
        lr: float = param(1e-3, gt=0)
        lr_decay_steps: int = param(0, ge=0)  # cosine decay of lr to 0 over this many steps (0: constant lr)
        batch: int = param(64, gt=0)  # trajectory windows per step
        rollout: int = param(1, gt=0)  # steps each training window unrolls (1: one-step training)

    def __init__(self, cfg: InteractionNetwork.Config, data: NBody, device: torch.device | str = "cpu"):
        super().__init__(cfg, data, device)
        # relation: receiver (v, m), sender (v, m), x_j - x_i, |x_j - x_i|; object: (v, m), summed effect
        self.relation = mlp(3 + 3 + 3, cfg.effect, cfg.hidden, cfg.layers, norm=False)
        self.object = mlp(3 + cfg.effect, 4, cfg.hidden, cfg.layers, norm=False)
        self.to(self.device)
        self.opt = torch.optim.Adam(self.parameters(), lr=cfg.lr)

    @staticmethod
    def pairs(n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Receiver and sender indices of the n (n - 1) ordered pairs, grouped by receiver."""
        recv = torch.arange(n, device=device).repeat_interleave(n - 1)
        send = torch.arange(n, device=device).repeat(n, 1)[~torch.eye(n, dtype=torch.bool, device=device)]
        return recv, send

    def accelerations(self, pos, vel, mass, edges):
        B, n = mass.shape
        recv, send = self.pairs(n, pos.device)
        body = torch.cat([vel / self.v_scale, (mass / self.m_scale)[..., None]], -1)  # (B, n, 3)
        d = (pos[:, send] - pos[:, recv]) / self.x_scale  # (B, P, 2)
        rel = torch.cat([body[:, recv], body[:, send], d, d.square().sum(-1, keepdim=True).sqrt()], -1)
        effect = self.relation(rel) * edges[:, recv, send][..., None]  # pairs outside the graph do not act
        total = effect.reshape(B, n, n - 1, -1).sum(2)  # (B, n, effect): per receiver
        a = self.object(torch.cat([body, total], -1)) * self.a_scale
        return a[..., :2], a[..., 2:]
