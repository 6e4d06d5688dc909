"""What every command shares besides its options: the two consoles, notes, and files written atomically."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from rich.console import Console

# Results go to stdout (`mlcls predict ... | head` reads them); notes and errors to stderr.
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def print_notes(notes: Iterable[str]) -> None:
    for note in notes:
        err.print(f"note: {note}", markup=False)


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
