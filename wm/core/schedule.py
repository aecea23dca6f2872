"""When a learner updates: every ``every`` env steps after ``start``, ``updates`` updates per round."""

from __future__ import annotations

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
