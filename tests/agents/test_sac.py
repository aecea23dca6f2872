"""SAC: critic, actor and temperature losses on a hand-checked case; target smoothing; actions inside the
Box bounds; MBPO's rollouts through a model env's step and the real/model batch mix."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from wm.agents.sac import SAC, SACConfig
from wm.models.ensemble import MBPOConfig, RolloutSchedule

OBS = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
ACT = gym.spaces.Box(np.array([-2.0], np.float32), np.array([4.0], np.float32))  # scale 3, bias 1


class OneBatch:
    def __init__(self, batch):
        self.batch = batch

    def sample_transitions(self, n):
        return {k: v[:n] for k, v in self.batch.items()}


def constant_agent(**kw) -> SAC:
    """Critics output constants (q1 = 3, q2 = 5, targets too); the actor's mean is 0 with std e^-20."""
    torch.manual_seed(0)
    agent = SAC(SACConfig(hidden=[4], batch_size=2, gamma=0.5, init_alpha=0.1, **kw), OBS, ACT)
    with torch.no_grad():
        for p in [*agent.q.parameters(), *agent.actor.parameters()]:
            p.zero_()
        agent.q.biases[-1][:] = torch.tensor([3.0, 5.0])[:, None, None]
        agent.actor.net[-1].bias[:] = torch.tensor([0.0, -20.0])  # mean 0, log_std -20
        agent.q_target.load_state_dict(agent.q.state_dict())
    return agent


def batch():
    return {"obs": torch.zeros(2, 3), "action": torch.tensor([[1.0], [4.0]]), "reward": torch.tensor([1.0, 2.0]),
            "next_obs": torch.ones(2, 3), "terminal": torch.tensor([False, True])}


def test_losses_on_a_hand_checked_case():
    agent = constant_agent()
    torch.manual_seed(1)
    eps_next, eps_now = torch.randn(2), torch.randn(2)  # the two policy samples the update will draw
    torch.manual_seed(1)
    out = agent.train_step(OneBatch(batch()), 0)
    # u = 0 + e^-20 eps, so tanh(u) = 0 to float precision and log(1 - tanh(u)^2) = 0:
    # log pi = log N(u; 0, e^-20) = 20 - log(2 pi)/2 - eps^2/2
    logp_next = [20.0 - 0.5 * math.log(2 * math.pi) - e.item() ** 2 / 2 for e in eps_next]
    logp_now = [20.0 - 0.5 * math.log(2 * math.pi) - e.item() ** 2 / 2 for e in eps_now]
    next_v = min(3.0, 5.0) - 0.1 * logp_next[0]                # soft value of the first next state
    target = [1.0 + 0.5 * next_v, 2.0]                         # the second transition is terminal
    assert out["train/q1_loss"] == pytest.approx(((3 - target[0]) ** 2 + (3 - target[1]) ** 2) / 2, rel=1e-4)
    assert out["train/q2_loss"] == pytest.approx(((5 - target[0]) ** 2 + (5 - target[1]) ** 2) / 2, rel=1e-4)
    mean_logp = sum(logp_now) / 2
    # one backward pass: the actor is scored by the critics as they were before this step (min(3, 5) = 3)
    assert out["train/actor_loss"] == pytest.approx(0.1 * mean_logp - 3.0, rel=1e-6)
    # temperature loss -log(alpha) (log pi + target entropy), target entropy -|A| = -1
    assert out["train/alpha_loss"] == pytest.approx(-math.log(0.1) * (mean_logp - 1.0), rel=1e-4)
    assert out["train/entropy"] == pytest.approx(-mean_logp, rel=1e-4)
    assert out["train/alpha"] > 0.1  # entropy (about -19) is below its target (-1): the temperature rises


def test_the_actor_loss_reaches_the_actor_but_not_the_critics():
    agent = constant_agent()
    obs = torch.randn(4, 3)
    action, logp = agent.actor(obs)
    (agent.q(obs, action, frozen=True).min(0).values - 0.1 * logp).mean().backward()
    assert all(p.grad is None for p in agent.q.parameters())
    assert all(p.grad is not None for p in agent.actor.parameters())


def test_targets_are_polyak_averaged():
    agent = constant_agent(tau=0.25)
    before = [p.clone() for p in agent.q_target.parameters()]
    agent.train_step(OneBatch(batch()), 0)
    for old, new, online in zip(before, agent.q_target.parameters(), agent.q.parameters()):
        assert torch.allclose(new, 0.75 * old + 0.25 * online)


def test_actions_lie_in_the_box_and_evaluation_is_deterministic():
    torch.manual_seed(0)
    agent = SAC(SACConfig(hidden=[16]), OBS, ACT)
    obs = np.random.default_rng(0).normal(size=(64, 3)) * 10
    a, _ = agent.act(obs, None, np.ones(64, bool), explore=True)
    assert a.shape == (64, 1) and a.dtype == np.float32 and (a >= -2).all() and (a <= 4).all()
    assert a.std() > 0.1
    d1, _ = agent.act(obs, None, np.ones(64, bool), explore=False)
    d2, _ = agent.act(obs, None, np.ones(64, bool), explore=False)
    assert np.array_equal(d1, d2)
    assert torch.allclose(agent.from_env(torch.as_tensor(a)), agent.from_env(agent.to_env(agent.from_env(
        torch.as_tensor(a)))))


class FakeModelEnv:
    """A model env in MBPO's shape: every imagined step lands on obs 7, reward 1, never terminal."""

    def __init__(self, rollout_batch_size: int, length: int):
        self.cfg = MBPOConfig(rollout_batch_size=rollout_batch_size, rollout=RolloutSchedule(0, 1, length, length))
        self.obs_dim, self.act_dim, self.device = 3, 1, torch.device("cpu")
        self.rng = np.random.default_rng(0)
        self.calls = []

    def step(self, obs, action, deterministic=False):
        self.calls.append((obs.clone(), action.clone()))
        n = len(obs)
        return torch.full((n, 3), 7.0), torch.ones(n), torch.zeros(n, dtype=torch.bool)


class AllStates(OneBatch):
    def all_transitions(self):
        return self.batch


def test_rollouts_act_with_the_policy_through_the_model_step():
    model = FakeModelEnv(rollout_batch_size=5, length=2)
    agent = SAC(SACConfig(hidden=[8]), OBS, ACT, model=model)
    starts = torch.arange(12.0).reshape(4, 3)
    stats = agent.after_model_update(AllStates({"obs": starts}), step=0)
    assert stats["model/rollout_length"] == 2 and stats["model/rollout_transitions"] == 10
    (obs0, act0), (obs1, _) = model.calls
    assert all(any(torch.equal(o, s) for s in starts) for o in obs0)  # k=1 starts at real states
    assert (obs1 == 7.0).all()  # k=2 continues from the model's prediction
    assert act0.shape == (5, 1) and (act0 >= -2).all() and (act0 <= 4).all()  # the policy, in env units
    assert len(agent.rollouts.buffer) == 10
    clone = SAC(SACConfig(hidden=[8]), OBS, ACT, model=FakeModelEnv(rollout_batch_size=5, length=2))
    clone.load_state_dict(agent.state_dict())  # the model buffer is checkpointed with the agent
    assert torch.equal(clone.rollouts.buffer.data["obs"], agent.rollouts.buffer.data["obs"])


def test_batches_mix_real_and_model_transitions_at_real_ratio():
    model = FakeModelEnv(rollout_batch_size=10, length=1)
    agent = SAC(SACConfig(hidden=[8], batch_size=8, real_ratio=0.25), OBS, ACT, model=model)
    real = {k: v.repeat(4, *([1] * (v.dim() - 1))) for k, v in batch().items()}
    assert int((agent.batch(OneBatch(real))["next_obs"][:, 0] == 7.0).sum()) == 0  # nothing imagined: all real
    agent.after_model_update(AllStates(real), step=0)
    b = agent.batch(OneBatch(real))
    assert len(b["obs"]) == 8 and int((b["next_obs"][:, 0] == 7.0).sum()) == 6  # 2 real + 6 imagined
