"""Every option of every config group composes, and every experiment preset validates."""

from __future__ import annotations

import pytest
from tests.conftest import CONF, compose_cfg
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
