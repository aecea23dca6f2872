"""RSSM world model: shapes and losses for both latent kinds, resets at episode starts, the KL split,
symlog/two-hot, pixel encoder/decoder and a small learning check."""
import sys
from dataclasses import replace
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from rssm_fakes import FakeReplay, collect

from wm.models import dists
from wm.models.nets import NormGRUCell
from wm.models.rssm import RSSM

TINY = RSSM.Config(batch=4, length=8, deter=32, hidden=32, units=32, groups=4, classes=4, stoch=8, cnn_depth=4)


def cartpole_replay(steps=300, seed=0):
    env = gym.make("CartPole-v1")
    rep = FakeReplay(seed)
    collect(env, rep, steps, seed=seed)
    return env, rep


@pytest.mark.parametrize(("latent", "gru"), [("categorical", "torch"), ("gaussian", "torch"), ("categorical", "norm")])
def test_shapes_and_losses(latent, gru):
    torch.manual_seed(0)
    env, rep = cartpole_replay()
    m = RSSM(replace(TINY, latent=latent, gru=gru), env.observation_space, env.action_space)
    batch = rep.sample_sequences(4, 8)
    loss, metrics, post = m.loss(batch)
    S = 16 if latent == "categorical" else 8
    assert post["deter"].shape == (4, 8, 32) and post["stoch"].shape == (4, 8, S)
    assert m.feat({k: v[:, 0] for k, v in post.items()}).shape == (4, 32 + S)
    assert loss.dim() == 0 and torch.isfinite(loss)
    for k in ("model/obs_loss", "model/reward_loss", "model/cont_loss", "model/kl"):
        assert np.isfinite(metrics[k])
    assert metrics["model/kl"] >= 0
    if latent == "categorical":  # one-hot samples per group
        z = post["stoch"].reshape(4, 8, 4, 4)
        assert torch.allclose(z.sum(-1), torch.ones(4, 8, 4))
    out = m.train_step(rep, 0)
    post = m.posteriors
    assert post.states["deter"].shape == (4, 8, 32) and not post.states["deter"].requires_grad
    start, cont = post.starts()
    assert start["deter"].shape == (32, 32) and cont.shape == (32,)
    assert out["model/grad_norm"] > 0


def test_norm_gru_cell_is_dreamers_layernorm_gru():
    """h' = u * tanh(r * c) + (1 - u) * h with [r, c, u] = LayerNorm(W [x, h]), u = sigmoid(. - 1)."""
    torch.manual_seed(0)
    cell = NormGRUCell(3, 4)
    x, h = torch.randn(5, 3), torch.randn(5, 4)
    r, c, u = torch.nn.functional.layer_norm(torch.cat([x, h], -1) @ cell.linear.weight.T, (12,)).chunk(3, -1)
    u = torch.sigmoid(u - 1)
    assert torch.allclose(cell(x, h), u * torch.tanh(torch.sigmoid(r) * c) + (1 - u) * h, atol=1e-6)
    torch.nn.init.zeros_(cell.linear.weight)  # gates at their biases: the state decays by sigmoid(-1)
    assert torch.allclose(cell(x, h), (1 - torch.sigmoid(torch.tensor(-1.0))) * h)


def test_is_first_resets_state():
    torch.manual_seed(0)
    env, _ = cartpole_replay()
    m = RSSM(replace(TINY, latent="gaussian"), env.observation_space, env.action_space)
    B, L, E = 2, 6, 32
    embed = torch.randn(B, L, E)
    embed[1, :3] = torch.randn(3, E)  # different history before the reset at t=3
    action = torch.randn(B, L, 2)
    is_first = torch.zeros(B, L)
    is_first[:, 3] = 1
    embed[1, 3:] = embed[0, 3:]
    action[1, 3:] = action[0, 3:]
    post = m.observe(embed, action, is_first)
    assert not torch.allclose(post["deter"][0, 2], post["deter"][1, 2])
    assert torch.allclose(post["deter"][0, 3], post["deter"][1, 3])  # history before is_first forgotten
    assert torch.allclose(post["mean"][0, 3], post["mean"][1, 3])


@pytest.mark.parametrize("latent", ["categorical", "gaussian"])
def test_kl_balancing_gradients(latent):
    """The dynamics term trains only the prior, the representation term only the posterior."""
    env, _ = cartpole_replay()
    m = RSSM(replace(TINY, latent=latent), env.observation_space, env.action_space)
    out_post = torch.randn(5, 16, requires_grad=True)  # 4x4 categorical logits or 8 means + 8 stds
    out_prior = torch.randn(5, 16, requires_grad=True)
    post, prior = m._stats(out_post), m._stats(out_prior)
    dyn = m.kl(post, prior, sg_post=True, sg_prior=False).sum()
    assert dyn.item() > 0
    g_post, g_prior = torch.autograd.grad(dyn, [out_post, out_prior], allow_unused=True)
    assert g_post is None and g_prior.abs().sum() > 0
    rep = m.kl(post, prior, sg_post=False, sg_prior=True).sum()
    g_post, g_prior = torch.autograd.grad(rep, [out_post, out_prior], allow_unused=True)
    assert g_prior is None and g_post.abs().sum() > 0
    assert torch.allclose(m.kl(post, post, False, False), torch.zeros(5), atol=1e-5)


def test_free_bits_clip():
    env, rep = cartpole_replay()
    cfg = replace(TINY, free_bits=1e6, obs_scale=0, reward_scale=0, cont_scale=0)
    m = RSSM(cfg, env.observation_space, env.action_space)
    loss, _, _ = m.loss(rep.sample_sequences(4, 8))
    loss.backward()  # every KL term is under the free bits: no gradient at all
    assert all(p.grad is None or p.grad.abs().max() == 0 for p in m.parameters())


def test_symlog_twohot():
    x = torch.tensor([-1000.0, -3.0, -0.5, 0.0, 0.7, 12.0, 5000.0])
    assert torch.allclose(dists.symexp(dists.symlog(x)), x, rtol=1e-4)
    bins = torch.linspace(-20, 20, 255)
    w = dists.twohot(dists.symlog(x), bins)
    assert torch.allclose(w.sum(-1), torch.ones(len(x)))
    assert torch.allclose((w * bins).sum(-1), dists.symlog(x), atol=1e-5)
    logits = torch.log(w + 1e-12)
    assert torch.allclose(dists.TwoHotSymlog(logits).mean(), x, rtol=1e-3)
    p = dists.unimix_logits(torch.tensor([[10.0, -10.0]]), 0.1).exp()
    assert torch.allclose(p.sum(-1), torch.ones(1)) and p.min() >= 0.05 - 1e-6


@pytest.mark.parametrize("latent", ["categorical", "gaussian"])
def test_pixels_shapes_and_video(tmp_path, latent):
    torch.manual_seed(0)
    obs_space = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    act_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    m = RSSM(replace(TINY, latent=latent), obs_space, act_space)
    rep = FakeReplay(0)
    rng = np.random.default_rng(0)
    for t in range(20):
        rep.add(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), rng.uniform(-1, 1, 3).astype(np.float32),
                1.0, t % 10 == 0, False, False)
    out = m.train_step(rep, 0)
    assert np.isfinite(out["model/loss"])
    vid = m.open_loop(m.posteriors.batch, context=3, n=2)
    assert vid.shape == (8, 2 * 64, 3 * 64, 3) and vid.dtype == np.uint8
    m.artifacts(tmp_path)
    assert list((tmp_path / "videos").iterdir())


def test_optimizer_in_state_dict():
    env, rep = cartpole_replay()
    m = RSSM(TINY, env.observation_space, env.action_space)
    m.train_step(rep, 0)
    sd = m.state_dict()
    assert "_optimizer" in sd and sd["_optimizer"]["state"]
    m2 = RSSM(TINY, env.observation_space, env.action_space)
    m2.load_state_dict(sd)
    assert m2.opt.state_dict()["state"][0]["step"] == 1


@pytest.mark.parametrize("latent", ["categorical", "gaussian"])
def test_world_model_learns_cartpole(latent):
    """Tiny learning check: on random CartPole data the reconstruction and continue losses fall a lot."""
    torch.manual_seed(1)
    env, rep = cartpole_replay(600, seed=1)
    cfg = replace(TINY, latent=latent, batch=8, length=16, lr=3e-3)
    m = RSSM(cfg, env.observation_space, env.action_space)
    first = m.train_step(rep, 0)
    for i in range(80):
        last = m.train_step(rep, i)
    assert last["model/obs_loss"] < 0.3 * first["model/obs_loss"]
    assert last["model/reward_error"] < 0.5 * first["model/reward_error"]


# ----- end to end through train.py (pixel path) --------------------------------------------------------
TINY_RUN = ["model=rssm", "agent=actor_critic", "model.batch=2", "model.length=8", "model.deter=16",
            "model.hidden=16", "model.units=16", "model.groups=4", "model.classes=4", "model.cnn_depth=4",
            "agent.units=16", "agent.horizon=3", "agent.starts=8", "agent.prefill=20", "model.update.start=20",
            "model.update.every=10", "eval.every=40",
            "eval.episodes=1", "eval.envs=1", "checkpoint.every=40", "log_every=20", "total_steps=80",
            "+env.max_episode_steps=25", "env.num_envs=2"]


@pytest.mark.parametrize("env", ["cartpole_pixels", "carracing"])
def test_pixel_envs_end_to_end(tmp_path, env):
    pytest.importorskip("cv2")
    from tests.conftest import metrics, summary, train

    run = tmp_path / env
    proc = train(run, f"env={env}", *TINY_RUN, env={"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert summary(run)["status"] == "completed"
    rows = metrics(run)
    assert any("model/kl" in r for r in rows) and any("agent/imag_return" in r for r in rows)
    assert any("eval/return_mean" in r for r in rows)
    assert list((run / "videos").glob("open_loop_*"))  # real vs imagined frames
    assert any("model/open_loop" in r for r in rows)  # registered with the logger (and so W&B)


def test_terminal_weight_scales_only_terminal_rows():
    """model.terminal_weight multiplies the continue loss of terminal rows and leaves the others alone."""
    torch.manual_seed(0)
    env, rep = cartpole_replay()
    batch = rep.sample_sequences(4, 8)
    batch["is_terminal"][:] = False
    batch["is_terminal"][0, -1] = batch["is_terminal"][2, 3] = True
    models = {w: RSSM(replace(TINY, terminal_weight=w), env.observation_space, env.action_space) for w in (1.0, 3.0, 5.0)}
    for m in models.values():
        m.load_state_dict(models[1.0].state_dict())

    def cont_loss(w, b):
        torch.manual_seed(1)  # the same posterior samples for every weight
        return models[w].loss(b)[1]["model/cont_loss"]

    c1, c3, c5 = (cont_loss(w, batch) for w in (1.0, 3.0, 5.0))
    assert c5 > c3 > c1
    assert c5 - c1 == pytest.approx(2 * (c3 - c1), rel=1e-4)  # linear in (w - 1): terminal rows only
    batch["is_terminal"][:] = False
    assert cont_loss(5.0, batch) == pytest.approx(cont_loss(1.0, batch), rel=1e-6)
