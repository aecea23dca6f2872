"""``python -m bench [name ...|all]``: run benchmarks one after another (never two at once)."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

SKIP = {"common", "__main__", "causal_pc"}  # causal_pc: the PC peer that bench.causal runs


def available() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if m.name not in SKIP)


def main() -> None:
    names = sys.argv[1:] or ["all"]
    names = available() if names == ["all"] else names
    unknown = [n for n in names if n not in available()]
    if unknown:
        sys.exit(f"error: unknown benchmark {', '.join(unknown)}; valid: all, {', '.join(available())}")
    for name in names:
        print(f"== bench.{name}", flush=True)
        sys.argv = [f"bench.{name}"]
        importlib.import_module(f"bench.{name}").main()


if __name__ == "__main__":
    main()
