"""The supervised loop: models that learn from a dataset rather than by acting (ConvLSTM, HMM, Kalman).

``total_steps`` counts ``model.train_step`` calls (optimizer or EM steps); every ``eval_every`` steps the
model evaluates itself and may write artifacts (plots, videos) into the run dir.
"""

from __future__ import annotations

from collections import defaultdict
from functools import partial
from typing import Any

import numpy as np

from wm import checkpoint
from wm.core.seeds import EVAL_RNG, episode_seed
from wm.logging import Logger
from wm.logging.progress import Progress
from wm.loops.finite import check_parameters, checked_step
from wm.loops.rng import own_rng
from wm.loops.signals import StopFlag


class SupervisedLoop:
    def __init__(self, settings, data, model, logger: Logger, progress: bool = True):
        self.s, self.data, self.model, self.logger = settings, data, model, logger
        self.step, self.last_checkpoint, self.progress_enabled = 0, 0, progress
        self.stats: dict[str, list[float]] = defaultdict(list)

    def run(self, resume_state: dict[str, Any] | None = None) -> None:
        if resume_state is not None:
            self._restore(resume_state)
        bar = Progress(self.s.total_steps, start=self.step, unit="steps", enabled=self.progress_enabled)
        try:
            with StopFlag() as stop:
                while self.step < self.s.total_steps and not stop.requested:
                    stats = checked_step(self.model, self.step, partial(self.model.train_step, self.step))
                    for key, value in stats.items():
                        self.stats[key].append(value)
                    self.step += 1
                    if self.step % self.s.log_every == 0:
                        self._flush()
                    if self.step % self.s.eval_every == 0 or self.step == self.s.total_steps:
                        self._evaluate()
                    if self.step - self.last_checkpoint >= self.s.checkpoint_every:
                        self._checkpoint()
                    bar.update(self.step)
                self._checkpoint()
                if stop.requested:
                    raise KeyboardInterrupt
        finally:
            bar.close()

    def _flush(self) -> None:
        if self.stats:
            self.logger.log({k: float(np.mean(v)) for k, v in self.stats.items()}, self.step)
        self.stats.clear()

    def _evaluate(self) -> None:
        check_parameters([self.model], self.step, "before the evaluation")
        self._flush()
        with own_rng(episode_seed(self.s.seed, EVAL_RNG, self.step)):  # evaluating never changes training
            self.logger.log(self.model.evaluate(), self.step)
            if hasattr(self.model, "artifacts"):
                self.model.artifacts(self.logger.run_dir, self.logger)

    def _checkpoint(self) -> None:
        check_parameters([self.model], self.step, "before the checkpoint")
        self._flush()
        checkpoint.save(self.logger.run_dir, {
            "step": self.step, "model": self.model.state_dict(),
            "data": self.data.state_dict() if hasattr(self.data, "state_dict") else None,
            "rng": checkpoint.rng_state(), "metrics_offset": self.logger.offset, **self.logger.clocks(),
        })
        self.last_checkpoint = self.step
        self.logger.summary("running", self.step)

    def _restore(self, st: dict[str, Any]) -> None:
        self.step = self.last_checkpoint = st["step"]
        self.model.load_state_dict(st["model"])
        if st["data"] is not None:
            self.data.load_state_dict(st["data"])
        checkpoint.set_rng_state(st["rng"])
