"""PlaNet CEM planner: finds the best action sequence of a known latent model, discrete and continuous,
acts with the right shapes and explores when asked."""
from dataclasses import replace
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import torch

from wm.agents.cem import CEM
from wm.models.rssm import RSSM

TINY_M = RSSM.Config(deter=8, hidden=8, units=8, groups=2, classes=2, stoch=4, latent="gaussian")


def planner(act_space, **kw):
    obs_space = gym.spaces.Box(-1, 1, (3,), np.float32)
    m = RSSM(TINY_M, obs_space, act_space)
    return m, CEM(replace(CEM.Config(), **kw), obs_space, act_space, m)


def known_dynamics(m, reward_of_action):
    """Replace the learned dynamics by a known one: deter[:, 0] accumulates reward_of_action(a)."""

    def img_step(state, action, sample=True):
        deter = state["deter"].clone()
        deter[:, 0] += reward_of_action(action)
        return {"deter": deter, "stoch": state["stoch"]}

    m.img_step = img_step
    m.reward = lambda f: SimpleNamespace(mean=lambda: f[:, 0] - 0)  # cumulative: favours early gains too
    m.cont = lambda f: SimpleNamespace(probs=torch.ones(f.shape[0]))


def test_discrete_plan_finds_best_action():
    torch.manual_seed(0)
    m, cem = planner(gym.spaces.Discrete(3), candidates=64, iterations=4, top_k=8, horizon=5)
    known_dynamics(m, lambda a: a[:, 2] - a[:, 0])  # action 2 pays, action 0 costs
    a = cem.plan(m.initial(4))
    assert a.shape == (4, 3) and torch.equal(a.argmax(-1), torch.full((4,), 2))


def test_continuous_plan_converges_to_optimum():
    torch.manual_seed(0)
    m, cem = planner(gym.spaces.Box(-2.0, 2.0, (2,), np.float32), candidates=200, iterations=6, top_k=20,
                     horizon=4)
    target = torch.tensor([0.5, -0.25])
    known_dynamics(m, lambda a: -((a - target) ** 2).sum(-1))
    a = cem.plan(m.initial(2))
    assert torch.allclose(a, target.expand(2, 2), atol=0.1)


def test_act_shapes_and_exploration():
    torch.manual_seed(0)
    _m, cem = planner(gym.spaces.Box(-2.0, 2.0, (2,), np.float32), candidates=16, iterations=2, top_k=4)
    obs = np.zeros((3, 3), np.float32)
    greedy, state = cem.act(obs, None, np.ones(3, bool), explore=False)
    assert greedy.shape == (3, 2) and np.all(np.abs(greedy) <= 2.0)
    assert state[0]["deter"].shape == (3, 8)
    _m, cem = planner(gym.spaces.Discrete(4), candidates=16, iterations=2, top_k=4, explore_eps=1.0)
    acts = np.concatenate([cem.act(obs, None, np.ones(3, bool), explore=True)[0] for _ in range(10)])
    assert acts.dtype.kind == "i" and len(set(acts.tolist())) > 1  # eps=1: uniform random actions
