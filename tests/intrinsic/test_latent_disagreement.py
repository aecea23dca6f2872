"""Plan2Explore latent disagreement for Dreamer (wm/intrinsic/latent_disagreement.py): the ensemble
disagrees more on latents it has not trained on, the world model gets no gradient from it, the bonus is
normalised as configured, a short `model=rssm agent=actor_critic intrinsic=disagreement` run logs the
intrinsic keys, a run resumed from its checkpoint ends with the same ensemble as an uninterrupted one, and
bad combinations are one-line errors."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from tests.conftest import compose_cfg, metrics, summary, train
from wm import checkpoint
from wm.errors import ConfigError
from wm.intrinsic.latent_disagreement import LatentDisagreement, LatentDisagreementConfig, LatentNoIntrinsic
from wm.models.rssm import RSSM
from wm.run import execute
from wm.validate import validate

OBS = gym.spaces.Box(0.0, 1.0, (2,), np.float32)
ACT = gym.spaces.Discrete(4)


def small_rssm() -> RSSM:
    cfg = RSSM.Config(deter=32, hidden=32, groups=4, classes=4, units=32)
    return RSSM(cfg, OBS, ACT, "cpu")


def sequences(rng: np.random.Generator, B: int = 8, L: int = 16) -> dict[str, torch.Tensor]:
    is_first = np.zeros((B, L), bool)
    is_first[:, 0] = True
    return {"obs": torch.as_tensor(rng.uniform(0, 1, (B, L, 2)).astype(np.float32)),
            "action": torch.as_tensor(rng.integers(4, size=(B, L))), "reward": torch.zeros(B, L),
            "is_first": torch.as_tensor(is_first), "is_terminal": torch.zeros(B, L, dtype=torch.bool)}


def module(model: RSSM, **kw) -> LatentDisagreement:
    m = LatentDisagreement(LatentDisagreementConfig(**{"hidden": [64], "lr": 3e-3, **kw}), OBS, ACT)
    m.bind(model)
    return m


def test_disagreement_is_higher_on_unseen_latents_than_on_trained_ones():
    torch.manual_seed(0)
    model, rng = small_rssm(), np.random.default_rng(0)
    p2e = module(model)
    batch = sequences(rng)
    with torch.no_grad():
        _, _, post = model.loss(batch)
    feat, action = model.feat(post), model.encode_action(batch["action"])
    seen = lambda: p2e.disagreement(feat[:, :-1], action[:, 1:]).mean().item()
    before = seen()
    for _ in range(300):
        p2e.train_on(model, post, batch)
    # held out: latents the world model never produced (random GRU states, random one-hot classes)
    unseen_feat = torch.cat([torch.randn(2000, model.cfg.deter),
                             torch.nn.functional.one_hot(torch.randint(4, (2000, 4)), 4).flatten(1).float()], -1)
    unseen_action = torch.nn.functional.one_hot(torch.randint(4, (2000,)), 4).float()
    unseen = p2e.disagreement(unseen_feat, unseen_action).mean().item()
    assert seen() < 0.2 * before  # the members agree where they were trained
    assert unseen > 10 * seen()


def test_world_model_gets_no_gradient_from_the_ensemble_loss():
    torch.manual_seed(1)
    model, rng = small_rssm(), np.random.default_rng(1)
    p2e = module(model, target="embed")
    batch = sequences(rng)
    _, _, post = model.loss(batch)  # states that still carry the world model's graph
    assert post["stoch"].requires_grad
    members = [p.detach().clone() for p in p2e.models.parameters()]
    p2e.train_on(model, post, batch)
    assert all(p.grad is None for p in model.parameters())
    assert not all(torch.equal(a, b) for a, b in zip(members, p2e.models.parameters()))  # the ensemble learned
    assert "intrinsic/loss" in p2e.stats


@pytest.mark.parametrize("normalize", ["std", "none"])
def test_imagined_bonus_is_scaled_and_normalised_as_configured(normalize):
    torch.manual_seed(2)
    model = small_rssm()
    p2e = module(model, scale=0.5, normalize=normalize)
    feat, action = torch.randn(15, 64, model.feat_dim), torch.nn.functional.one_hot(torch.randint(4, (15, 64)), 4).float()
    raw = p2e.disagreement(feat, action)
    bonus = p2e.imagined_bonus(feat, action)
    assert bonus.shape == (15, 64) and not bonus.requires_grad
    expected = 0.5 * raw / (raw.double().var(unbiased=False) + 1e-8).sqrt().float() if normalize == "std" else 0.5 * raw
    torch.testing.assert_close(bonus, expected, rtol=1e-3, atol=1e-6)
    assert p2e.stats["intrinsic/bonus"] == pytest.approx(bonus.mean().item(), rel=1e-5)


def test_dynamics_gradients_reach_the_imagined_states_not_the_members():
    """Continuous actions (actor_grad=dynamics): the bonus is differentiable in the latents, so the actor
    learns from it through the model, while the members stay untouched."""
    torch.manual_seed(3)
    model = small_rssm()
    p2e = module(model, normalize="none")
    feat = torch.randn(5, 8, model.feat_dim, requires_grad=True)
    p2e.imagined_bonus(feat, torch.zeros(5, 8, 4)).sum().backward()
    assert feat.grad is not None and feat.grad.abs().sum() > 0
    assert all(p.grad is None for p in p2e.models.parameters())


TINY = ["experiment=dreamer_p2e_gridworld", "device=cpu", "device.threads=1", "progress=false", "total_steps=640",
        "env.kwargs.height=5", "env.kwargs.width=5", "env.kwargs.goal=[4,4]", "env.max_episode_steps=20",
        "intrinsic.coverage_bins=5", "eval.every=320", "checkpoint.every=320", "log_every=160",
        "agent.prefill=160", "model.update.start=160", "model.update.every=16",
        "model.batch=4", "model.length=8", "model.deter=16", "model.hidden=16",
        "model.units=16", "model.groups=4", "model.classes=4", "agent.units=16", "agent.horizon=5",
        "agent.starts=32", "intrinsic.hidden=[16]", "intrinsic.members=3"]


def test_short_dreamer_p2e_run_logs_the_intrinsic_keys(tmp_path):
    cfg = compose_cfg(TINY)
    plan = validate(cfg, tmp_path)
    assert plan.intrinsic_cls is LatentDisagreement
    execute(cfg, plan, tmp_path)
    assert summary(tmp_path)["status"] == "completed"
    rows = metrics(tmp_path)
    keys = set().union(*rows)
    assert {"intrinsic/loss", "intrinsic/reward_raw", "intrinsic/bonus", "intrinsic/coverage",
            "intrinsic/episode_extrinsic_return", "agent/imag_reward", "eval/return_mean"} <= keys
    assert "intrinsic/episode_intrinsic_return" not in keys  # the bonus lives in imagination only
    coverage = [r["intrinsic/coverage"] for r in rows if "intrinsic/coverage" in r]
    assert 0 < coverage[-1] <= 1 and coverage[-1] * 25 == round(coverage[-1] * 25)  # whole cells
    assert all(r["intrinsic/bonus"] > 0 for r in rows if "intrinsic/bonus" in r)


def test_plain_dreamer_gets_the_exploration_statistics_without_a_bonus(tmp_path):
    plain = ["experiment=dreamer_gridworld", *[o for o in TINY[1:] if o.split("=")[0] not in
                                               ("intrinsic.hidden", "intrinsic.members")]]
    cfg = compose_cfg(plain)
    plan = validate(cfg, tmp_path)
    assert plan.intrinsic_cls is LatentNoIntrinsic
    execute(cfg, plan, tmp_path)
    keys = set().union(*metrics(tmp_path))
    assert "intrinsic/coverage" in keys and "intrinsic/bonus" not in keys and "intrinsic/loss" not in keys


def test_resumed_run_ends_with_the_same_ensemble_as_an_uninterrupted_one(tmp_path):
    """The ensemble, its optimiser and the reward normaliser are checkpointed with the agent: a run stopped
    at its checkpoint and resumed ends bit-exactly like one that ran straight through."""
    full, parts = tmp_path / "full", tmp_path / "parts"
    for d in (full, parts):
        d.mkdir()
    cfg = compose_cfg(TINY)
    execute(cfg, validate(cfg, full), full)
    first = compose_cfg([*TINY, "total_steps=320"])
    execute(first, validate(first, parts), parts)
    again = compose_cfg([*TINY, "resume=true"])
    execute(again, validate(again, parts), parts)
    a, b = checkpoint.load(full)["agent"], checkpoint.load(parts)["agent"]
    ensemble = [k for k in a if k.startswith("intrinsic.")]
    assert any("models" in k for k in ensemble) and "intrinsic.reward_rms.var" in ensemble
    for k in ensemble:
        if isinstance(a[k], torch.Tensor):
            assert torch.equal(a[k], b[k]), k
    opt_a, opt_b = a["intrinsic._extra_state"]["optim"]["state"], b["intrinsic._extra_state"]["optim"]["state"]
    assert opt_a.keys() == opt_b.keys() and all(torch.equal(opt_a[i]["exp_avg"], opt_b[i]["exp_avg"]) for i in opt_a)
    drop = lambda rows: [{k: v for k, v in r.items() if k != "time"} for r in rows]
    assert drop(metrics(parts)) == drop(metrics(full))


@pytest.mark.parametrize("overrides,message", [
    (["intrinsic=disagreement", "intrinsic.normalize=return"], "intrinsic.normalize"),
    (["intrinsic=disagreement", "intrinsic.episodic=false"], "intrinsic.episodic"),
    (["intrinsic=disagreement", "+intrinsic.target=obs"], "intrinsic.target"),
    (["intrinsic=icm"], "intrinsic=icm scores observations"),
    (["agent=cem", "intrinsic=disagreement"], "intrinsic=disagreement needs an agent"),
])
def test_bad_combinations_are_config_errors(overrides, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        validate(compose_cfg(["model=rssm", "agent=actor_critic", "device=cpu", *overrides]), tmp_path)


def test_observation_intrinsic_with_dreamer_is_one_line_exit_2(run_dir):
    proc = train(run_dir, "model=rssm", "agent=actor_critic", "intrinsic=rnd", "device=cpu", timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "intrinsic=rnd scores observations" in lines[0]
    assert "valid: intrinsic=disagreement" in lines[0] and not run_dir.exists()
