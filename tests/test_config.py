"""Every option of every config group composes, and every experiment preset validates."""

from __future__ import annotations

import itertools

import pytest
from omegaconf import OmegaConf

from tests.conftest import CONF, ROOT, compose_cfg
from wm.validate import validate

GROUPS = ["env", "model", "agent", "intrinsic", "device", "logger", "experiment"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_option_composes(group, option):
    cfg = compose_cfg([f"{group}={option}"])
    node = cfg if group == "experiment" else cfg[group]
    assert node is not None
    if group not in ("experiment", "device", "logger"):
        assert cfg[group].name == option  # run dirs and reports use the short name


@pytest.mark.parametrize("preset", options("experiment"))
def test_presets_validate(preset, tmp_path):
    cfg = compose_cfg([f"experiment={preset}", "device=cpu"])
    plan = validate(cfg, tmp_path)
    assert plan.run.total_steps > 0


def test_default_run_is_valid(tmp_path):
    cfg = compose_cfg([])
    plan = validate(cfg, tmp_path)
    assert plan.loop == "online" and plan.agent_cls is not None


def sweep_jobs(name: str) -> list[list[str]]:
    """The jobs a named sweep expands to (Hydra's basic sweeper: the product of its params)."""
    params = OmegaConf.load(ROOT / "sweep" / f"{name}.yaml").hydra.sweeper.params
    axes = [[f"{key}={value.strip()}" for value in str(values).split(",")] for key, values in params.items()]
    axes = [axis[:1] if axis[0].startswith("seed=") else axis for axis in axes]  # seeds validate alike
    return [list(job) for job in itertools.product(*axes)]


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "sweep").glob("*.yaml")))
def test_every_job_of_every_named_sweep_validates(name, tmp_path):
    jobs = sweep_jobs(name)
    assert len(jobs) >= 2
    for job in jobs:
        cfg = compose_cfg([f"sweep={name}", *job, "device=cpu"])
        validate(cfg, tmp_path / "_".join(job).replace("/", "-"))


@pytest.mark.parametrize("ablation", [o for o in options("ablation") if o != "dreamer_v3"])
def test_each_dreamer_ablation_switches_something_off(ablation):
    base = compose_cfg(["experiment=dreamer_cartpole", "+ablation=dreamer_v3"])
    changed = compose_cfg(["experiment=dreamer_cartpole", f"+ablation={ablation}"])
    assert changed.model != base.model or changed.agent != base.agent
