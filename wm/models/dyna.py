"""Dyna world models (Sutton & Barto, chapter 8): what Dyna learns about the world.

Two kinds, picked by the observation space:

* ``TabularModel`` for discrete observations: the deterministic "last seen" model table of Dyna-Q,
  ``(s, a) -> (r, s', terminal)``, plus what Dyna-Q+ (time of last real try, untried actions as
  self-loops) and prioritized sweeping (predecessors of each state) need. The Dyna-Q agent
  (``wm/agents/dyna_q.py``) writes and plans with it.
* ``MLPDynamics`` for vector observations: an MLP trained on real transitions to predict the change
  of observation, the reward and the termination; ``DynaModel.imagine`` turns replayed real states
  into imagined transitions for a value-based agent such as DQN (learned-model Dyna).

``DynaModel`` is the ``model=dyna`` world model that the online loop builds; its Config carries the
planning settings used by both kinds.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import torch
from torch import nn
from torch.nn import functional as F

from wm.config import param
from wm.core.nets import mlp
from wm.core.schedule import Schedule
from wm.core.stats import RunningNorm
from wm.models.base import WorldModel


# ------------------------------------------------------------------------------------------------
# Tabular model (Dyna-Q, Dyna-Q+, prioritized sweeping)
# ------------------------------------------------------------------------------------------------
class TabularModel:
    """Deterministic model table ``(s, a) -> (r, s', terminal)`` keeping the last outcome seen.

    ``plus=True`` is the Dyna-Q+ model of section 8.3: the first time a state is visited, its untried
    actions enter the table as self-loops with reward 0 (the book: "actions that had never been tried
    before from a state were allowed to be considered in the planning step ... the initial model for
    such actions was that they would lead back to the same state with a reward of zero"); ``last[k]``
    is the real time step at which ``k`` was last tried (0 for never), so ``tau = time - last[k]``.
    """

    def __init__(self, n_actions: int, plus: bool = False):
        self.n_actions, self.plus = n_actions, plus
        self.table: dict[tuple[int, int], tuple[float, int, bool]] = {}
        self.keys: list[tuple[int, int]] = []  # observed (s, a), in first-seen order (uniform sampling)
        self.last: dict[tuple[int, int], int] = {}
        self.pred: dict[int, set[tuple[int, int]]] = {}  # s' -> {(s, a) whose model leads to s'}
        self.states: set[int] = set()
        self.time = 0  # real transitions recorded

    def __len__(self) -> int:
        return len(self.keys)

    def _set(self, key: tuple[int, int], r: float, s2: int, term: bool) -> None:
        old = self.table.get(key)
        if old is None:
            self.keys.append(key)
        elif old[1] != s2:
            self.pred[old[1]].discard(key)
        self.table[key] = (r, s2, term)
        self.pred.setdefault(s2, set()).add(key)

    def update(self, s: int, a: int, r: float, s2: int, term: bool) -> None:
        """Record one real transition."""
        self.time += 1
        if s not in self.states:
            self.states.add(s)
            if self.plus:
                for b in range(self.n_actions):
                    if b != a:
                        self._set((s, b), 0.0, s, False)
                        self.last[(s, b)] = 0
        self._set((s, a), float(r), int(s2), bool(term))
        self.last[(s, a)] = self.time

    def sample(self, rng: random.Random) -> tuple[int, int]:
        """A uniformly random previously observed (s, a)."""
        return self.keys[int(rng.random() * len(self.keys))]

    def bonus(self, key: tuple[int, int], kappa: float) -> float:
        """Dyna-Q+ exploration bonus kappa * sqrt(tau)."""
        return kappa * math.sqrt(self.time - self.last[key])

    def predecessors(self, s: int) -> set[tuple[int, int]]:
        return self.pred.get(s, set())

    # plain containers only, so checkpoints load with torch.load(weights_only=True)
    def state_dict(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "keys": [list(k) for k in self.keys],
            "values": [[self.table[k][0], self.table[k][1], self.table[k][2]] for k in self.keys],
            "last": [self.last.get(k, 0) for k in self.keys],
            "states": sorted(self.states),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.__init__(self.n_actions, self.plus)
        for (s, a), (r, s2, term), t in zip(state["keys"], state["values"], state["last"]):
            self._set((int(s), int(a)), float(r), int(s2), bool(term))
            self.last[(int(s), int(a))] = int(t)
        self.states = {int(s) for s in state["states"]}
        self.time = int(state["time"])


# ------------------------------------------------------------------------------------------------
# Learned model for vector observations
# ------------------------------------------------------------------------------------------------
class MLPDynamics(nn.Module):
    """p(s' - s, r, terminal | s, a) as one MLP: Gaussian-mean delta (MSE), reward (MSE), terminal (BCE).

    Inputs and the state delta are normalised with running statistics of the training batches.
    """

    def __init__(self, obs_dim: int, n_actions: int, hidden: int = 200, layers: int = 2):
        super().__init__()
        self.obs_dim, self.n_actions = obs_dim, n_actions
        self.net = mlp(obs_dim + n_actions, obs_dim + 2, hidden, layers, norm=False)
        self.obs_norm, self.delta_norm = RunningNorm(obs_dim), RunningNorm(obs_dim)

    def _forward(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = (obs - self.obs_norm.mean) / self.obs_norm.std
        x = torch.cat([x, F.one_hot(action.long(), self.n_actions).float()], -1)
        out = self.net(x)
        return out[:, : self.obs_dim], out[:, self.obs_dim], out[:, self.obs_dim + 1]

    def loss(self, obs, action, reward, next_obs, terminal) -> tuple[torch.Tensor, dict[str, float]]:
        obs, next_obs = obs.float(), next_obs.float()
        delta = next_obs - obs
        self.obs_norm.update(obs)
        self.delta_norm.update(delta)
        d_hat, r_hat, t_logit = self._forward(obs, action)
        d_loss = F.mse_loss(d_hat, (delta - self.delta_norm.mean) / self.delta_norm.std)
        r_loss = F.mse_loss(r_hat, reward.float())
        t_loss = F.binary_cross_entropy_with_logits(t_logit, terminal.float())
        total = d_loss + r_loss + t_loss
        return total, {"model/loss": total.item(), "model/delta_loss": d_loss.item(),
                       "model/reward_loss": r_loss.item(), "model/terminal_loss": t_loss.item()}

    @torch.no_grad()
    def predict(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(next_obs, reward, terminal bool) for a batch of states and actions."""
        obs = obs.float()
        d_hat, r_hat, t_logit = self._forward(obs, action)
        next_obs = obs + d_hat * self.delta_norm.std + self.delta_norm.mean
        return next_obs, r_hat, t_logit > 0


# ------------------------------------------------------------------------------------------------
# The model=dyna world model
# ------------------------------------------------------------------------------------------------
class DynaModel(WorldModel):
    """``model=dyna``: a model table for discrete observations, a learned MLP model for vectors.

    Tabular: the Dyna-Q agent owns the interleaving of real and planning updates (each real step
    records the transition, updates Q, then plans ``planning_steps`` times), so it writes ``table``
    itself and ``train_step`` has nothing to do.

    Vector observations: ``train_step`` fits the MLP on a batch of real transitions; a value-based
    agent (DQN) calls ``imagine(batch, replay)`` to append ``round(imagined_ratio * B)`` imagined
    transitions, each starting from a replayed real state, with a uniformly random action.
    """

    loop = "online"

    @dataclass
    class Config:
        # tabular Dyna (Dyna-Q / Dyna-Q+ / prioritized sweeping)
        planning_steps: int = param(5, ge=0)  # n: planning updates per real step
        kappa: float = param(0.0, ge=0)  # Dyna-Q+ bonus kappa * sqrt(tau) in planning; 0 is plain Dyna-Q
        prioritized: bool = False  # prioritized sweeping instead of uniform planning
        theta: float = param(1e-4, ge=0)  # prioritized sweeping threshold
        # learned model (vector observations)
        hidden: int = param(200, gt=0)
        layers: int = param(2, ge=0)
        lr: float = param(1e-3, gt=0)
        batch_size: int = param(256, gt=0)
        imagined_ratio: float = param(1.0, ge=0)  # imagined transitions per real one in each agent batch
        warmup: int = param(500, ge=0)  # model updates before imagined transitions are used
        update: Schedule = field(default_factory=Schedule)

    @classmethod
    def refuse(cls, plan) -> str | None:
        return cls.check_spaces(*plan.spaces) or cls.check_parts(plan.model, plan.agent)

    @staticmethod
    def check_spaces(obs_space: gym.Space, act_space: gym.Space) -> str | None:
        """Why model=dyna cannot run on these spaces (None if it can); used by refuse and __init__."""
        if not isinstance(act_space, gym.spaces.Discrete):
            return f"model=dyna needs discrete actions (got {type(act_space).__name__})"
        flat = isinstance(obs_space, gym.spaces.Box) and len(obs_space.shape) == 1
        if not isinstance(obs_space, gym.spaces.Discrete) and not flat:
            return f"model=dyna needs discrete or flat vector observations (got {type(obs_space).__name__}{obs_space.shape})"
        return None

    @staticmethod
    def check_parts(model: DynaModel.Config, agent: Any) -> str | None:
        """Why this model cannot go with this agent (None if it can).

        Imagined transitions are one-step (no n-step return can be imagined from a single model step), so
        an agent with n-step targets would meet them without their fields: refused while any are mixed in."""
        n_step = getattr(agent, "n_step", 1)
        if n_step > 1 and model.imagined_ratio > 0:
            return (f"agent.n_step={n_step} with model=dyna: imagined transitions are one-step; "
                    f"use agent.n_step=1 or model.imagined_ratio=0")
        return None

    def __init__(self, cfg: DynaModel.Config, obs_space: gym.Space, act_space: gym.Space,
                 device: torch.device | str = "cpu"):
        super().__init__()
        self.cfg, self.device = cfg, torch.device(device)
        problem = self.check_spaces(obs_space, act_space)
        if problem:
            raise TypeError(problem)
        self.n_actions = int(act_space.n)
        self.tabular = isinstance(obs_space, gym.spaces.Discrete)
        self.table: TabularModel | None = None
        self.dynamics: MLPDynamics | None = None
        self.updates = 0
        # own RNG for imagined actions / starts, seeded from the run's seeded torch RNG
        self.rng = torch.Generator().manual_seed(int(torch.randint(0, 2**31 - 1, ()).item()))
        if self.tabular:
            self.n_states = int(obs_space.n)
            self.table = TabularModel(self.n_actions, plus=cfg.kappa > 0)
        else:
            self.dynamics = MLPDynamics(obs_space.shape[0], self.n_actions, cfg.hidden, cfg.layers).to(self.device)
            self.opt = torch.optim.Adam(self.dynamics.parameters(), lr=cfg.lr)

    # ---- learned model ----------------------------------------------------------------------------
    def train_step(self, replay: Any, step: int) -> dict[str, float]:
        if self.tabular:
            return {}
        batch = replay.sample_transitions(self.cfg.batch_size)
        loss, metrics = self.dynamics.loss(batch["obs"], batch["action"], batch["reward"],
                                           batch["next_obs"], batch["terminal"])
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.updates += 1
        return metrics

    @property
    def ready(self) -> bool:
        """Whether imagined transitions are used yet (after ``warmup`` model updates)."""
        return not self.tabular and self.updates >= self.cfg.warmup and self.cfg.imagined_ratio > 0

    @torch.no_grad()
    def imagine_from(self, obs: torch.Tensor, policy: Callable[[torch.Tensor], torch.Tensor] | None = None
                     ) -> dict[str, torch.Tensor]:
        """One imagined transition from each state in ``obs``: uniform actions, or ``policy``'s."""
        n = obs.shape[0]
        if policy is None:
            action = torch.randint(0, self.n_actions, (n,), generator=self.rng).to(obs.device)
        else:
            action = policy(obs).long()
        next_obs, reward, terminal = self.dynamics.predict(obs, action)
        return {"obs": obs.float(), "action": action, "reward": reward, "next_obs": next_obs,
                "terminal": terminal}

    def _from_table(self, k: int) -> dict[str, torch.Tensor]:
        """``k`` transitions drawn uniformly from the model table (Dyna-Q's search control)."""
        keys = [self.table.keys[int(torch.randint(0, len(self.table.keys), (), generator=self.rng))]
                for _ in range(k)]
        rows = [self.table.table[key] for key in keys]
        return {"obs": torch.tensor([s for s, _ in keys]), "action": torch.tensor([a for _, a in keys]),
                "reward": torch.tensor([r for r, _, _ in rows]), "next_obs": torch.tensor([s2 for _, s2, _ in rows]),
                "terminal": torch.tensor([t for _, _, t in rows])}

    def imagine(self, batch: dict[str, torch.Tensor], replay: Any = None,
                policy: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """The real ``batch`` plus ``round(imagined_ratio * B)`` imagined transitions (the DQN hook).

        Learned model: imagined transitions start from real states of the batch (drawn with
        replacement), so the model is only queried where it has seen data; actions are uniform (or
        ``policy``'s), which suits off-policy Q-learning. None are added before ``warmup`` model updates.
        Tabular model (a grid env with a value-based agent): transitions drawn from the model table.
        Dtypes and device follow the real batch.
        """
        b = batch["obs"].shape[0]
        k = round(self.cfg.imagined_ratio * b)
        if self.tabular:
            if k == 0 or not self.table.keys:
                return batch
            fake = self._from_table(k)
        else:
            if k == 0 or not self.ready:
                return batch
            idx = torch.randint(0, b, (k,), generator=self.rng).to(batch["obs"].device)
            fake = self.imagine_from(batch["obs"][idx], policy)
        return {key: torch.cat([batch[key], fake[key].to(batch[key].device, batch[key].dtype)], 0)
                for key in batch}

    # ---- checkpoint -------------------------------------------------------------------------------
    def state_dict(self, *args, **kwargs):  # type: ignore[override]
        if self.tabular:
            return {"table": self.table.state_dict(), "rng": self.rng.get_state()}
        return {"dynamics": self.dynamics.state_dict(), "opt": self.opt.state_dict(),
                "rng": self.rng.get_state(), "updates": self.updates}

    def load_state_dict(self, state, strict: bool = True):  # type: ignore[override]
        if self.tabular:
            self.table.load_state_dict(state["table"])
            self.rng.set_state(state["rng"])
            return
        self.dynamics.load_state_dict(state["dynamics"])
        self.opt.load_state_dict(state["opt"])
        self.rng.set_state(state["rng"])
        self.updates = int(state["updates"])
