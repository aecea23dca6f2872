"""docs/ARCHITECTURE.md stays true to the code: every ``wm.x.y`` it names imports, and where it shows a call
with arguments, ``wm.x.f(a, b, *, c)``, the parameter names are those of ``inspect.signature`` in order."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "ARCHITECTURE.md"
REF = re.compile(r"\bwm(?:\.[A-Za-z_]\w*)+")


def resolve(dotted: str):
    """The object named by ``dotted``: the longest importable module prefix, then attributes."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for name in parts[i:]:
            obj = getattr(obj, name)
        return obj
    raise ModuleNotFoundError(dotted)


def shown_params(text: str, start: int) -> list[str] | None:
    """The parameter names of the call written at ``text[start] == "("``, without ``*`` and ``...``."""
    depth, end = 0, start
    for end in range(start, len(text)):
        depth += {"(": 1, "[": 1, ")": -1, "]": -1}.get(text[end], 0)
        if depth == 0:
            break
    args, piece, depth = [], "", 0
    for ch in text[start + 1:end] + ",":
        depth += {"(": 1, "[": 1, ")": -1, "]": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            args.append(piece)
            piece = ""
        else:
            piece += ch
    names = [re.split(r"[:=]", a)[0].strip().lstrip("*") for a in args]
    return [n for n in names if n and n != "..."]


def references() -> list[tuple[str, list[str] | None]]:
    text = DOC.read_text()
    return [(m.group(), shown_params(text, m.end()) if text[m.end():m.end() + 1] == "(" else None)
            for m in REF.finditer(text)]


def test_the_doc_names_code():
    refs = references()
    assert len(refs) >= 10 and any(params for _, params in refs)
    problems = []
    for dotted, params in refs:
        try:
            obj = resolve(dotted)
        except (ImportError, AttributeError) as e:
            problems.append(f"{dotted}: {e}")
            continue
        if params is not None:
            real = [p for p in inspect.signature(obj).parameters]
            if params != real:
                problems.append(f"{dotted}: the doc shows ({', '.join(params)}), the code has ({', '.join(real)})")
    assert problems == []


def test_a_wrong_signature_is_caught(tmp_path):
    text = "wm.core.seeds.episode_seed(seed, stream)"
    m = REF.search(text)
    assert shown_params(text, m.end()) == ["seed", "stream"]
    assert [*inspect.signature(resolve(m.group())).parameters] == ["key"]
