"""Errors a user can fix. The CLI prints them as one line (no traceback) and exits with code 1; a command they
suggest is quoted for a shell (shell_command)."""

from __future__ import annotations

import shlex
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, for a one-line error around a library's (which may span
    lines, or be empty: then the exception's type names it)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class MlclsError(Exception):
    """Base class: the message is complete and meant for the user."""


class ConfigError(MlclsError):
    """An unknown key, a value of the wrong type, an option out of range."""


class DataError(MlclsError):
    """A bad input file or record; the message names the file and, where there is one, the line."""

    def __init__(self, path: str | Path, line: int | None, problem: str, reason: str | None = None):
        self.path = str(path)
        self.line = line
        self.problem = problem
        # A short name of the kind of problem, for "skipped 12 lines: 9 invalid JSON, 3 empty text".
        self.reason = reason or problem.split(":")[0].split(" (")[0]
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {problem}")


class RunDirError(MlclsError):
    """A run directory that is missing, incomplete or corrupt."""


class Interrupted(Exception):
    """Ctrl-C (or, for training, SIGTERM), handled: the work done so far was kept (a checkpoint, a partial
    output) and the message says how to continue. The CLI prints it and exits with `exit_code`: 130 for Ctrl-C,
    143 for SIGTERM (128 + the signal's number, the shell's convention). Not an MlclsError: nothing was wrong."""

    def __init__(self, message: str = "", exit_code: int = 130) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's time limit, `kill`), raised where Ctrl-C's KeyboardInterrupt would be by a command
    that takes the signal (sigterm_as_interrupt): the same cleanup; the CLI says so and exits 143."""

    exit_code = 143


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While the block runs, SIGTERM stops as Ctrl-C does (Terminated, a KeyboardInterrupt: what the block keeps or
    removes on Ctrl-C, it keeps or removes) instead of killing the process where it stands: predict's partial
    output kept with a line saying how to resume, an export's staging folder removed. Taken only in the main
    thread (signal's own rule) and from SIGTERM's default disposition: a program that embeds mlcls with a handler
    of its own keeps it. A repeated SIGTERM while the first one's cleanup runs is ignored; SIGKILL still stops at
    once. (Training has its own: a request to stop at the next step, training/interrupt.py.)"""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated

    signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


class RunUnfinished(RunDirError):
    """A run that is still being trained, or whose training stopped: the message says which, and how to go on."""


def shell_command(*words: str | Path) -> str:
    """A command for the user to copy into a shell: each word quoted where it must be (shlex.quote), so that a
    run name with a space, a quote or a non-ASCII letter stays one word."""
    return " ".join(shlex.quote(str(word)) for word in words)


def resume_command(final: Path, processes: int = 1) -> str:
    """`mlcls train --resume runs/NAME`, quoted for a shell: what continues an interrupted run (one trained by
    several processes: under `accelerate launch` with as many, which the resume checks)."""
    if processes > 1:
        return shell_command("accelerate", "launch", "--num_processes", str(processes), "-m", "mlcls", "train",
                             "--resume", final)
    return shell_command("mlcls", "train", "--resume", final)
