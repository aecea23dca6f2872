"""When a learner updates: every ``every`` env steps after ``start``, ``updates`` updates per round."""

from __future__ import annotations

from dataclasses import dataclass

from wm.config import positive


@dataclass
class Schedule:
    every: int = 1
    updates: int = 1
    start: int = 0

    def check(self) -> None:
        positive(self, "every")
        positive(self, "updates", "start", allow_zero=True)

    def rounds(self, step: int) -> int:
        """Update rounds owed in total once ``step`` env steps are done."""
        return 0 if step < self.start else (step - self.start) // self.every + 1
