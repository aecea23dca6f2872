"""Dreamer actor-critic: lambda-returns, acting, where gradients flow in imagination and where they stop,
exact resume of model + agent, and a tiny learning check."""
import copy
import itertools
import sys
from dataclasses import replace
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from rssm_fakes import FakeReplay, collect

from wm.agents.actor_critic import ActorCritic, lambda_returns, replay_returns
from wm.models.rssm import RSSM

TINY_M = RSSM.Config(batch=4, length=8, deter=32, hidden=32, units=32, groups=4, classes=4, stoch=8)
TINY_A = ActorCritic.Config(horizon=5, units=32, layers=1)


def make(env_id="CartPole-v1", steps=200, latent="categorical", **agent_kw):
    env = gym.make(env_id)
    rep = FakeReplay(0)
    collect(env, rep, steps, seed=0)
    m = RSSM(replace(TINY_M, latent=latent), env.observation_space, env.action_space)
    a = ActorCritic(replace(TINY_A, **agent_kw), env.observation_space, env.action_space, m)
    return env, rep, m, a


def test_lambda_returns_by_hand():
    r = torch.tensor([[1.0], [2.0]])
    c = torch.tensor([[1.0], [0.0]])
    v = torch.tensor([[10.0], [20.0], [30.0]])
    g, lam = 0.5, 0.5
    R1 = 2.0 + 0.0
    R0 = 1.0 + g * 1.0 * ((1 - lam) * 20.0 + lam * R1)
    assert torch.allclose(lambda_returns(r, c, v, g, lam), torch.tensor([[R0], [R1]]))
    # lam = 0: one-step TD targets; lam = 1: discounted Monte Carlo with bootstrap at the end
    assert torch.allclose(lambda_returns(r, torch.ones(2, 1), v, 0.9, 0.0)[:, 0], torch.tensor([1 + 0.9 * 20, 2 + 0.9 * 30]))
    assert torch.allclose(lambda_returns(r, torch.ones(2, 1), v, 0.9, 1.0)[0, 0], torch.tensor(1 + 0.9 * 2 + 0.81 * 30))


def test_replay_returns_by_hand():
    """Real rewards and terminals along a sequence, bootstrapped from the imagined returns: lam = 1 sums the
    discounted real rewards to the end (or to a terminal, which stops bootstrapping); an episode end that is
    not terminal (truncation) bootstraps there in full; lam = 0 is one real reward plus the next boot."""
    K = 5
    r, boot = torch.ones(K, 1), torch.full((K, 1), 10.0)
    zeros = torch.zeros(K, 1)
    g = 0.9
    R = replay_returns(r, zeros, zeros, boot, g, 1.0)[:, 0]
    assert torch.allclose(R, torch.full((K - 1,), 10.0))  # 1 + 0.9 * 10 = 10 all the way back
    term = zeros.clone()
    term[3] = 1.0  # the episode ends at row 3 in a terminal state
    R = replay_returns(r, term, term, boot, g, 1.0)[:, 0]
    assert torch.allclose(R[:3], torch.tensor([1 + g + g * g, 1 + g, 1.0]))
    last = zeros.clone()
    last[3] = 1.0  # ... or truncated there: bootstrap from row 3's imagined return
    R = replay_returns(r, zeros, last, boot, g, 1.0)[:, 0]
    assert torch.allclose(R[2], torch.tensor(1 + g * 10.0))
    R = replay_returns(r, zeros, zeros, torch.arange(K, dtype=torch.float32)[:, None], g, 0.0)[:, 0]
    assert torch.allclose(R, 1 + g * torch.arange(1, K, dtype=torch.float32))


def test_replay_value_loss_teaches_the_critic_real_terminals():
    """With agent.replay_value the critic also learns from the real rows: on sequences that end in terminals
    it values the rows just before them below the rows far from them, which imagination alone (a continue
    head that has not learned those terminals) cannot teach it."""
    torch.manual_seed(0)
    _env, rep, m, a = make(steps=400, replay_value=1.0, starts=64)
    m.cont_net.requires_grad_(False)
    with torch.no_grad():  # a continue head that never predicts a terminal (the failure of issue 24)
        m.cont_net[-1].bias.fill_(20.0)
    for i in range(150):
        m.train_step(rep, i)
        stats = a.train_step(rep, i)
    assert np.isfinite(stats["agent/critic_loss"])
    batch = rep.sample_sequences(64, 8)
    post = m.infer(batch)
    value = a.value(m.feat({k: post.states[k] for k in ("deter", "stoch")})).detach()
    term = batch["is_terminal"].bool()
    before = torch.zeros_like(term)
    before[:, :-1] = term[:, 1:]  # the row just before a terminal one
    far = ~(term | before)
    far[:, :-1] &= ~before[:, 1:]
    assert before.any() and far.any()
    assert value[before].mean() < value[far].mean() - 0.3  # 0.66-1.2 over torch seeds 0-4; without: |gap| <= 0.1


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_act_shapes_and_state(env_id):
    env, _rep, _m, a = make(env_id)
    obs = np.stack([env.observation_space.sample() for _ in range(3)])
    act, state = a.act(obs, a.initial_state(3), np.array([True, True, True]), explore=True)
    assert act.shape == (3,) + env.action_space.shape
    assert all(env.action_space.contains(x.astype(env.action_space.dtype)) for x in act)
    _act2, state2 = a.act(obs, state, np.array([False, True, False]), explore=False)
    assert state2[0]["deter"].shape == (3, 32)
    assert not torch.allclose(state2[0]["deter"][0], state[0]["deter"][0])  # recurrent state advanced


def _grads(mod):
    return [p.grad for p in mod.parameters()]


def test_reinforce_gradients_stop_at_model():
    """Discrete actions: REINFORCE. The world model gets no gradient from the actor or critic losses, the
    imagined features carry no graph, and actor and critic both learn."""
    torch.manual_seed(0)
    _env, rep, m, a = make()
    m.train_step(rep, 0)
    m.opt.zero_grad(set_to_none=True)
    before = copy.deepcopy(m.state_dict())
    feats = a.imagine(m.posteriors.starts()[0])
    feats = feats[0]
    assert a.grad_mode == "reinforce" and not feats.requires_grad and feats.shape[0] == TINY_A.horizon + 1
    actor_before = [p.clone() for p in a.actor.parameters()]
    critic_before = [p.clone() for p in a.critic.parameters()]
    slow_before = [p.clone() for p in a.slow_critic.parameters()]
    out = a.train_step(rep, 1)
    assert all(g is None for g in _grads(m))
    after = m.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k != "_optimizer")
    assert any(not torch.equal(p, q) for p, q in zip(actor_before, a.actor.parameters()))
    assert any(not torch.equal(p, q) for p, q in zip(critic_before, a.critic.parameters()))
    assert any(not torch.equal(p, q) for p, q in zip(slow_before, a.slow_critic.parameters()))  # EMA moved
    assert all(not p.requires_grad for p in a.slow_critic.parameters())
    assert all(p.requires_grad for p in m.parameters())  # frozen only during imagination
    assert np.isfinite(out["agent/actor_loss"]) and np.isfinite(out["agent/critic_loss"])


def test_dynamics_gradients_flow_through_model_into_actor():
    """Continuous actions: the actor is trained by backpropagating returns through the learned dynamics;
    those gradients pass through the model's modules but never land on its parameters."""
    torch.manual_seed(0)
    _env, rep, m, a = make("Pendulum-v1", latent="gaussian")
    assert a.grad_mode == "dynamics"
    m.train_step(rep, 0)
    m.opt.zero_grad(set_to_none=True)
    start = m.posteriors.starts()[0]
    m.requires_grad_(False)
    feats, actions = a.imagine(start)[:2]
    assert feats.requires_grad and actions.requires_grad
    # the first imagined state is a function of the first action alone (through the dynamics)
    g = torch.autograd.grad(feats[1].sum(), list(a.actor.parameters()), retain_graph=True, allow_unused=True)
    assert any(x is not None and x.abs().sum() > 0 for x in g)
    # the return of imagined step 3 reaches actor parameters only through actions taken before it
    a.actor.zero_grad(set_to_none=True)
    m.reward(feats[3]).mean().sum().backward()
    m.requires_grad_(True)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in a.actor.parameters())
    assert all(p.grad is None for p in m.parameters())
    m.opt.zero_grad(set_to_none=True)
    a.train_step(rep, 1)
    assert all(p.grad is None for p in m.parameters())


def _constant_world(m):
    """Make the model's reward and continue heads constant (zero output weights), so neither passes any
    gradient back into the imagined features."""
    for net in (m.reward_net, m.cont_net):
        torch.nn.init.zeros_(net[-1].weight)


def test_dynamics_actor_gets_critic_gradient_under_constant_reward(monkeypatch):
    """Continuous actions, dynamics backprop (DreamerV1/V2): with a constant reward and continue the only
    signal about where the actions lead is the critic's value of the imagined states, so the actor's gradient
    must come through the bootstrap values. Meanwhile the actor's loss leaves no gradient on the critic."""
    torch.manual_seed(0)
    _env, rep, m, a = make("Pendulum-v1", latent="gaussian", entropy=0.0)
    _constant_world(m)
    torch.nn.init.normal_(a.critic[-1].weight)  # a critic with an opinion (the default starts at zero)
    seen = {}
    orig = a.actor_opt.step

    def spy():
        seen["actor"] = [p.grad.clone() for p in a.actor.parameters()]
        seen["critic"] = [p.grad for p in a.critic.parameters()]
        orig()

    monkeypatch.setattr(a.actor_opt, "step", spy)
    m.posteriors = m.infer(rep.sample_sequences(m.cfg.batch, m.cfg.length))  # imagine without an update
    out = a.train_step(rep, 0)
    assert out["agent/imag_reward"] == pytest.approx(0.0, abs=1e-6)  # the reward really is constant
    norm = torch.sqrt(sum((g ** 2).sum() for g in seen["actor"]))
    assert torch.isfinite(norm) and norm > 1e-4
    assert all(g is None for g in seen["critic"])


def test_dynamics_actor_gradient_follows_the_critic():
    """The same constant-reward world: flipping the sign of the critic's output flips the actor's gradient."""
    grads = []
    for sign in (1.0, -1.0):
        torch.manual_seed(0)
        _env, rep, m, a = make("Pendulum-v1", latent="gaussian", entropy=0.0, return_norm=False)
        _constant_world(m)
        torch.manual_seed(1)
        torch.nn.init.normal_(a.critic[-1].weight)
        with torch.no_grad():
            a.critic[-1].weight.mul_(sign)
            a.slow_critic.load_state_dict(a.critic.state_dict())
        torch.manual_seed(2)
        a.actor_opt.step = lambda: None  # keep the gradient, skip the update
        m.posteriors = m.infer(rep.sample_sequences(m.cfg.batch, m.cfg.length))
        a.train_step(rep, 0)
        grads.append(torch.cat([p.grad.flatten() for p in a.actor.parameters()]))
    assert grads[0].norm() > 1e-4
    assert torch.allclose(grads[0], -grads[1], atol=1e-6 + 1e-4 * grads[0].abs().max().item())


@pytest.mark.parametrize("actor_grad", ["dynamics", "reinforce"])
def test_imagined_actions_stay_in_the_box(actor_grad):
    """Imagined continuous actions are clamped to [-1, 1] like the real ones (a Normal with std ~0.9 around
    a tanh mean samples outside it about a quarter of the time); in dynamics mode the clamp is
    straight-through, so a clamped action still passes gradient to the actor."""
    torch.manual_seed(0)
    _env, rep, m, a = make("Pendulum-v1", latent="gaussian", actor_grad=actor_grad)
    m.train_step(rep, 0)
    start = m.posteriors.starts()[0]
    m.requires_grad_(False)
    out = a.imagine(start)
    m.requires_grad_(True)
    actions = out[1]
    assert actions.shape[-1] == 1 and actions.abs().max() <= 1.0
    samples = out[2]  # the policy's samples before the clamp
    assert actions.shape == samples.shape
    outside = samples.abs() > 1
    assert outside.any()  # the policy did sample outside the box, so the clamp was exercised
    assert torch.equal(actions[~outside], samples[~outside])
    if actor_grad == "dynamics":
        g = torch.autograd.grad(actions[outside].sum(), list(a.actor.parameters()), allow_unused=True)
        assert any(x is not None and x.abs().sum() > 0 for x in g)
    out = a.train_step(rep, 1)
    assert np.isfinite(out["agent/actor_loss"])


def test_critic_loss_does_not_reach_actor(monkeypatch):
    torch.manual_seed(0)
    _env, rep, m, a = make("Pendulum-v1", latent="gaussian")
    m.train_step(rep, 0)
    seen = {}
    orig = a.critic_opt.step

    def spy():
        seen["actor"] = [p.grad for p in a.actor.parameters()]
        orig()

    monkeypatch.setattr(a.critic_opt, "step", spy)
    a.actor_opt.step = lambda: a.actor.zero_grad(set_to_none=True)  # clear actor grads after its update
    a.train_step(rep, 1)
    assert all(g is None for g in seen["actor"])


def test_resume_exact():
    """Model + agent + RNG restored from state_dicts continue bit-identically."""
    torch.manual_seed(0)
    env, rep, m, a = make(steps=150)
    for i in range(3):
        m.train_step(rep, i)
        a.train_step(rep, i)
    sd_m, sd_a = copy.deepcopy(m.state_dict()), copy.deepcopy(a.state_dict())
    rng, nrng = torch.get_rng_state(), copy.deepcopy(rep.rng.bit_generator.state)

    def cont(model, agent):
        outs = []
        for i in range(3):
            outs.append((model.train_step(rep, i), agent.train_step(rep, i)))
        obs = np.zeros((2, 4), np.float32)
        act, _ = agent.act(obs, None, np.array([True, True]), explore=True)
        return outs, act

    ref, ref_act = cont(m, a)
    m2 = RSSM(replace(TINY_M), env.observation_space, env.action_space)
    a2 = ActorCritic(replace(TINY_A), env.observation_space, env.action_space, m2)
    m2.load_state_dict(sd_m)
    a2.load_state_dict(sd_a)
    torch.set_rng_state(rng)
    rep.rng.bit_generator.state = nrng
    got, got_act = cont(m2, a2)
    assert ref == got and np.array_equal(ref_act, got_act)


def test_tiny_learning_check():
    """Imagination learns the value of staying alive: on CartPole data the reward head learns the +1 per
    step, imagined lambda-returns approach the horizon, and the critic's value rises steadily from zero."""
    torch.manual_seed(0)
    _env, rep, m, a = make(steps=600, critic_lr=3e-3, actor_lr=1e-3, slow_decay=0.5)
    for g in m.opt.param_groups:
        g["lr"] = 3e-3
    values = []
    for i in range(60):
        m.train_step(rep, i)
        out = a.train_step(rep, i)
        values.append(out["agent/value"])
    assert abs(values[0]) < 1e-3  # zero-initialised critic
    assert out["agent/imag_reward"] > 0.6  # CartPole pays 1 per step
    assert out["agent/imag_return"] > 0.4 * TINY_A.horizon
    checkpoints = values[10::10] + [values[-1]]
    assert all(b > a_ for a_, b in itertools.pairwise(checkpoints)) and values[-1] > 0.1


def test_dreamer_run_resumes_exactly(tmp_path):
    """A Dreamer run stopped at a checkpoint and resumed logs exactly what an uninterrupted run logs."""
    from tests.conftest import metrics, summary, train

    run = ["model=rssm", "agent=actor_critic", "model.batch=4", "model.length=8", "model.deter=16",
           "model.hidden=16", "model.units=16", "model.groups=4", "model.classes=4", "agent.units=16",
           "agent.horizon=4", "agent.starts=16", "agent.prefill=40", "model.update.start=40",
           "model.update.every=8", "eval.every=40",
           "eval.episodes=1", "eval.envs=1", "checkpoint.every=40", "log_every=40"]
    env = {"OMP_NUM_THREADS": "1"}
    full, part = tmp_path / "full", tmp_path / "part"
    assert train(full, *run, "total_steps=160", env=env).returncode == 0
    assert train(part, *run, "total_steps=80", env=env).returncode == 0  # last checkpoint at 80
    p = train(part, *run, "total_steps=160", "resume=true", env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    drop = lambda rows: [{k: v for k, v in r.items() if k != "time"} for r in rows]
    a, b = drop(metrics(full)), drop(metrics(part))
    assert any("agent/actor_loss" in r for r in a) and a == b
    assert summary(part)["eval/return_mean"] == summary(full)["eval/return_mean"]
