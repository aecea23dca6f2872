"""Every key of every config group says what it allows, and every bad value of every key is refused in one
line that names the key, before any work (tests/test_validation.py runs the CLI on a sample of them: exit 2,
one line, no traceback, no run dir).

The keys are walked from the typed Config dataclasses (not from the yaml files), so a key added tomorrow is
walked too; ``test_every_key_declares_what_it_allows`` fails for a key that declares no rule.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.conftest import ROOT, compose_cfg
from wm.config import allowed, target_class
from wm.device import DeviceConfig
from wm.errors import ConfigError
from wm.intrinsic.latent_disagreement import latent_variant
from wm.logging.logger import LoggerConfig
from wm.validate import GROUPS, SCHEMA_GROUPS, RunConfig, options, schema_of, validate

FIXED = {"device": DeviceConfig, "logger": LoggerConfig}  # groups whose options share one Config


def config_class(group: str, option: str) -> type | None:
    if group in FIXED:
        return FIXED[group]
    cls = target_class(OmegaConf.load(ROOT / "conf" / group / f"{option}.yaml"), group)
    return None if cls is None else getattr(cls, "Config", cls)


def every_config() -> dict[str, type]:
    found = {"run": RunConfig}
    for group in GROUPS:
        for option in options(group):
            if (schema := config_class(group, option)) is not None:
                found[f"{group}={option}"] = schema
    for option in options("intrinsic"):  # what agent=actor_critic gets for intrinsic=<option>
        cls = target_class(OmegaConf.load(ROOT / "conf" / "intrinsic" / f"{option}.yaml"), "intrinsic")
        if cls is not None and (latent := latent_variant(cls)) is not None:
            found[f"intrinsic={option} (latent)"] = latent.Config
    return found


def leaves(schema: type, prefix: str = "") -> list[tuple[str, dataclasses.Field, typing.Any]]:
    """(dotted key, field, type) of every non-dataclass field, nested Configs walked."""
    out = []
    hints = typing.get_type_hints(schema)
    for f in dataclasses.fields(schema):
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            out += leaves(kind, f"{prefix}{f.name}.")
        else:
            out.append((prefix + f.name, f, kind))
    return out


def base_type(kind: typing.Any) -> typing.Any:
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    return base_type(args[0]) if type(None) in typing.get_args(kind) else (typing.get_origin(kind) or kind)


@pytest.mark.parametrize("name,schema", sorted(every_config().items()))
def test_every_key_declares_what_it_allows(name, schema):
    undeclared = [key for key, f, kind in leaves(schema) if base_type(kind) is not bool and allowed(f) is None]
    assert not undeclared, f"{name}: keys without a rule (use wm.config.param): {undeclared}"


WRONG_TYPE = {int: "not_a_number", float: "not_a_number", bool: "maybe", list: "not_a_list", dict: "not_a_dict"}


def bad_values(f: dataclasses.Field, kind: typing.Any) -> list[typing.Any]:
    out = [WRONG_TYPE[base_type(kind)]] if base_type(kind) in WRONG_TYPE else []
    rule = allowed(f)
    return out + (rule.bad_values() if rule is not None else [])


def cases() -> list[tuple[str, str, str, typing.Any]]:
    """(group, option, key, bad value) for every key of every option of every group, and the run keys."""
    out = [("run", "", key, v) for key, f, kind in leaves(RunConfig) for v in bad_values(f, kind)]
    for group in GROUPS:
        for option in options(group):
            schema = config_class(group, option)
            if schema is None:
                continue
            out += [(group, option, key, v) for key, f, kind in leaves(schema) if key != "name"
                    for v in bad_values(f, kind)]
    return out


CASES = cases()
BASE: dict[str, typing.Any] = {}


def test_the_walk_covers_every_group():
    walked = {(g, o) for g, o, _, _ in CASES}
    assert {g for g, _ in walked} == {"run", *GROUPS}
    assert len(CASES) > 500


@pytest.mark.parametrize("group,option", sorted({(g, o) for g, o, _, _ in CASES}))
def test_every_bad_value_of_every_key_is_one_line_naming_it(group, option, tmp_path):
    """Composing is slow, so each option is composed once and each bad value set on a copy."""
    cfg = compose_cfg([] if group == "run" else [f"{group}={option}", "device=cpu"])
    for g, o, key, value in CASES:
        if (g, o) != (group, option):
            continue
        full = key if group == "run" else f"{group}.{key}"
        bad = cfg.copy()
        OmegaConf.update(bad, full, value, merge=False, force_add=True)
        with pytest.raises(ConfigError) as e:
            validate(bad, tmp_path)
        message = str(e.value)
        assert "\n" not in message, message
        assert message.startswith(full), f"{full}={value!r}: {message}"


def option_files() -> list[tuple[str, Path]]:
    return [(group, path) for group in (*SCHEMA_GROUPS, "device", "logger")
            for path in sorted((ROOT / "conf" / group).glob("*.yaml"))]


@pytest.mark.parametrize("group,path", option_files(), ids=lambda x: getattr(x, "stem", x))
def test_yaml_holds_only_what_differs_from_its_dataclass(group, path):
    """Each default lives once, in its Config dataclass (listed first as /schema/<group>/<option>): an option's
    yaml sets only keys its dataclass has, and only to values other than the default."""
    node = OmegaConf.load(path)
    schema = schema_of(group, node)
    if schema is None:
        return
    assert f"/schema/{group}/{path.stem}@_here_" in node.get("defaults", [])
    values = {k: v for k, v in OmegaConf.to_container(node).items() if k not in ("defaults", "_target_", "name")}
    defaults = OmegaConf.to_container(OmegaConf.structured(schema))

    def unknown(v, d, key=""):  # keys the dataclass does not have (free-form dicts such as env.kwargs aside)
        if not isinstance(v, dict) or (isinstance(d, dict) and not d and key):
            return []
        return [f"{key}{k}" for k in v if k not in d] + [
            u for k in v if k in d for u in unknown(v[k], d[k], f"{key}{k}.")]

    def repeated(v, d, key=""):
        if isinstance(v, dict) and isinstance(d, dict):
            return [r for k in v if k in d for r in repeated(v[k], d[k], f"{key}{k}.")]
        return [key[:-1]] if v == d else []

    assert not unknown(values, defaults), f"{path}: keys without a dataclass field"
    assert not repeated(values, defaults), f"{path}: repeats its dataclass defaults"


def test_the_run_keys_live_in_run_config():
    node = OmegaConf.load(ROOT / "conf" / "train.yaml")
    top = {k: v for k, v in OmegaConf.to_container(node).items() if k not in ("defaults", "hydra")}
    defaults = OmegaConf.to_container(OmegaConf.structured(RunConfig))
    assert "/schema/run@_here_" in node.defaults
    assert all(v != defaults[k] for k, v in top.items()), top
