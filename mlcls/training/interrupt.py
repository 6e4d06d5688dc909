"""Ctrl-C or SIGTERM during training: finish the optimizer step in progress, save a checkpoint, exit cleanly.

Python's default turns SIGINT into a KeyboardInterrupt wherever the program happens to be, which may be
halfway through `optimizer.step()` with half of the weights updated. Instead, the first Ctrl-C only
sets a flag that the loop reads between optimizer steps; a second one interrupts at once.

SIGTERM is the same request from a machine rather than a person: a batch scheduler's time limit or preemption
(SLURM, Kubernetes), `timeout`, `docker stop`, `kill`. By default it ends the process where it stands and
the run keeps only its last epoch's checkpoint; handled like Ctrl-C, the run resumes from the step it reached.
A repeated SIGTERM changes nothing (under `accelerate launch` a worker may get the scheduler's signal and the
launcher's forwarded copy); only Ctrl-C escalates. SIGTERM is taken only from its default disposition: a
program that embeds mlcls (mlcls.api) with a SIGTERM handler of its own, or a parent that ignores SIGTERM, keeps it.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_OURS = "_mlcls_stop_handler"  # marks the handlers installed here: a nested block may replace them


class StopSignal:
    """A request to stop training at the next step boundary (Ctrl-C or SIGTERM while `on_signals()` runs; a
    subclass may decide by itself in `should_stop`, as StopAfterStep does): the training then saves a checkpoint
    and raises TrainingInterrupted."""

    def __init__(self) -> None:
        self.signum: int | None = None  # the first stop signal received, if any

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def exit_code(self) -> int:
        """What the command exits with once it has stopped: 128 + the signal's number (130 for Ctrl-C)."""
        return 128 + (self.signum or signal.SIGINT)

    @property
    def what(self) -> str:
        """How the stop is named in messages."""
        return "stopped by SIGTERM" if self.signum == signal.SIGTERM else "interrupted"

    def raise_if_requested(self, exception: type[Exception], where: str) -> None:
        """Between two pieces of work (folds, trials, a refit): a stop that came during the last one's final steps
        (which then finished) lets the next not begin. Raises `exception`("<what> <where>", exit code)."""
        if self.requested:
            raise exception(f"{self.what} {where}", self.exit_code)

    def should_stop(self, step: int) -> bool:
        """Read by the loop after optimizer step `step` (1-based, counted over the whole run)."""
        return self.requested

    @contextmanager
    def on_signals(self) -> Iterator[None]:
        """Ctrl-C and SIGTERM set the flag while the block runs; a Ctrl-C after either stops at once."""
        if threading.current_thread() is not threading.main_thread():
            yield  # signal handlers can only be set from the main thread
            return

        def handler(signum, frame) -> None:
            if self.requested:
                if signum == signal.SIGINT:
                    raise KeyboardInterrupt  # a second Ctrl-C: stop now, the checkpoint is not waited for
                return  # a repeated SIGTERM: the stop is under way
            self.signum = signum

        setattr(handler, _OURS, True)
        # SIGINT is taken whatever its handler: a background job (`cmd &` in a script) starts with it ignored,
        # and `kill -INT` is how one stops it.
        taken = [sig for sig in (signal.SIGINT, signal.SIGTERM) if sig == signal.SIGINT or _free(sig)]
        previous = {sig: signal.signal(sig, handler) for sig in taken}
        try:
            yield
        finally:
            for sig, old in previous.items():  # None: a handler not set from Python; the default is the best guess
                signal.signal(sig, old if old is not None else signal.SIG_DFL)


def _free(sig: int) -> bool:
    """Whether `sig` may be taken: it has its default disposition, or a handler of this module's."""
    current = signal.getsignal(sig)
    return current is signal.SIG_DFL or getattr(current, _OURS, False)


class StopAfterStep(StopSignal):
    """What a Ctrl-C after optimizer step `at` does, without a signal (benchmarks and tests stop runs so)."""

    def __init__(self, at: int):
        super().__init__()
        self.at = at

    def should_stop(self, step: int) -> bool:
        return step >= self.at
