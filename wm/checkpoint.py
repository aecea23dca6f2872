"""Checkpoints: one file, written atomically, holding everything a run needs to continue exactly.

The previous checkpoint is kept beside the latest, so a damaged latest (a truncated copy, a full disk)
still leaves one to resume from. Files load with ``torch.load(weights_only=True)``: tensors, numpy
arrays and plain containers only, so opening a run directory someone shared cannot run its code.
"""

from __future__ import annotations

import logging
import pickle
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wm.errors import ConfigError
from wm.logging.files import atomic_write

LATEST = "checkpoints/latest.pt"
PREVIOUS = "checkpoints/previous.pt"
log = logging.getLogger("wm")

# what a numpy array or scalar pickles to, beside torch's own allow-list (found from the objects, so it holds
# for numpy 1.x and 2.x alike); object arrays stay out: their items would be arbitrary pickles
NUMPY_GLOBALS = list(dict.fromkeys([np.zeros(1).__reduce__()[0], np.float64(0).__reduce__()[0], np.ndarray, np.dtype,
                                    *(type(np.dtype(c)) for c in np.typecodes["All"] if c != "O")]))


def save(run_dir: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` as the latest checkpoint; the one it replaces becomes the previous one."""
    path = Path(run_dir) / LATEST
    atomic_write(path, lambda tmp: torch.save(state, tmp), keep=Path(run_dir) / PREVIOUS)
    return path


def load_file(path: Path) -> dict[str, Any]:
    """One checkpoint file, loaded safely; a damaged or unsafe file is a ConfigError naming it."""
    try:
        with torch.serialization.safe_globals(NUMPY_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL (\S+)|but got (<[^>]+>)", str(e))
        if "Weights only load failed" in str(e):
            what = next((g for g in found.groups() if g), "?") if found else "?"
            raise ConfigError(f"{path} was refused: it holds a pickled object outside the allow-list ({what}); "
                              f"only tensors, numpy arrays and plain values load") from None
        raise ConfigError(f"{path} is damaged (not a torch file: {_first_line(e)})") from None
    except Exception as e:  # truncated zip, empty file, ...: any reason the file cannot be read
        raise ConfigError(f"{path} is damaged ({_first_line(e)})") from None


def load(run_dir: Path) -> dict[str, Any]:
    """The latest good checkpoint of a run: latest.pt, or previous.pt when latest is damaged."""
    problems = []
    for name in (LATEST, PREVIOUS):
        path = Path(run_dir) / name
        try:
            if not path.exists():
                raise ConfigError(f"{path} is missing")
            state = load_file(path)
        except ConfigError as e:
            log.warning("%s", e)
            problems.append(str(e))
            continue
        if problems:
            log.warning("resuming from %s", path)
        return state
    raise ConfigError("; ".join(problems) + "; no good checkpoint is left to resume from")


def exists(run_dir: Path) -> bool:
    return (Path(run_dir) / LATEST).exists() or (Path(run_dir) / PREVIOUS).exists()


def _first_line(e: Exception) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0] if lines else ''}".rstrip(": ")


def rng_state() -> dict[str, Any]:
    """The global RNG states: tuples of ints and a numpy array, which weights_only loading accepts."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
