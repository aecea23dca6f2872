"""Hydra's composition errors (unknown option, unknown key, bad override) as one readable line.

Hydra prints these itself, over several lines, before a run starts. While composing, stderr is held in a
buffer; if Hydra exits there, the buffer is condensed into one line and the exit code is 2 (as for our
own ConfigErrors). Once composition succeeded (the ReleaseStderr callback, also for multirun, whose
jobs may run in other processes), the buffer is released and stderr is untouched.
"""

from __future__ import annotations

import io
import re
import sys
from collections.abc import Callable
from typing import Any

from hydra.experimental.callback import Callback

_held: io.StringIO | None = None
_stderr = sys.stderr


def release() -> None:
    """Stop holding stderr back (composition succeeded)."""
    global _held
    if _held is not None:
        sys.stderr = _stderr
        _stderr.write(_held.getvalue())
        _held = None


def condense(text: str) -> str:
    if m := re.search(r"Could not find '([\w/]+)/(\S+)'.*?Available options in '[\w/]+':\n(.*?)\n\S", text, re.DOTALL):
        valid = ", ".join(line.strip() for line in m.group(3).splitlines() if line.strip())
        return f"unknown {m.group(1)} option '{m.group(2)}'; valid: {valid}"
    if m := re.search(r"Could not override '(\S+)'\.\nTo append to your config use (\S+)", text):
        return f"unknown key '{m.group(1)}' (to add a new key write {m.group(2)})"
    if m := re.search(r"Ambiguous value for argument '(\S+)'", text):
        return f"ambiguous value in '{m.group(1)}': a list is key=[a,b]; a sweep needs --multirun (-m)"
    lines = [line.strip() for line in text.splitlines() if line.strip() and "HYDRA_FULL_ERROR" not in line]
    return lines[0] if lines else "invalid command line"


class ReleaseStderr(Callback):
    """Registered in conf/hydra/default.yaml: runs in the launching process once the config composed."""

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        release()

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        release()


def run_cli(main: Callable[[], object]) -> None:
    global _held
    _held = io.StringIO()
    sys.stderr = _held
    try:
        main()
    except SystemExit as e:
        if _held is not None and e.code not in (0, None):  # Hydra gave up before the task started
            text, _held = _held.getvalue(), None
            sys.stderr = _stderr
            print(f"error: {condense(text)}", file=sys.stderr)
            raise SystemExit(2) from None
        raise
    finally:
        release()
