"""The chemistry world of causal model-based RL (Ke et al. 2021; Wang et al. 2022's CDL): objects whose colours
are set by actions and propagate down a causal graph, plus distractor variables that influence nothing.

State: ``objects`` colours in ``range(colours)`` and ``distractors`` real numbers. An action ``k`` sets object
``k // colours`` to colour ``k % colours``; every descendant of that object in the DAG is then recomputed, in
topological order, by its mechanism: a fixed random MLP of its parents' colours (argmax of its logits; with
``noise`` > 0 a recomputed colour is uniformly random with that probability). Objects that are not descendants
keep their colour. Distractors follow AR(1) processes of stationary standard deviation ``distractor_std``.
``intervene=j`` replaces object j's mechanism with another random one (a test-time intervention).

Graphs (object i can only be a parent of j > i, so index order is topological): ``chain`` i -> i+1,
``collider`` every i -> the last object, ``full`` every i -> j > i, ``random`` each i -> j > i with
probability ``edge_prob``. The graph and the mechanisms come from ``graph_seed``, not from the episode seed.

The lagged graph (which variables at t matter for each variable at t+1) is not the DAG: in a chain, an
object's next colour depends on its own colour and the action only (an ancestor's colour is either kept, and
then so is the object's, or overwritten by the action). ``ChemistryWorld.lagged_graph`` derives it by
perturbing the simulator, one input at a time, with the randomness held fixed.

The env (``wm/Chemistry-v0``): observation = the colours one-hot then the distractors (float32), action
``Discrete(objects * colours)``. Each episode draws a target reachable in ``objects`` random actions (in
``info["target"]``); the reward is the fraction of objects that match it after the step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Optional

import gymnasium as gym
import numpy as np

from wm.config import param

GRAPHS = ("chain", "collider", "full", "random")


@dataclass
class WorldSpec:
    """What defines a chemistry world (the env's kwargs, and the chemistry dataset's ``world``)."""

    objects: int = param(5, ge=2)
    colours: int = param(5, ge=2)
    graph: str = param("chain", choices=GRAPHS)
    edge_prob: float = param(0.3, ge=0, le=1)  # graph=random: chance of each edge i -> j > i
    graph_seed: int = param(0, ge=0)  # the DAG and the mechanisms
    distractors: int = param(4, ge=0)
    distractor_std: float = param(1.0, gt=0)
    distractor_rho: float = param(0.9, ge=0, lt=1)  # AR(1) coefficient
    noise: float = param(0.0, ge=0, le=1)  # chance that a recomputed colour is uniformly random
    hidden: int = param(16, gt=0)  # width of the mechanisms' random MLPs
    intervene: Optional[int] = param(None, ge=0)  # object whose mechanism is replaced (it must have parents)


def dag(graph: str, n: int, edge_prob: float = 0.3, rng: np.random.Generator | None = None) -> np.ndarray:
    """(n, n) bool, [i, j] True for an edge i -> j (only i < j)."""
    a = np.zeros((n, n), bool)
    if graph == "chain":
        a[np.arange(n - 1), np.arange(1, n)] = True
    elif graph == "collider":
        a[: n - 1, n - 1] = True
    elif graph == "full":
        a = np.triu(np.ones((n, n), bool), 1)
    elif graph == "random":
        a = np.triu((rng or np.random.default_rng(0)).random((n, n)) < edge_prob, 1)
    else:
        raise ValueError(f"graph must be one of {', '.join(GRAPHS)} (got {graph!r})")
    return a


def closure(a: np.ndarray) -> np.ndarray:
    """Descendants: [i, j] True if j is reachable from i (i itself included)."""
    d = a | np.eye(len(a), dtype=bool)
    for _ in range(len(a)):
        d = d | (d.astype(np.int64) @ d.astype(np.int64) > 0)
    return d


class ChemistryWorld:
    """The simulator, vectorised over a batch: ``step`` maps (colours, distractors, actions) to the next ones."""

    def __init__(self, spec: WorldSpec):
        n, c = spec.objects, spec.colours
        if spec.graph not in GRAPHS:
            raise ValueError(f"graph must be one of {', '.join(GRAPHS)} (got {spec.graph!r})")
        if n < 2 or c < 2:
            raise ValueError(f"a chemistry world needs >= 2 objects and >= 2 colours (got {n}, {c})")
        self.spec, self.n, self.c, self.d = spec, n, c, spec.distractors
        rng = np.random.default_rng([spec.graph_seed, 0xC4E])
        self.dag = dag(spec.graph, n, spec.edge_prob, rng)
        self.descendants = closure(self.dag)
        self.parents = [np.flatnonzero(self.dag[:, j]) for j in range(n)]
        self.mechanisms = [self._mechanism(rng, len(p)) for p in self.parents]
        if spec.intervene is not None:
            j = spec.intervene
            if not 0 <= j < n or len(self.parents[j]) == 0:
                raise ValueError(f"intervene must be an object with parents, one of "
                                 f"{[int(k) for k in range(n) if len(self.parents[k])]} (got {j})")
            self.mechanisms[j] = self._mechanism(np.random.default_rng([spec.graph_seed, 0x1A7, j]),
                                                 len(self.parents[j]))

    def _mechanism(self, rng: np.random.Generator, k: int) -> tuple[np.ndarray, ...] | None:
        if k == 0:
            return None
        h = self.spec.hidden
        return (rng.normal(0, 1, (k * self.c, h)), rng.normal(0, 0.5, h), rng.normal(0, 1, (h, self.c)))

    @property
    def actions(self) -> int:
        return self.n * self.c

    # ---- dynamics -------------------------------------------------------------------------------------------
    def step(self, colours: np.ndarray, distractors: np.ndarray, actions: np.ndarray, rng: np.random.Generator
             ) -> tuple[np.ndarray, np.ndarray]:
        """colours (B, n) int, distractors (B, d), actions (B,) -> next colours and distractors."""
        u = rng.random(colours.shape)           # all the step's randomness, drawn up front so that
        r = rng.integers(0, self.c, colours.shape)  # lagged_graph can hold it fixed
        e = rng.normal(0, 1, distractors.shape)
        return self.step_with(colours, distractors, actions, u, r, e)

    def step_with(self, colours, distractors, actions, u, r, e) -> tuple[np.ndarray, np.ndarray]:
        s = self.spec
        obj, col = np.asarray(actions) // self.c, np.asarray(actions) % self.c
        new = np.array(colours, dtype=np.int64, copy=True)
        rows = np.arange(len(new))
        new[rows, obj] = col
        recompute = self.descendants[obj] & (np.arange(self.n)[None] != obj[:, None])  # (B, n)
        for j in range(self.n):  # index order is topological
            if self.mechanisms[j] is None or not recompute[:, j].any():
                continue
            b = recompute[:, j]
            w1, b1, w2 = self.mechanisms[j]
            x = np.eye(self.c)[new[b][:, self.parents[j]]].reshape(b.sum(), -1)
            out = np.argmax(np.tanh(x @ w1 + b1) @ w2, axis=1)
            if s.noise > 0:
                out = np.where(u[b, j] < s.noise, r[b, j], out)
            new[b, j] = out
        rho = s.distractor_rho
        nxt = rho * distractors + np.sqrt(1 - rho**2) * s.distractor_std * e
        return new, nxt.astype(np.float32)

    def sample_state(self, rng: np.random.Generator, batch: int) -> tuple[np.ndarray, np.ndarray]:
        return (rng.integers(0, self.c, (batch, self.n)),
                rng.normal(0, self.spec.distractor_std, (batch, self.d)).astype(np.float32))

    # ---- the true lagged graph ------------------------------------------------------------------------------
    def lagged_graph(self, samples: int = 2000, seed: int = 0) -> np.ndarray:
        """(n + d + 1, n + d) bool: inputs (colours, distractors, action) at t -> outputs (colours, distractors)
        at t+1. An edge is there if changing that one input, with the state, the action and the step's
        randomness held fixed, changes that output for some of ``samples`` random states and actions."""
        rng = np.random.default_rng(seed)
        n, d = self.n, self.d
        col, dis = self.sample_state(rng, samples)
        act = rng.integers(0, self.actions, samples)
        u, r = rng.random((samples, n)), rng.integers(0, self.c, (samples, n))
        e = rng.normal(0, 1, (samples, d))
        base_c, base_d = self.step_with(col, dis, act, u, r, e)
        out = np.zeros((n + d + 1, n + d), bool)

        def changed(c2, d2, a2) -> np.ndarray:
            nc, nd = self.step_with(c2, d2, a2, u, r, e)
            return np.concatenate([(nc != base_c).any(0), (np.abs(nd - base_d) > 1e-6).any(0)])

        for i in range(n):
            for shift in range(1, self.c):
                c2 = col.copy()
                c2[:, i] = (c2[:, i] + shift) % self.c
                out[i] |= changed(c2, dis, act)
        for k in range(d):
            d2 = dis.copy()
            d2[:, k] += 1.0
            out[n + k] |= changed(col, d2, act)
        for shift in range(1, self.actions):
            out[n + d] |= changed(col, dis, (act + shift) % self.actions)
        return out

    def names(self) -> tuple[list[str], list[str]]:
        """Input and output variable names of the lagged graph."""
        state = [f"c{i}" for i in range(self.n)] + [f"x{k}" for k in range(self.d)]
        return state + ["a"], state

    # ---- observations ---------------------------------------------------------------------------------------
    def observe(self, colours: np.ndarray, distractors: np.ndarray) -> np.ndarray:
        """(..., n) colours, (..., d) distractors -> (..., n * colours + d) float32: one-hots, then distractors."""
        onehot = np.eye(self.c, dtype=np.float32)[colours].reshape(*colours.shape[:-1], -1)
        return np.concatenate([onehot, distractors.astype(np.float32)], -1)

    def split(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The inverse of ``observe``."""
        k = self.n * self.c
        return obs[..., :k].reshape(*obs.shape[:-1], self.n, self.c).argmax(-1), obs[..., k:]


class Chemistry(gym.Env):
    """``wm/Chemistry-v0``: match a target colouring (see the module docstring)."""

    metadata: ClassVar[dict] = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, render_mode: str | None = None, **spec: Any):
        self.world = ChemistryWorld(WorldSpec(**spec))
        w = self.world
        self.render_mode = render_mode
        lim = np.concatenate([np.ones(w.n * w.c), np.full(w.d, np.inf)]).astype(np.float32)
        self.observation_space = gym.spaces.Box(np.where(np.isinf(lim), -np.inf, 0).astype(np.float32), lim)
        self.action_space = gym.spaces.Discrete(w.actions)
        self.colours = np.zeros(w.n, np.int64)
        self.distractors = np.zeros(w.d, np.float32)
        self.target = np.zeros(w.n, np.int64)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        w, rng = self.world, self.np_random
        c, d = w.sample_state(rng, 1)
        t = c
        for _ in range(w.n):  # a target the world can reach: where n random actions lead
            t, _ = w.step(t, d, rng.integers(0, w.actions, 1), rng)
        self.colours, self.distractors, self.target = c[0], d[0], t[0]
        return self._obs(), self._info()

    def step(self, action):
        c, d = self.world.step(self.colours[None], self.distractors[None], np.asarray([int(action)]), self.np_random)
        self.colours, self.distractors = c[0], d[0]
        reward = float((self.colours == self.target).mean())
        return self._obs(), reward, False, False, self._info()

    def _obs(self) -> np.ndarray:
        return self.world.observe(self.colours, self.distractors)

    def _info(self) -> dict[str, Any]:
        return {"target": self.target.copy(), "matched": int((self.colours == self.target).sum())}

    def render(self) -> np.ndarray:
        """Two rows of coloured squares: the colours now (top) and the target (bottom)."""
        palette = (np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                             [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [128, 128, 128]])
                   if self.world.c <= 10 else np.random.default_rng(0).integers(0, 256, (self.world.c, 3)))
        img = np.stack([palette[self.colours], palette[self.target]]).astype(np.uint8)  # (2, n, 3)
        return np.kron(img, np.ones((16, 16, 1), np.uint8))
