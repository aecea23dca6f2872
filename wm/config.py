"""Typed configs: each buildable class has a nested ``Config`` dataclass that its yaml node fills in.

``typed`` merges a yaml node into ``OmegaConf.structured(cls.Config)``, so unknown keys and wrong types
become a ConfigError that names the key. What values a key allows is declared with its field: ``param(16,
gt=0)``, ``param("categorical", choices=(...))`` (an ``Allowed`` in the field's metadata); ``typed`` checks
every declared field of every dataclass in the tree, then runs each Config's ``check()`` for the rules that
span several keys, so an error names the full key (``agent.update.every``). Every key that is not a bool or
a nested Config declares its rule (tests/test_config_keys.py walks them all), so none goes unchecked.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
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


@dataclasses.dataclass(frozen=True)
class Allowed:
    """The values one config key allows: bounds for numbers, choices for strings, a rule for each list item;
    ``free`` says why a key takes any value of its type (e.g. a path that is checked when it is read)."""

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    choices: tuple[str, ...] | None = None
    each: Allowed | None = None
    nonempty: bool = False
    free: str | None = None

    def problem(self, value: Any) -> str | None:
        """None if ``value`` is allowed, else what is wrong, e.g. ``must be > 0 (got 0)``."""
        if value is None or self.free is not None:
            return None
        if self.each is not None:
            if self.nonempty and len(value) == 0:
                return "needs at least one entry"
            for item in value:
                if (p := self.each.problem(item)) is not None:
                    return f"every entry {p.split(' (got')[0]} (got {list(value)})"
            return None
        if self.choices is not None:
            return None if value in self.choices else f"must be one of {', '.join(self.choices)} (got {value!r})"
        if isinstance(value, float) and not math.isfinite(value):
            return f"must be finite (got {value})"
        ok = ((self.gt is None or value > self.gt) and (self.ge is None or value >= self.ge)
              and (self.lt is None or value < self.lt) and (self.le is None or value <= self.le))
        return None if ok else f"must be {self.describe()} (got {value})"

    def describe(self) -> str:
        low = (f"({_num(self.gt)}" if self.gt is not None else f"[{_num(self.ge)}") \
            if self.gt is not None or self.ge is not None else None
        high = (f"{_num(self.lt)})" if self.lt is not None else f"{_num(self.le)}]") \
            if self.lt is not None or self.le is not None else None
        if low and high:
            return f"in {low}, {high}"
        if low:
            return f"{'>' if self.gt is not None else '>='} {low[1:]}"
        if high:
            return f"{'<' if self.lt is not None else '<='} {high[:-1]}"
        return "finite"

    def bad_values(self) -> list[Any]:
        """Values this rule refuses (tests walk them): just past each bound, an unknown choice, a bad item."""
        if self.free is not None:
            return []
        if self.each is not None:
            return [[v] for v in self.each.bad_values()[:1]] + ([[]] if self.nonempty else [])
        if self.choices is not None:
            return ["no_such_choice"]
        out: list[Any] = [float("nan")]
        if self.gt is not None:
            out.append(self.gt)
        if self.ge is not None:
            out.append(self.ge - 1)
        if self.lt is not None:
            out.append(self.lt)
        if self.le is not None:
            out.append(self.le + 1)
        return out


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


POSITIVE = Allowed(gt=0)
NON_NEGATIVE = Allowed(ge=0)
UNIT = Allowed(ge=0, le=1)  # a probability or a fraction


def param(default: Any, *, gt: float | None = None, ge: float | None = None, lt: float | None = None,
          le: float | None = None, choices: tuple[str, ...] | None = None, each: Allowed | None = None,
          nonempty: bool = False, free: str | None = None) -> Any:
    """A Config field with its default and the values it allows (see ``Allowed``)."""
    allowed = Allowed(gt, ge, lt, le, tuple(choices) if choices else None, each, nonempty, free)
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata={"allowed": allowed})
    return dataclasses.field(default=default, metadata={"allowed": allowed})


def allowed(f: dataclasses.Field) -> Allowed | None:
    return f.metadata.get("allowed")


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
        raise ConfigError(f"{key}: {_readable(msg)}") from None
    except ValueError as e:  # from a Config's __post_init__
        raise ConfigError(_join(where, str(e))) from None
    check_tree(obj, where)
    return obj


_TYPES = {"Integer": "an integer", "Float": "a number", "Boolean": "true or false"}


def _readable(msg: str) -> str:
    """OmegaConf's type errors in the words of the rest: ``must be an integer (got 'abc')``."""
    if m := re.match(r"Value '(.*?)' (?:of type '\w+' )?could not be converted to (\w+)", msg):
        return f"must be {_TYPES.get(m.group(2), m.group(2).lower())} (got {m.group(1)!r})"
    if m := re.match(r"Value '(.*)' is not a valid bool", msg):
        return f"must be true or false (got {m.group(1)!r})"
    if "is not a ListConfig, list or tuple" in msg:
        return "must be a list, e.g. [1, 2]"
    if "is not a DictConfig" in msg or ("Cannot assign" in msg and "Dict" in msg):
        return "must be a mapping, e.g. {key: value}"
    return msg


def check_tree(obj: Any, where: str) -> None:
    """Check every declared field, then ``check()`` of every dataclass in the tree, deepest first, naming the
    full key on failure."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            check_tree(value, _join(where, f.name))
        elif (rule := allowed(f)) is not None and (problem := rule.problem(value)) is not None:
            raise ConfigError(f"{_join(where, f.name)}: {problem}")
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
