"""The layers of wm point one way; an AST scan of every import in wm/ (lazy ones inside functions too).

    run, validate, cli          (top: build and drive a run)
    loops                       (own env stepping, schedules, evaluation)
    agents                      (act and learn; may use models, intrinsic, data, envs)
    intrinsic                   (curiosity bonuses: agents use them; they may use models, e.g. the RSSM
                                 features of latent disagreement, never agents)
    models                      (world models; may read data and envs, e.g. FrameDataset, termination)
    data, envs                  (datasets, replay, environments; never models or agents)
    core, config, errors        (shared building blocks: schedule, nets, stats, seeds; import no other layer)

wm.logging, wm.metrics and wm.checkpoint are utilities any layer may use.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

WM = Path(__file__).resolve().parent.parent / "wm"
TOP = ("wm.loops", "wm.run", "wm.validate", "wm.cli")
RULES = {  # package -> the modules it must never import
    "wm.core": (*TOP, "wm.agents", "wm.intrinsic", "wm.models", "wm.data", "wm.envs", "wm.logging", "wm.metrics"),
    "wm.envs": (*TOP, "wm.agents", "wm.intrinsic", "wm.models"),
    "wm.data": (*TOP, "wm.agents", "wm.intrinsic", "wm.models"),
    "wm.models": (*TOP, "wm.agents", "wm.intrinsic"),
    "wm.intrinsic": (*TOP, "wm.agents"),
    "wm.agents": TOP,
}


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import in the file; ``from wm import x`` counts as ``wm.x``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
            out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return out


def violations(package: str, banned: tuple[str, ...]) -> list[str]:
    root = WM.parent / package.replace(".", "/")
    files = sorted(root.rglob("*.py")) if root.is_dir() else []
    return [f"{f.relative_to(WM.parent)}:{line} imports {mod}" for f in files for line, mod in imports(f)
            if any(mod == b or mod.startswith(b + ".") for b in banned)]


@pytest.mark.parametrize("package", sorted(RULES))
def test_layer_imports_point_down(package):
    assert (WM.parent / package.replace(".", "/")).is_dir(), package
    assert violations(package, RULES[package]) == []


def test_the_scan_sees_lazy_and_from_wm_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("from wm import checkpoint\ndef g():\n    import wm.loops.online\n")
    assert (1, "wm.checkpoint") in imports(f) and (3, "wm.loops.online") in imports(f)
