"""Checkpoints: one file, written atomically, holding everything a run needs to continue exactly."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wm.logging.files import atomic_write

LATEST = "checkpoints/latest.pt"


def save(run_dir: Path, state: dict[str, Any]) -> Path:
    path = Path(run_dir) / LATEST
    atomic_write(path, lambda tmp: torch.save(state, tmp))
    return path


def load(run_dir: Path) -> dict[str, Any]:
    return torch.load(Path(run_dir) / LATEST, map_location="cpu", weights_only=False)


def exists(run_dir: Path) -> bool:
    return (Path(run_dir) / LATEST).exists()


def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
