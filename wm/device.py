"""Device choice: auto picks cuda, then mps, then cpu; the CPU thread count is configurable."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from wm.config import param
from wm.errors import ConfigError

CHOICES = ("auto", "cpu", "cuda", "mps")


@dataclass
class DeviceConfig:
    type: str = param("auto", choices=CHOICES)
    threads: int = param(0, ge=0)  # torch intra-op threads; 0 keeps torch's default


def available() -> list[str]:
    found = ["cpu"]
    if torch.cuda.is_available():
        found.insert(0, "cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        found.insert(0 if "cuda" not in found else 1, "mps")
    return found


def resolve(cfg: DeviceConfig) -> torch.device:
    """Return the torch device for ``cfg`` (and set the thread count), or raise if it is absent."""
    have = available()
    name = have[0] if cfg.type == "auto" else cfg.type
    if name not in have:
        raise ConfigError(f"device={name} is not available on this machine; valid here: auto, {', '.join(have)}")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    return torch.device(name)
