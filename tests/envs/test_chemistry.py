"""The chemistry world: mechanisms follow the graph, the derived lagged graph on hand-checked cases, the env API."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import wm.envs  # noqa: F401  (registers wm/Chemistry-v0)
from wm.envs.chemistry import ChemistryWorld, WorldSpec


@pytest.mark.parametrize("graph", ["chain", "collider", "full", "random"])
def test_setting_an_object_changes_only_its_descendants(graph):
    w = ChemistryWorld(WorldSpec(objects=6, graph=graph, noise=0.3))
    rng = np.random.default_rng(0)
    col, dis = w.sample_state(rng, 3000)
    act = rng.integers(0, w.actions, 3000)
    new, _ = w.step(col, dis, act, rng)
    obj = act // w.c
    assert (new[np.arange(3000), obj] == act % w.c).all()  # the action sets its object
    kept = ~w.descendants[obj]  # (B, n): objects that are not the set object or below it
    assert (new[kept] == col[kept]).all()
    below = w.descendants[obj] & (np.arange(w.n)[None] != obj[:, None])
    if below.any():  # and the descendants are recomputed: some of them change
        assert (new[below] != col[below]).any()


@pytest.mark.parametrize("graph,graph_seed", [("chain", 0), ("random", 0), ("random", 5)])
def test_changing_a_non_ancestor_changes_nothing(graph, graph_seed):
    """Setting object 0 recomputes its descendants j; changing the colours of objects that are not ancestors of
    j (nor j) leaves j's new colour as it was."""
    w = ChemistryWorld(WorldSpec(objects=6, graph=graph, edge_prob=0.5, graph_seed=graph_seed))
    rng = np.random.default_rng(1)
    col, dis = w.sample_state(rng, 500)
    act = np.full(500, 1)  # object 0 set to colour 1
    new, _ = w.step(col, dis, act, np.random.default_rng(2))
    checked = 0
    for j in range(1, w.n):
        if not w.descendants[0, j]:
            continue
        others = [k for k in range(1, w.n) if not w.descendants[k, j]]
        col2 = col.copy()
        col2[:, others] = (col2[:, others] + 1) % w.c
        new2, _ = w.step(col2, dis, act, np.random.default_rng(2))
        assert (new2[:, j] == new[:, j]).all()
        checked += bool(others)
    assert checked > 0


def test_lagged_graph_by_hand():
    n, d = 4, 1
    names = [f"c{i}" for i in range(n)] + ["x0"]
    chain = ChemistryWorld(WorldSpec(objects=n, graph="chain", distractors=d)).lagged_graph()
    # chain: an object keeps its colour or is overwritten from the action's object down; the last object is
    # always overwritten (every action is on it or an ancestor), so its own colour never matters
    want = np.zeros((n + d + 1, n + d), bool)
    for i in range(n - 1):
        want[i, i] = True
    want[n, n] = True  # the distractor follows itself
    want[n + d, :n] = True  # the action reaches every object
    assert (chain == want).all(), (names, chain.astype(int))
    collider = ChemistryWorld(WorldSpec(objects=n, graph="collider", distractors=d)).lagged_graph()
    want_c = want.copy()
    want_c[: n - 1, n - 1] = True  # the collider reads its parents' (kept) colours
    assert (collider == want_c).all()
    full = ChemistryWorld(WorldSpec(objects=3, graph="full", distractors=0)).lagged_graph()
    # full, 3 objects: c2 = f(c0, c1); set c1 -> c2 reads the kept c0; set c0 -> c1, c2 recomputed from it;
    # so c0 -> c2 is an edge but c1 -> c2 is not (c1 is either set or recomputed before c2 reads it)
    assert full[0, 2] and not full[1, 2] and not full[0, 1] and not full[2, 2]


def test_intervention_replaces_one_mechanism():
    base = ChemistryWorld(WorldSpec(objects=5, graph="collider"))
    hit = ChemistryWorld(WorldSpec(objects=5, graph="collider", intervene=4))
    for j in range(4):
        assert base.mechanisms[j] is hit.mechanisms[j] is None  # roots have none
    assert not np.allclose(base.mechanisms[4][0], hit.mechanisms[4][0])
    with pytest.raises(ValueError, match="intervene must be an object with parents"):
        ChemistryWorld(WorldSpec(objects=5, graph="collider", intervene=0))


def test_env_passes_check_env_and_rewards_matches():
    env = gym.make("wm/Chemistry-v0", objects=4, graph="collider", max_episode_steps=4)
    check_env(env.unwrapped, skip_render_check=True)
    obs, info = env.reset(seed=3)
    assert obs.shape == (4 * 5 + 4,) and info["target"].shape == (4,)
    w = env.unwrapped.world
    colours, _ = w.split(obs[None])
    assert (colours[0] == env.unwrapped.colours).all()
    _, reward, term, _, info = env.step(0)
    assert reward == info["matched"] / 4 and not term
    assert env.render().shape == (32, 64, 3)
