"""Errors a user can fix. The CLI prints them as one line (no traceback) and exits with code 1."""

from __future__ import annotations

from pathlib import Path


class MlclsError(Exception):
    """Base class: the message is complete and meant for the user."""


class ConfigError(MlclsError):
    """An unknown key, a value of the wrong type, an option out of range."""


class DataError(MlclsError):
    """A bad input file or record; the message names the file and, where there is one, the line."""

    def __init__(self, path: str | Path, line: int | None, problem: str):
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {problem}")


class RunDirError(MlclsError):
    """A run directory that is missing, incomplete or corrupt."""
