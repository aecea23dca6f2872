"""Progress: a rich bar on a terminal, plain log lines (every ~10% or 60 s) elsewhere, e.g. in CI."""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("wm")


class Progress:
    def __init__(self, total: int, start: int = 0, unit: str = "env steps", enabled: bool = True):
        self.total, self.unit, self.start = total, unit, start
        self.t0, self.last_line, self.next_pct = time.time(), time.time(), 0.1
        self.info = ""
        self.bar = None
        if enabled and sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self.bar = RichProgress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]:>7.0f} steps/s"), TextColumn("{task.fields[info]}"),
                TimeRemainingColumn(), transient=False,
            )
            self.task = self.bar.add_task(unit, total=total, completed=start, rate=0.0, info="")
            self.bar.start()

    def update(self, step: int, **info: float) -> None:
        if info:
            self.info = "  ".join(f"{k} {v:.1f}" for k, v in info.items())
        rate = (step - self.start) / max(time.time() - self.t0, 1e-9)
        if self.bar is not None:
            self.bar.update(self.task, completed=step, rate=rate, info=self.info)
            return
        now = time.time()
        if step >= self.next_pct * self.total or now - self.last_line > 60:
            self.next_pct = (int(step / self.total * 10) + 1) / 10
            self.last_line = now
            log.info("%d/%d %s (%.0f/s) %s", step, self.total, self.unit, rate, self.info)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
