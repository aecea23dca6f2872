"""Typed configs: each buildable class has a nested ``Config`` dataclass that its yaml node fills in.

``typed`` merges a yaml node into ``OmegaConf.structured(cls.Config)``, so unknown keys and wrong types
become a ConfigError that names the key; range checks live in each Config's ``check()``, which ``typed`` runs
for every dataclass in the tree so an error names the full key (``agent.update.every``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from wm.errors import ConfigError

META_KEYS = ("_target_", "name")


def target_class(node: DictConfig, where: str) -> type | None:
    target = node.get("_target_")
    if target is None:
        return None
    try:
        return get_class(target)
    except Exception as e:  # hydra wraps import errors in its own types
        raise ConfigError(f"{where}: cannot import _target_ {target!r} ({e.__class__.__name__})") from None


def typed(cls: type, node: DictConfig | dict, where: str) -> Any:
    """Return ``cls.Config`` filled from ``node`` (meta keys dropped) and range-checked, or raise a
    one-line ConfigError."""
    data = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    data = {k: v for k, v in data.items() if k not in META_KEYS}
    schema = cls.Config if hasattr(cls, "Config") else cls
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), data)
        obj = OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        key = _join(where, e.full_key) if getattr(e, "full_key", None) else where
        msg = str(getattr(e, "msg", e)).splitlines()[0]
        if "not in" in msg:
            valid = ", ".join(f.name for f in dataclasses.fields(schema))
            msg = f"unknown key; valid keys: {valid}"
        raise ConfigError(f"{key}: {msg}") from None
    except ValueError as e:  # from a Config's __post_init__
        raise ConfigError(_join(where, str(e))) from None
    check_tree(obj, where)
    return obj


def check_tree(obj: Any, where: str) -> None:
    """Run ``check()`` of every dataclass in the tree, deepest first, naming the full key on failure."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            check_tree(value, _join(where, f.name))
    if hasattr(obj, "check"):
        try:
            obj.check()
        except ValueError as e:
            raise ConfigError(_join(where, str(e))) from None


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def build(node: DictConfig, where: str, **kwargs: Any) -> Any:
    """Instantiate ``node._target_`` with its typed Config and ``kwargs``; None when ``_target_`` is null."""
    cls = target_class(node, where)
    if cls is None:
        return None
    return cls(typed(cls, node, where), **kwargs)


def require(condition: bool, key: str, message: str) -> None:
    """Range check for a Config's check(): raises ValueError('<key>: <message>')."""
    if not condition:
        raise ValueError(f"{key}: {message}")


def positive(cfg: Any, *keys: str, allow_zero: bool = False) -> None:
    for key in keys:
        value = getattr(cfg, key)
        ok = value >= 0 if allow_zero else value > 0
        require(ok, key, f"must be {'>= 0' if allow_zero else '> 0'} (got {value})")
