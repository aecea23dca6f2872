"""The Dreamer ablation sweep (sweep/dreamer_ablation.yaml): its baseline is the DreamerV3 recipe, and
each ablation composes to that baseline with exactly the keys its name says changed."""
from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from tests.conftest import CONF, ROOT, compose_cfg

EXPECTED = {  # ablation -> the keys that differ from the baseline, with their values there
    "no_symlog": {"model.symlog_obs": False, "model.reward_head": "twohot_raw", "agent.critic_head": "twohot_raw"},
    "no_twohot": {"model.reward_head": "symlog_mse", "agent.critic_head": "symlog_mse"},
    "no_kl_balance": {"model.kl_balance": False},
    "no_free_bits": {"model.free_bits": 0.0},
    "no_unimix": {"model.unimix": 0.0, "agent.unimix": 0.0},
    "no_return_norm": {"agent.return_norm": False},
    "no_slow_critic": {"agent.slow_reg": 0.0},
    "gaussian_latent": {"model.latent": "gaussian"},
}


def flat(cfg) -> dict:
    out = {}

    def walk(node, prefix):
        for k, v in node.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            else:
                out[f"{prefix}{k}"] = v

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return out


def compose_ablation(name: str) -> dict:
    return flat(compose_cfg(["experiment=dreamer_cartpole", f"+ablation={name}"]))


def test_baseline_is_dreamer_v3():
    """The paper's heads, critic regulariser, discount, return normalisation and KL settings, and they win
    over the experiment preset they are composed onto."""
    base = compose_ablation("dreamer_v3")
    assert base["model.reward_head"] == base["agent.critic_head"] == "twohot"
    assert base["agent.slow_reg"] == 1.0 and base["agent.slow_decay"] == 0.98 and not base["agent.slow_target"]
    assert base["agent.gamma"] == pytest.approx(1 - 1 / 333, abs=5e-4) and base["agent.lam"] == 0.95
    assert base["agent.return_norm"] and base["agent.norm_decay"] == 0.99
    assert base["model.free_bits"] == 1.0 and base["model.unimix"] == base["agent.unimix"] == 0.01
    assert base["model.kl_balance"] and (base["model.dyn_scale"], base["model.rep_scale"]) == (0.5, 0.1)
    assert base["model.latent"] == "categorical" and base["model.symlog_obs"]
    assert base["agent.entropy"] == 3e-4
    plain = flat(compose_cfg(["experiment=dreamer_cartpole"]))
    assert {k for k in base if base[k] != plain.get(k)} >= {"model.reward_head", "agent.gamma", "agent.slow_reg"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_ablation_differs_from_the_baseline_in_exactly_its_keys(name):
    base, abl = compose_ablation("dreamer_v3"), compose_ablation(name)
    assert base.keys() == abl.keys()
    assert {k: abl[k] for k in base if base[k] != abl[k]} == EXPECTED[name]


def test_the_sweep_runs_the_baseline_and_every_ablation():
    files = {p.stem for p in (CONF / "ablation").glob("*.yaml")}
    assert files == set(EXPECTED) | {"dreamer_v3"}
    sweep = OmegaConf.load(ROOT / "sweep" / "dreamer_ablation.yaml")
    listed = sweep.hydra.sweeper.params["+ablation"].split(",")
    assert sorted(listed) == sorted(files) and listed[0] == "dreamer_v3"


def test_twohot_raw_head_is_the_two_hot_head_without_symlog():
    """no_symlog's heads: the same 255 bins, in raw units; a target inside [-20, 20] is recovered exactly by
    the head whose logits put all weight on its two-hot code, a larger one clips (where symlog bins do not)."""
    import torch

    from wm.models import dists

    x = torch.tensor([-7.3, 0.0, 3.1, 19.0, 100.0])
    bins = torch.linspace(-20, 20, 255)
    raw = dists.head_dist(dists.twohot(x, bins).clamp(min=1e-12).log(), "twohot_raw")
    assert torch.allclose(raw.mean(), x.clamp(-20, 20), atol=1e-4)
    assert dists.head_bins("twohot_raw") == dists.head_bins("twohot") == 255
    sym = dists.head_dist(dists.twohot(dists.symlog(x), bins).clamp(min=1e-12).log(), "twohot")
    assert torch.allclose(sym.mean(), x, rtol=1e-4, atol=1e-4)
