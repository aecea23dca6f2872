"""Tabular Dyna-Q, Dyna-Q+ and prioritized sweeping (Sutton & Barto, sections 8.2-8.4).

``TabularDynaQ`` is the whole algorithm as a plain-python object (Q as lists, ``random.Random``), fast
enough to drive directly for the book's 30-run figures (``bench/dyna.py``):

    a = dq.act(s); s2, r, term = env.step(a); dq.observe(s, a, r, s2, term)

``observe`` does, per real step (the book's tabular Dyna-Q box):
  (d) direct RL: Q(s,a) += alpha [r + gamma max_a' Q(s',a') - Q(s,a)]    (no bootstrap if terminal)
  (e) model:     Model(s,a) <- (r, s', terminal)
  (f) planning:  n times, a random observed (s,a) from the model, the same Q update with the model's
                 reward, plus kappa * sqrt(tau) for Dyna-Q+ (tau: real steps since (s,a) was last tried).
With ``prioritized=True`` the planning is the prioritized sweeping box of section 8.4 instead (no
separate direct update: the real transition enters the queue with priority |TD error| if > theta,
then up to n queue pops, each pushing its predecessors).

Greedy ties are broken uniformly at random (so with Q = 0 the first episode is a random walk).

``DynaQAgent`` is the ``agent=dyna_q`` wrapper the online loop builds (``model=dyna agent=dyna_q``).
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from wm.agents.base import Agent
from wm.config import param, require
from wm.core.schedule import Schedule
from wm.models.dyna import DynaModel, TabularModel


class TabularDynaQ:
    """Q table + model table + planning. States and actions are ints."""

    def __init__(self, n_states: int, n_actions: int, alpha: float = 0.1, gamma: float = 0.95,
                 epsilon: float = 0.1, planning_steps: int = 0, kappa: float = 0.0,
                 prioritized: bool = False, theta: float = 1e-4, q_init: float = 0.0, seed: int = 0,
                 model: TabularModel | None = None):
        self.n_states, self.n_actions = n_states, n_actions
        self.alpha, self.gamma, self.epsilon = alpha, gamma, epsilon
        self.planning_steps, self.kappa = planning_steps, kappa
        self.prioritized, self.theta = prioritized, theta
        self.Q = [[float(q_init)] * n_actions for _ in range(n_states)]
        self.rng = random.Random(seed)
        self.model = model if model is not None else TabularModel(n_actions, plus=kappa > 0)
        self.queue: list[tuple[float, int, tuple[int, int]]] = []  # (-priority, tiebreak, (s, a))
        self.in_queue: dict[tuple[int, int], float] = {}  # best priority currently queued per (s, a)
        self._tick = 0
        self.planning_updates = 0  # total planning updates done (for the speed benchmark)

    # ---- acting -----------------------------------------------------------------------------------
    def greedy(self, s: int) -> int:
        q = self.Q[s]
        m = max(q)
        best = [a for a in range(self.n_actions) if q[a] == m]
        return best[0] if len(best) == 1 else best[int(self.rng.random() * len(best))]

    def act(self, s: int, explore: bool = True) -> int:
        if explore and self.rng.random() < self.epsilon:
            return int(self.rng.random() * self.n_actions)
        return self.greedy(s)

    # ---- learning ---------------------------------------------------------------------------------
    def _td(self, s: int, a: int, r: float, s2: int, term: bool) -> float:
        target = r if term else r + self.gamma * max(self.Q[s2])
        return target - self.Q[s][a]

    def observe(self, s: int, a: int, r: float, s2: int, term: bool) -> int:
        """Learn from one real transition; returns the number of planning updates done."""
        if self.prioritized:
            self.model.update(s, a, r, s2, term)
            self._push((s, a), abs(self._td(s, a, r, s2, term)))
            return self.sweep(self.planning_steps)
        self.Q[s][a] += self.alpha * self._td(s, a, r, s2, term)
        self.model.update(s, a, r, s2, term)
        return self.plan(self.planning_steps)

    def plan(self, n: int) -> int:
        """``n`` Dyna planning updates on uniformly sampled observed (s, a)."""
        model, Q, alpha, gamma, kappa = self.model, self.Q, self.alpha, self.gamma, self.kappa
        if not model.keys:
            return 0
        for _ in range(n):
            key = model.sample(self.rng)
            r, s2, term = model.table[key]
            if kappa:
                r += model.bonus(key, kappa)
            s, a = key
            target = r if term else r + gamma * max(Q[s2])
            Q[s][a] += alpha * (target - Q[s][a])
        self.planning_updates += n
        return n

    def _model_reward(self, key: tuple[int, int]) -> tuple[float, int, bool]:
        r, s2, term = self.model.table[key]
        if self.kappa:
            r += self.model.bonus(key, self.kappa)
        return r, s2, term

    def _push(self, key: tuple[int, int], priority: float) -> None:
        if priority <= self.theta or self.in_queue.get(key, -1.0) >= priority:
            return
        self.in_queue[key] = priority
        self._tick += 1
        heapq.heappush(self.queue, (-priority, self._tick, key))

    def sweep(self, n: int) -> int:
        """Up to ``n`` prioritized-sweeping updates (stops early when the queue empties)."""
        done = 0
        while self.queue and done < n:
            neg, _, key = heapq.heappop(self.queue)
            if self.in_queue.get(key) != -neg:
                continue  # stale entry: a higher priority for this key was pushed later
            del self.in_queue[key]
            s, a = key
            r, s2, term = self._model_reward(key)
            self.Q[s][a] += self.alpha * self._td(s, a, r, s2, term)
            done += 1
            for pkey in self.model.predecessors(s):
                pr, _, pterm = self._model_reward(pkey)
                self._push(pkey, abs(self._td(pkey[0], pkey[1], pr, s, pterm)))
        self.planning_updates += done
        return done

    # ---- checkpoint (plain containers) --------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"Q": torch.tensor(self.Q, dtype=torch.float64), "rng": self.rng.getstate(),
                "model": self.model.state_dict(), "queue": [[-p, t, list(k)] for p, t, k in self.queue],
                "tick": self._tick, "planning_updates": self.planning_updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.Q = state["Q"].tolist()
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))
        self.model.load_state_dict(state["model"])
        self.queue = [(-p, int(t), (int(k[0]), int(k[1]))) for p, t, k in state["queue"]]
        heapq.heapify(self.queue)
        self.in_queue = {}
        for neg, _, key in self.queue:
            self.in_queue[key] = max(self.in_queue.get(key, -1.0), -neg)
        self._tick = int(state["tick"])
        self.planning_updates = int(state["planning_updates"])


class DynaQAgent(Agent):
    """``agent=dyna_q``: tabular Dyna-Q(+)/prioritized sweeping for discrete-observation envs.

    The planning settings (n, kappa, prioritized, theta) come from ``model=dyna``; without a model
    (``model=none``) it is one-step tabular Q-learning (n = 0). Several envs share one Q table; each
    real transition of ``replay.last_transitions()`` is learned from in env order.
    """

    action_kinds = ("discrete",)

    @dataclass
    class Config:
        alpha: float = param(0.1, gt=0, le=1)
        gamma: float = param(0.95, ge=0, le=1)
        epsilon: float = param(0.1, ge=0, le=1)
        q_init: float = param(0.0)
        prefill: int = param(0, ge=0)  # uniform random steps before the agent acts (0: the book's protocol)
        update: Schedule = field(default_factory=Schedule)  # every real step: learn + plan

        def check(self) -> None:
            require((self.update.every, self.update.updates) == (1, 1), "update",
                    "agent=dyna_q learns from every real step; update.every and update.updates must be 1 "
                    f"(got {self.update.every}, {self.update.updates})")

    @classmethod
    def refuse(cls, plan) -> str | None:
        return cls.check_spaces(*plan.spaces)

    @staticmethod
    def check_spaces(obs_space: gym.Space, act_space: gym.Space) -> str | None:
        """Why agent=dyna_q cannot run on these spaces (None if it can); used by refuse and __init__."""
        if not isinstance(obs_space, gym.spaces.Discrete):
            return ("agent=dyna_q is tabular and needs discrete observations (a grid env: env=dyna_maze, "
                    f"blocking_maze, shortcut_maze, gridworld); got {type(obs_space).__name__}{obs_space.shape}. "
                    "For vector observations "
                    "use model=dyna agent=dqn")
        return None

    def __init__(self, cfg: DynaQAgent.Config, obs_space: gym.Space, act_space: gym.Space,
                 model: DynaModel | None = None, device: torch.device | str = "cpu"):
        super().__init__()
        problem = self.check_spaces(obs_space, act_space) or (
            None if isinstance(act_space, gym.spaces.Discrete) else "agent=dyna_q needs discrete actions")
        if problem:
            raise TypeError(problem)
        if model is not None and not getattr(model, "tabular", False):
            raise TypeError("agent=dyna_q needs model=dyna (tabular) or model=none")
        self.cfg = cfg
        m = model.cfg if model is not None else DynaModel.Config(planning_steps=0)
        seed = int(torch.randint(0, 2**31 - 1, ()).item())  # from the run's seeded torch RNG
        self.core = TabularDynaQ(
            int(obs_space.n), int(act_space.n), alpha=cfg.alpha, gamma=cfg.gamma, epsilon=cfg.epsilon,
            planning_steps=m.planning_steps, kappa=m.kappa, prioritized=m.prioritized, theta=m.theta,
            q_init=cfg.q_init, seed=seed, model=model.table if model is not None else None,
        )
        self.eval_rng = random.Random(seed + 1)  # greedy ties at evaluation: keeps the training stream intact
        self.learned_step = -1  # the env step whose transitions were learned last

    def initial_state(self, n: int) -> None:
        return None

    def act(self, obs: np.ndarray, state: Any, is_first: np.ndarray, explore: bool) -> tuple[np.ndarray, None]:
        obs = np.asarray(obs).reshape(-1)
        if explore:
            return np.array([self.core.act(int(s)) for s in obs], np.int64), None
        train_rng, self.core.rng = self.core.rng, self.eval_rng
        try:
            return np.array([self.core.greedy(int(s)) for s in obs], np.int64), None
        finally:
            self.core.rng = train_rng

    def train_step(self, replay: Any, step: int) -> dict[str, float]:
        if step == self.learned_step:  # with several envs the loop owes one round per env: learn once
            return {}
        self.learned_step = step
        batch = replay.last_transitions()
        cols = [batch[k].cpu().numpy().tolist() for k in ("obs", "action", "reward", "next_obs", "terminal")]
        planned = 0
        for s, a, r, s2, term in zip(*cols):
            planned += self.core.observe(int(s), int(a), float(r), int(s2), bool(term))
        return {"agent/planning_updates": float(planned), "agent/model_size": float(len(self.core.model))}

    def state_dict(self, *args, **kwargs):  # type: ignore[override]
        return {"core": self.core.state_dict(), "eval_rng": self.eval_rng.getstate(),
                "learned_step": self.learned_step, "env_step": getattr(self, "env_step", 0)}

    def load_state_dict(self, state, strict: bool = True):  # type: ignore[override]
        self.core.load_state_dict(state["core"])
        version, internal, gauss = state["eval_rng"]
        self.eval_rng.setstate((version, tuple(internal), gauss))
        self.learned_step = int(state["learned_step"])
        self.env_step = int(state["env_step"])
