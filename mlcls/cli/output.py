"""What every command shares besides its options: the two consoles, notes, and files written atomically."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from rich.console import Console

from mlcls.atomic import TEMPORARY_NAME_ROOM, check_name_room
from mlcls.errors import MlclsError

# Results go to stdout (`mlcls predict ... | head` reads them); notes and errors to stderr.
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def print_notes(notes: Iterable[str]) -> None:
    for note in notes:
        err.print(f"note: {note}", markup=False)


# the longest name written beside an output: predict's OUT.partial.sha256, written atomically (its temporary name)
OUTPUT_NAME_ROOM = len(".partial.sha256") + TEMPORARY_NAME_ROOM


def check_apart(inputs: dict[str, str | Path | None], outputs: dict[str, Path | None],
                runs: dict[str, str | Path | None] | None = None) -> None:
    """Refuse, before anything is read, an output file that is one of the inputs or another output: `-o
    data.jsonl` would replace the user's data with predictions, and two outputs in one file would keep whichever
    was renamed into place last while the command reported both written. Compared as the file system resolves
    them (links, `..`, and a hard link to the same file). Keys name the option (`--output`); None: not given.
    `runs`: run folders the command reads (a name -> its path): no output may go inside one (`--json
    RUN/thresholds.json` would break the run)."""
    import os

    folders = {name: os.path.realpath(run) for name, run in (runs or {}).items() if run is not None}
    for name, path in outputs.items():
        if path is None:
            continue
        if str(path) == "-" and name != "--output":  # -o - is stdout; the others are files
            raise MlclsError(f"{name} -: name a file (standard output is for the command's own output)")
        # predict's --output has its checksum beside it; the others a temporary name only
        check_name_room(path, OUTPUT_NAME_ROOM if name == "--output" else TEMPORARY_NAME_ROOM, name)
        for run_name, folder in folders.items():
            if os.path.isdir(folder) and os.path.realpath(path).startswith(folder + os.sep):
                raise MlclsError(f"{path}: {name} is inside {run_name} ({folder}); writing it would change that "
                                 "run (choose a file outside it)")

    def same(a: Path, b: Path) -> bool:
        if os.path.realpath(a) == os.path.realpath(b):
            return True
        try:
            return os.path.samefile(a, b)
        except OSError:  # one of them does not exist yet: not the same file
            return False

    given_inputs = [(name, Path(path)) for name, path in inputs.items() if path is not None and str(path) != "-"]
    given_outputs = [(name, path) for name, path in outputs.items() if path is not None]
    for i, (name, path) in enumerate(given_outputs):
        for input_name, input_path in given_inputs:
            if same(path, input_path):
                raise MlclsError(f"{path}: {name} names {input_name}; writing it would replace that data (choose "
                                 "another file)")
        for other_name, other in given_outputs[:i]:
            if same(path, other):
                raise MlclsError(f"{path}: given as both {other_name} and {name}; one would replace the other "
                                 "(choose two files)")


def require_stdout(what: str) -> None:
    """Refuse, before any work, a command whose result goes to standard output when the shell closed it (`>&-`:
    Python then has no sys.stdout, and rich would drop the result without a word)."""
    import sys

    if sys.stdout is None:
        raise MlclsError(f"standard output is closed, and {what} goes there: leave it open, or redirect it to a "
                         "file (> FILE)")


def check_stdout_apart(inputs: dict[str, str | Path | None], advice: str = "redirect to another file") -> None:
    """Refuse standard output redirected into an input file (`mlcls predict data.jsonl >> data.jsonl` would append
    predictions to the data it is reading; with `>` the shell has already emptied it)."""
    import os
    import stat

    try:
        where = os.fstat(1)
    except OSError:  # no descriptor 1: require_stdout says so
        return
    if not stat.S_ISREG(where.st_mode):  # a terminal or a pipe: never one of the inputs
        return
    for name, path in inputs.items():
        if path is None:
            continue
        try:  # `-`: standard input (`mlcls predict - < d.jsonl >> d.jsonl`)
            given = os.fstat(0) if str(path) == "-" else os.stat(path)
        except OSError:  # not there (or no standard input): the reader says so
            continue
        if (given.st_dev, given.st_ino) == (where.st_dev, where.st_ino):
            shown = "standard input" if str(path) == "-" else path
            raise MlclsError(f"{shown}: standard output is redirected into {name}, which would mix this command's "
                             f"output into that data (a > redirection has already emptied it); {advice}")


@contextmanager
def rejects_file(path: Path | None) -> Iterator[IO[bytes] | None]:
    """The --rejects file, written atomically (and only complete when the command succeeds), or None."""
    if path is None:
        yield None
        return
    from mlcls.atomic import atomic_open

    with atomic_open(path, "wb") as handle:
        yield handle


def write_atomically(path: Path, write: Callable[[Any], Any], binary: bool = False) -> Any:
    """Write to a temporary file beside `path`, then rename: an error or a kill leaves no half file."""
    from mlcls.atomic import atomic_open

    with atomic_open(path, "wb" if binary else "w") as handle:
        return write(handle)
