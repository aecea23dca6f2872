"""Ctrl-C / SIGTERM ask the loop to stop at the next step boundary, checkpoint and exit cleanly."""

from __future__ import annotations

import logging
import signal

log = logging.getLogger("wm")


class StopFlag:
    def __init__(self) -> None:
        self.requested = False
        self._old = {}

    def __enter__(self) -> StopFlag:  # noqa: PYI034 - a final class
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. some launchers): leave signals alone
                pass
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        log.warning("%s received: checkpointing and stopping", signal.Signals(signum).name)
        self.requested = True

    def __exit__(self, *exc) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
