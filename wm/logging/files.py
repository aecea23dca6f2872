"""Atomic file writes: a reader (or a crash) never sees a half-written file."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(path: Path, write: Callable[[Path], None], keep: Path | None = None) -> None:
    """Call ``write(tmp_path)`` then rename the temp file over ``path`` (atomic on POSIX). With ``keep``,
    the file being replaced is first renamed to ``keep``: only once the new one is complete on disk, so
    at every moment ``path`` or ``keep`` holds a whole file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    if keep is not None and path.exists():
        os.replace(path, keep)
    os.replace(tmp, path)


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, default=float) + "\n"))
