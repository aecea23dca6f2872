"""When a learner updates: every ``every`` env steps after ``start``, ``updates`` updates per round."""

from __future__ import annotations

import math
from dataclasses import dataclass

from wm.config import param


@dataclass
class Schedule:
    every: int = param(1, gt=0)
    updates: int = param(1, ge=0)
    start: int = param(0, ge=0)

    def rounds(self, step: int) -> int:
        """Update rounds owed in total once ``step`` env steps are done."""
        return 0 if step < self.start else (step - self.start) // self.every + 1


def cosine_lr(lr: float, step: int, decay_steps: int) -> float:
    """``lr`` decayed along a half cosine to 0 at ``decay_steps`` (and held there); ``decay_steps`` <= 0: ``lr``."""
    if decay_steps <= 0:
        return lr
    return lr * 0.5 * (1 + math.cos(math.pi * min(step, decay_steps) / decay_steps))
