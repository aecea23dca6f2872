"""Blocks that draw random numbers without touching the run's training streams."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from wm import checkpoint


@contextmanager
def own_rng(seed: int) -> Iterator[None]:
    """Run the block on the global RNGs (python, numpy, torch) seeded with ``seed``, then give the training
    streams back exactly as they were: what an evaluation samples (Dreamer's posteriors, CEM's candidates,
    open-loop videos) can then not change training, whatever ``eval.every`` is."""
    saved = checkpoint.rng_state()
    checkpoint.seed_everything(seed)
    try:
        yield
    finally:
        checkpoint.set_rng_state(saved)
