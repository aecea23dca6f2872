"""data=nbody: n-body systems as states, for relational dynamics models (model=interaction_net and its
baselines, wm/models/interaction_net.py).

Two systems of point bodies in 2-D, simulated in float64 with velocity Verlet (leapfrog: symplectic, so energy
oscillates but does not drift; symmetric pair forces, so momentum is conserved to rounding) in ``substeps``
steps per recorded ``dt``:
- ``gravity``: softened Newtonian attraction between all pairs, ``a_i = G sum_j m_j (x_j - x_i) / (|x_j - x_i|^2
  + eps^2)^(3/2)``, potential ``-G sum_{i<j} m_i m_j / sqrt(r^2 + eps^2)``. Initial conditions: a rotating
  disc. Bodies at radii uniform in [0.5, 2] x ``scale`` and uniform angles, moving tangentially, all the same
  way, at the (softened) circular-orbit speed about the mass inside their radius (half their own included)
  times a factor uniform in [0.9, 1.1]; then the centre of mass is moved to the origin, its velocity removed
  (zero momentum), and all velocities scaled so that 2 K = -U / 2 (``VIRIAL``: colder than the equilibrium
  2 K = -U). So every system is bound by the same margin, E = 3 U / 4, whatever its body count (relative
  energy drift means the same at 3 and 12 bodies), and orbits are eccentric, falling inward at first. Over
  100 steps at the defaults (2 time units, about half an orbit at radius 1) a body gets 5 ``scale`` from the
  centre in 0%, 0.7% and 2.7% of trajectories at 3, 6 and 12 bodies (300 each); the softening keeps close
  passes finite and the substeps resolve them: the simulated energy drifts by 1e-4 (median) over 100 steps.
- ``spring``: Hooke springs of stiffness ``k`` between pairs (Kipf et al. 2018, NRI's springs, without the
  box), ``a_i = k / m_i sum_j e_ij (x_j - x_i)``, potential ``k/2 sum_{i<j} e_ij r^2``. Every pair is joined
  when ``edge_prob`` is 1; else each pair of each trajectory independently with that probability (from the
  trajectory's seed). Initial positions and velocities ~ N(0, ``scale``^2), then zero centre of mass and
  momentum: with every pair joined the bodies oscillate about a fixed centre, bounded; with ``edge_prob`` < 1
  the graph may fall apart, and its pieces drift apart at constant velocity (NRI kept them in a box).
``strength`` is G or k. Masses are uniform in [``mass_min``, ``mass_max``] per body.

Splits: ``train`` (``train`` trajectories of ``bodies`` bodies, ``length`` steps) and ``test_<k>`` for each k of
``test_bodies`` (``test`` trajectories of k bodies, ``test_length`` steps). Each split is a dict of arrays, N
trajectories, T = steps + 1 recorded states:
    pos (N, T, k, 2) float32, vel (N, T, k, 2) float32, mass (N, k) float32, edges (N, k, k) float32 (1: the
    pair interacts; symmetric, zero diagonal), energy (N, T) float64 (kinetic + potential), momentum (N, T, 2)
    float64.
Everything comes from the run seed; a split's trajectories do not depend on the other splits' sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wm.config import Allowed, check_tree, param, require
from wm.core.seeds import NBODY_DATA

TWO_OR_MORE = Allowed(ge=2)  # bodies in a system
VIRIAL = 0.5  # gravity's initial 2 K / -U: below 1 (equilibrium), so few bodies escape within a trajectory


@dataclass(frozen=True)
class Physics:
    """The force law of a system; every array may carry leading batch dims (...): pos (..., n, 2), mass (..., n),
    edges (..., n, n)."""

    system: str = "gravity"
    strength: float = 1.0
    softening: float = 0.2

    def accelerations(self, pos: np.ndarray, mass: np.ndarray, edges: np.ndarray) -> np.ndarray:
        """(..., n, 2) accelerations."""
        d = pos[..., None, :, :] - pos[..., :, None, :]  # (..., receiver i, sender j, 2): x_j - x_i
        if self.system == "gravity":
            r2 = (d**2).sum(-1) + self.softening**2
            w = self.strength * edges * mass[..., None, :] * r2**-1.5
            return (w[..., None] * d).sum(-2)
        return self.strength * (edges[..., None] * d).sum(-2) / mass[..., None]

    def potential(self, pos: np.ndarray, mass: np.ndarray, edges: np.ndarray) -> np.ndarray:
        """(...,) potential energy (each pair once)."""
        d = pos[..., None, :, :] - pos[..., :, None, :]
        r2 = (d**2).sum(-1)
        if self.system == "gravity":
            pair = -self.strength * mass[..., :, None] * mass[..., None, :] / np.sqrt(r2 + self.softening**2)
        else:
            pair = 0.5 * self.strength * r2
        return 0.5 * (edges * pair).sum((-1, -2))  # every pair appears twice in the sum over (i, j)

    def energy(self, pos: np.ndarray, vel: np.ndarray, mass: np.ndarray, edges: np.ndarray) -> np.ndarray:
        """(...,) total energy: kinetic + potential."""
        kinetic = 0.5 * (mass * (vel**2).sum(-1)).sum(-1)
        return kinetic + self.potential(pos, mass, edges)

    @staticmethod
    def momentum(vel: np.ndarray, mass: np.ndarray) -> np.ndarray:
        """(..., 2) total momentum."""
        return (mass[..., None] * vel).sum(-2)

    def simulate(self, pos: np.ndarray, vel: np.ndarray, mass: np.ndarray, edges: np.ndarray, steps: int,
                 dt: float, substeps: int) -> tuple[np.ndarray, np.ndarray]:
        """Velocity Verlet from (B, n, 2) states: positions and velocities (B, steps + 1, n, 2), float64, one
        state every ``dt`` (``substeps`` leapfrog steps of dt / substeps each)."""
        h = dt / substeps
        x, v = pos.astype(np.float64), vel.astype(np.float64)
        a = self.accelerations(x, mass, edges)
        xs, vs = [x], [v]
        for _ in range(steps):
            for _ in range(substeps):
                v = v + 0.5 * h * a
                x = x + h * v
                a = self.accelerations(x, mass, edges)
                v = v + 0.5 * h * a
            xs.append(x)
            vs.append(v)
        return np.stack(xs, 1), np.stack(vs, 1)


class NBody:
    """The splits of the module docstring, and the physics to score predicted states with (``physics.energy``)."""

    @dataclass
    class Config:
        name: str = param("nbody", free="the option's name")
        system: str = param("gravity", choices=("gravity", "spring"))
        bodies: int = param(6, ge=2)  # in every training trajectory
        test_bodies: list[int] = param([3, 6, 12], each=TWO_OR_MORE, nonempty=True)  # one test split each
        train: int = param(1000, gt=0)  # training trajectories
        test: int = param(100, gt=0)  # trajectories per test split
        length: int = param(100, gt=0)  # steps per training trajectory
        test_length: int = param(100, ge=100)  # steps per test trajectory: the metrics roll out 100 steps
        dt: float = param(0.02, gt=0)  # time between recorded states
        substeps: int = param(10, gt=0)  # leapfrog steps per dt
        strength: float = param(1.0, gt=0)  # G (gravity) or the spring stiffness k
        softening: float = param(0.2, gt=0)  # gravity's eps; unused by springs
        edge_prob: float = param(1.0, gt=0, le=1)  # spring: probability that a pair is joined (gravity: all)
        mass_min: float = param(0.5, gt=0)
        mass_max: float = param(1.5, gt=0)
        scale: float = param(1.0, gt=0)  # length scale of the initial positions (and spring velocities)

        def check(self) -> None:
            require(self.mass_max >= self.mass_min, "mass_max", f"must be >= mass_min={self.mass_min} "
                                                                f"(got {self.mass_max})")
            require(self.system == "spring" or self.edge_prob == 1, "edge_prob",
                    "gravity acts between every pair: edge_prob < 1 is for system=spring")

    def __init__(self, cfg: NBody.Config, seed: int = 0):
        check_tree(cfg, "data")
        self.cfg, self.seed = cfg, seed
        self.physics = Physics(cfg.system, cfg.strength, cfg.softening)
        self.dt = cfg.dt
        self.test_counts = tuple(dict.fromkeys(cfg.test_bodies))  # in the given order, each once
        plan = {"train": (cfg.bodies, cfg.train, cfg.length)}
        plan.update({f"test_{k}": (k, cfg.test, cfg.test_length) for k in self.test_counts})
        self.splits = {name: self._simulate(i, *p) for i, (name, p) in enumerate(plan.items())}

    def _initial(self, rngs: list[np.random.Generator], n: int) -> tuple[np.ndarray, ...]:
        """(B, n, 2) positions and velocities, (B, n) masses, (B, n, n) edges: one generator per trajectory."""
        c = self.cfg
        mass = np.stack([g.uniform(c.mass_min, c.mass_max, n) for g in rngs])
        if c.system == "gravity":
            r = np.stack([g.uniform(0.5, 2.0, n) for g in rngs]) * c.scale
            angle = np.stack([g.uniform(0, 2 * np.pi, n) for g in rngs])
            boost = np.stack([g.uniform(0.9, 1.1, n) for g in rngs])
            edges = np.broadcast_to(1 - np.eye(n), (len(rngs), n, n)).copy()
            radial = np.stack([np.cos(angle), np.sin(angle)], -1)
            pos = r[..., None] * radial
            inside = (mass[:, None, :] * (r[:, None, :] < r[:, :, None])).sum(-1) + 0.5 * mass  # (B, n)
            speed = np.sqrt(c.strength * inside * r**2 / (r**2 + c.softening**2) ** 1.5) * boost
            vel = speed[..., None] * np.stack([-radial[..., 1], radial[..., 0]], -1)  # counter-clockwise
        else:
            pos = np.stack([g.normal(0, c.scale, (n, 2)) for g in rngs])
            vel = np.stack([g.normal(0, c.scale, (n, 2)) for g in rngs])
            upper = np.stack([np.triu(g.random((n, n)) < c.edge_prob, 1) for g in rngs])
            edges = (upper | upper.transpose(0, 2, 1)).astype(np.float64)
        total = mass.sum(-1, keepdims=True)[..., None]
        pos = pos - (mass[..., None] * pos).sum(-2, keepdims=True) / total  # centre of mass at the origin
        vel = vel - (mass[..., None] * vel).sum(-2, keepdims=True) / total  # zero momentum
        if c.system == "gravity":  # 2 K = -VIRIAL U: bound by as much, E = (1 - VIRIAL / 2) U, for any count
            kinetic = 0.5 * (mass * (vel**2).sum(-1)).sum(-1)
            potential = self.physics.potential(pos, mass, edges)
            vel = vel * np.sqrt(-0.5 * VIRIAL * potential / kinetic)[:, None, None]
        return pos, vel, mass, edges

    def _simulate(self, index: int, n: int, trajectories: int, steps: int) -> dict[str, np.ndarray]:
        rngs = [np.random.default_rng([self.seed, NBODY_DATA, index, i]) for i in range(trajectories)]
        pos, vel, mass, edges = self._initial(rngs, n)
        xs, vs = self.physics.simulate(pos, vel, mass, edges, steps, self.cfg.dt, self.cfg.substeps)
        m, e = mass[:, None], edges[:, None]
        return {"pos": xs.astype(np.float32), "vel": vs.astype(np.float32), "mass": mass.astype(np.float32),
                "edges": edges.astype(np.float32), "energy": self.physics.energy(xs, vs, m, e),
                "momentum": self.physics.momentum(vs, m)}

    def batch(self, rng: np.random.Generator, size: int, split: str = "train", window: int = 1
              ) -> dict[str, np.ndarray]:
        """``size`` windows of ``window`` steps at random trajectories and start times: pos and vel
        (size, window + 1, n, 2), mass (size, n), edges (size, n, n)."""
        d = self.splits[split]
        N, T = d["pos"].shape[:2]
        if window >= T:
            raise ValueError(f"a window of {window} steps needs trajectories of more than {window} steps "
                             f"(split {split} has {T - 1})")
        traj, start = rng.integers(0, N, size), rng.integers(0, T - window, size)
        times = start[:, None] + np.arange(window + 1)
        return {"pos": d["pos"][traj[:, None], times], "vel": d["vel"][traj[:, None], times],
                "mass": d["mass"][traj], "edges": d["edges"][traj]}
