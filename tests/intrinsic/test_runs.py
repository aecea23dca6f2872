"""A short run of each intrinsic option through the real config and run path (in-process, tiny budget):
it completes, logs the exploration metrics, and writes the MountainCar visitation image."""

from __future__ import annotations

import pytest

from tests.conftest import compose_cfg, metrics, summary
from wm.errors import ConfigError
from wm.run import execute
from wm.validate import validate

SHORT = ["env=mountaincar", "model=none", "agent=dqn", "device=cpu", "device.threads=1", "progress=false", "total_steps=400",
         "eval.every=400", "eval.episodes=1", "eval.envs=1", "checkpoint.every=400", "agent.prefill=100",
         "agent.update.start=100", "agent.update.every=50", "agent.update.updates=2", "agent.hidden=[16]",
         "agent.batch_size=16", "log_every=100", "env.max_episode_steps=50"]


@pytest.mark.parametrize("option", ["none", "icm", "rnd", "disagreement"])
def test_short_run_of_each_option(option, tmp_path):
    cfg = compose_cfg([*SHORT, f"intrinsic={option}"])
    plan = validate(cfg, tmp_path)
    execute(cfg, plan, tmp_path)
    assert summary(tmp_path)["status"] == "completed"
    rows = metrics(tmp_path)
    keys = set().union(*rows)
    assert {"intrinsic/coverage", "intrinsic/episode_extrinsic_return", "intrinsic/episode_intrinsic_return",
            "intrinsic/visits", "eval/return_mean"} <= keys
    if option != "none":
        assert {"intrinsic/loss", "intrinsic/bonus"} <= keys
        assert any(r.get("intrinsic/episode_intrinsic_return", 0) > 0 for r in rows)
    else:
        assert all(r.get("intrinsic/episode_intrinsic_return", 0) == 0 for r in rows)
    image = next(r["intrinsic/visits"] for r in rows if "intrinsic/visits" in r)
    assert (tmp_path / image).stat().st_size > 0


def test_unknown_intrinsic_keys_and_bad_values_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="intrinsic.normalize"):
        validate(compose_cfg(["intrinsic=rnd", "intrinsic.normalize=max", "device=cpu"]), tmp_path)
    with pytest.raises(ConfigError, match="intrinsic.scale"):
        validate(compose_cfg(["intrinsic=icm", "intrinsic.scale=-1", "device=cpu"]), tmp_path)


def test_intrinsic_needs_an_agent_that_takes_it(tmp_path, monkeypatch):
    from wm.agents.dqn import DQN

    monkeypatch.setattr(DQN, "takes_intrinsic", False)
    with pytest.raises(ConfigError, match="intrinsic=rnd needs an agent"):
        validate(compose_cfg(["model=none", "agent=dqn", "intrinsic=rnd", "device=cpu"]), tmp_path)
    assert validate(compose_cfg(["model=none", "agent=dqn", "intrinsic=none", "device=cpu"]),
                    tmp_path).intrinsic_cls is None


@pytest.mark.parametrize("preset", ["dqn_gridworld", "rnd_gridworld", "icm_gridworld"])
def test_short_run_of_the_grid_world_presets(preset, tmp_path):
    """The sparse grid world presets (RND/ICM with the separate intrinsic Q head, n-step returns on top):
    the run completes and reports the fraction of cells visited; a 4x4 grid gets its goal found."""
    cfg = compose_cfg([f"experiment={preset}", "device=cpu", "device.threads=1", "progress=false",
                       "total_steps=600", "eval.every=600", "checkpoint.every=600", "agent.prefill=100",
                       "agent.update.start=100", "agent.hidden=[16]", "agent.batch_size=16", "agent.n_step=3",
                       "log_every=100", "env.kwargs.height=4", "env.kwargs.width=4", "env.kwargs.goal=[3,3]"])
    execute(cfg, validate(cfg, tmp_path), tmp_path)
    assert summary(tmp_path)["status"] == "completed"
    rows = metrics(tmp_path)
    coverage = [r["intrinsic/coverage"] for r in rows if "intrinsic/coverage" in r]
    assert coverage and 0 < coverage[-1] <= 1 and coverage[-1] * 16 == round(coverage[-1] * 16)  # whole cells
    assert any("intrinsic/first_goal_step" in r for r in rows)
    if preset != "dqn_gridworld":
        assert any("intrinsic/bonus" in r for r in rows)
