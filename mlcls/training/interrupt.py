"""Ctrl-C during training: finish the optimizer step in progress, save a checkpoint, exit cleanly.

Python's default turns SIGINT into a KeyboardInterrupt wherever the program happens to be, which may be
halfway through `optimizer.step()` with half of the weights updated. Instead, the first Ctrl-C only
sets a flag that the loop reads between optimizer steps; a second one interrupts at once.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class StopSignal:
    def __init__(self) -> None:
        self.requested = False

    def should_stop(self, step: int) -> bool:
        """Read by the loop after optimizer step `step` (1-based, counted over the whole run)."""
        return self.requested

    @contextmanager
    def on_ctrl_c(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield  # signal handlers can only be set from the main thread
            return

        def handler(signum, frame) -> None:
            if self.requested:
                raise KeyboardInterrupt  # a second Ctrl-C: stop now, the checkpoint is not waited for
            self.requested = True

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


class StopAfterStep(StopSignal):
    """What a Ctrl-C after optimizer step `at` does, without a signal (benchmarks and tests stop runs so)."""

    def __init__(self, at: int):
        super().__init__()
        self.at = at

    def should_stop(self, step: int) -> bool:
        return step >= self.at
