"""data=nbody: the simulator conserves what it must (energy, momentum), its forces are the gradient of its
potential, its systems stay bounded, and the splits are a function of the seed."""

from __future__ import annotations

import numpy as np
import pytest

from wm.config import typed
from wm.data.nbody import NBody, Physics


def dataset(seed: int = 0, **over) -> NBody:
    base = {"train": 8, "test": 4, "length": 20, "test_bodies": [3, 12]}
    return NBody(typed(NBody, {**base, **over}, "data"), seed=seed)


@pytest.mark.parametrize("system", ["gravity", "spring"])
def test_energy_and_momentum_are_conserved_over_1000_steps(system):
    """Velocity Verlet at the default dt and substeps: the total energy's relative change stays below 1e-3
    (gravity: close passes cost most; springs: ~1e-5) while the kinetic energy itself swings by far more,
    and momentum stays zero to float64 rounding."""
    d = dataset(system=system, length=1000, edge_prob=0.5 if system == "spring" else 1.0)
    s = d.splits["train"]
    assert s["pos"].shape == (8, 1001, 6, 2)
    E = s["energy"]
    drift = np.abs(E - E[:, :1]).max(1) / np.abs(E[:, 0])
    assert drift.max() < (1e-3 if system == "gravity" else 1e-4), drift
    kinetic = 0.5 * (s["mass"][:, None] * (s["vel"].astype(np.float64) ** 2).sum(-1)).sum(-1)
    swing = (kinetic.max(1) - kinetic.min(1)) / np.abs(E[:, 0])
    assert swing.min() > 100 * drift.max()  # the conservation is not that of a system at rest
    momentum_scale = (s["mass"][:, None, :, None] * np.abs(s["vel"])).sum((2, 3)).max()
    assert np.abs(s["momentum"]).max() < 1e-12 * momentum_scale


@pytest.mark.parametrize("system", ["gravity", "spring"])
def test_accelerations_are_minus_the_potential_gradient_over_mass(system):
    rng = np.random.default_rng(0)
    physics = Physics(system, strength=1.3, softening=0.2)
    pos, mass = rng.normal(size=(5, 2)), rng.uniform(0.5, 1.5, 5)
    edges = np.triu(rng.random((5, 5)) < 0.6, 1).astype(float)
    edges = edges + edges.T
    grad, h = np.zeros_like(pos), 1e-6
    for i in range(5):
        for c in range(2):
            up, down = pos.copy(), pos.copy()
            up[i, c] += h
            down[i, c] -= h
            grad[i, c] = (physics.potential(up, mass, edges) - physics.potential(down, mass, edges)) / (2 * h)
    np.testing.assert_allclose(physics.accelerations(pos, mass, edges), -grad / mass[:, None], rtol=1e-6, atol=1e-8)


def test_systems_stay_bounded_and_start_bound():
    d = dataset(train=50, test=50, test_length=100, test_bodies=[3, 6, 12])
    for k in (3, 6, 12):
        s = d.splits[f"test_{k}"]
        assert s["pos"].shape == (50, 101, k, 2)
        assert (s["energy"][:, 0] < 0).all()  # gravity: every system starts bound
        assert np.linalg.norm(s["pos"], axis=-1).max() < 10
        np.testing.assert_allclose((s["mass"][..., None] * s["pos"][:, 0]).sum(1), 0, atol=1e-5)  # centre of mass


def test_splits_are_a_function_of_the_seed():
    a, b, c = dataset(seed=0), dataset(seed=0), dataset(seed=1)
    assert set(a.splits) == {"train", "test_3", "test_12"}
    for name in a.splits:
        for key in a.splits[name]:
            np.testing.assert_array_equal(a.splits[name][key], b.splits[name][key])
        assert not np.array_equal(a.splits[name]["pos"], c.splits[name]["pos"])
    more = dataset(seed=0, train=16)  # a split does not depend on the sizes of the others
    np.testing.assert_array_equal(more.splits["train"]["pos"][:8], a.splits["train"]["pos"])
    np.testing.assert_array_equal(more.splits["test_3"]["pos"], a.splits["test_3"]["pos"])


def test_spring_graph_and_batches():
    d = dataset(system="spring", edge_prob=0.5, train=200)
    e = d.splits["train"]["edges"]
    assert (e == e.transpose(0, 2, 1)).all() and (np.diagonal(e, axis1=1, axis2=2) == 0).all()
    assert 0.4 < e.sum() / (200 * 30) < 0.6
    b = d.batch(np.random.default_rng(0), 5, window=3)
    assert b["pos"].shape == (5, 4, 6, 2) and b["mass"].shape == (5, 6) and b["edges"].shape == (5, 6, 6)
    first = d.splits["train"]["pos"][:, :-3]  # every window is a stretch of a trajectory
    assert all(any(np.array_equal(w[0], s) for s in first.reshape(-1, 6, 2)) for w in b["pos"])
