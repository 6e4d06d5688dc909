"""Files that appear whole or not at all: written under a temporary name beside the target, then renamed.

A crash, a Ctrl-C or an error in the middle leaves no half-written output for a user to mistake for a
complete one (os.replace is atomic on POSIX within one file system).

The file system's own faults (a full disk, a quota, a read-only or forbidden folder) are the user's to fix:
they become a one-line `WriteError` that names the file and the cause, never a traceback. To tell a failed
write to *this* file from any other OSError raised while the caller works, the files opened here mark the
OSErrors their writes raise (`failed_write`).
"""

from __future__ import annotations

import errno
import io
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

from mlcls.errors import MlclsError


class WriteError(MlclsError):
    """A file could not be written because of the file system (full, read-only, forbidden)."""


_CAUSES = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "read-only file system",
}


def describe_os_error(exc: BaseException) -> str:
    """The cause of an OSError in a few lowercase words: 'no space left on device', 'permission denied'."""
    number = getattr(exc, "errno", None)
    if number in _CAUSES:
        return _CAUSES[number]
    text = getattr(exc, "strerror", None) or (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return text[:1].lower() + text[1:]


def make_folder(folder: Path) -> None:
    """mkdir -p `folder`; an OSError whose words name the cause: a file on the way ("data.jsonl is a file, not a
    folder") where mkdir says only "file exists"."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
        if blocker is None:
            raise
        raise NotADirectoryError(exc.errno, f"{blocker} is a file, not a folder") from None


def is_disk_full(exc: BaseException) -> bool:
    """A full disk or quota, also as the libraries word it when they drop the errno (safetensors, torch)."""
    if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc)
    return any(sign in text for sign in ("No space left on device", "os error 28", "StorageFull",
                                         "Disk quota exceeded", "os error 122", "QuotaExceeded"))


class _RawFile(io.FileIO):
    """A FileIO whose failed writes carry the path they were writing (see `failed_write`)."""

    def __init__(self, fd: int, target: Path):
        super().__init__(fd, "w")
        self.target = target

    def write(self, data) -> int | None:
        try:
            return super().write(data)
        except OSError as exc:
            exc.mlcls_target = self.target  # type: ignore[attr-defined]
            raise


def open_for_writing(path: str | Path, mode: str = "w", *, fd: int | None = None, append: bool = False) -> IO:
    """`path` opened for writing (text: UTF-8, newlines as written; "wb": binary), or the already open `fd`.
    An OSError from a write to it (also one raised later by flush or close) answers `failed_write`."""
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', not {mode!r}")
    path = Path(path)
    opened_here = fd is None
    if fd is None:
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC) | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(path, flags, 0o666)
    try:
        raw = _RawFile(fd, path)
    except BaseException:
        if opened_here:  # a descriptor handed in stays the caller's to close
            os.close(fd)
        raise
    buffered = io.BufferedWriter(raw)
    if mode == "wb":
        return buffered
    return io.TextIOWrapper(buffered, encoding="utf-8", newline="", write_through=False)


def failed_write(exc: BaseException, path: str | Path) -> bool:
    """Whether `exc` was raised by a write to the file `open_for_writing` opened at `path`."""
    return isinstance(exc, OSError) and str(getattr(exc, "mlcls_target", "")) == str(Path(path))


def close_quietly(handle: IO) -> None:
    """Close, whatever flushing what is left raises (the file descriptor is released all the same): for
    cleanup after an error, where a full disk would otherwise raise again from close()."""
    with suppress(Exception):
        handle.close()
    if not handle.closed:  # close() failed before releasing the descriptor
        with suppress(Exception):
            os.close(handle.fileno())


def _process_umask() -> int:
    """The process's umask. Read by setting it and setting it back (no other call gives it portably): once, at
    import, before a command starts threads that create files."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _process_umask()


def _mode_for(path: Path) -> int:
    """The permissions `path` gets: those of the file it replaces, else those of a file `open` would create
    (0666 less the umask). mkstemp makes its file 0600, readable by its owner alone: a run, a report or a
    predictions file would not be readable by the colleagues it is shared with."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~_UMASK


NAME_MAX = 255  # bytes in one file name (Linux's file systems, macOS's)
TEMPORARY_NAME_ROOM = len("..xxxxxxxx.tmp")  # atomic_open's temporary name is `.NAME.xxxxxxxx.tmp` (mkstemp)


def check_name_room(path: Path, room: int, what: str) -> None:
    """Refuse, in one line and before any work, a name too long for the files mlcls writes beside it, `room`
    bytes longer (a temporary `.NAME.xxxxxxxx.tmp`, NAME.partial.sha256): the file system would refuse them at
    the end, or `is_dir()` raise on the name itself."""
    size = len(os.fsencode(path.name))
    if size + room > NAME_MAX:
        raise MlclsError(f"{path}: {what}: a name of {size} bytes; at most {NAME_MAX - room} here (mlcls writes "
                         "files named after it beside it)")


def open_permissions(*paths: Path) -> None:
    """Give files that a library wrote (safetensors' save_file and so save_pretrained make them 0600, readable by
    their owner alone) the permissions `open` would have given them, 0666 less the umask; a folder: every file
    under it. A file system without modes keeps its own default."""
    for path in paths:
        files = [p for p in path.rglob("*") if p.is_file() and not p.is_symlink()] if path.is_dir() else [path]
        for file in files:
            with suppress(OSError):
                os.chmod(file, 0o666 & ~_UMASK)


@contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO]:
    """A handle on a temporary file beside `path`, renamed to `path` when the block completes. Any error
    removes the temporary file (and leaves an earlier `path` as it was); a file-system fault writing it
    (full disk, quota, permission, read-only) becomes a one-line WriteError naming `path`."""
    path = Path(path)
    try:
        make_folder(path.parent)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with suppress(OSError):  # a file system without modes (some network shares): its own default then
            os.fchmod(fd, _mode_for(path))
    except OSError as exc:
        raise WriteError(f"{path}: cannot write ({describe_os_error(exc)})") from None
    handle, finishing = None, False
    try:
        handle = open_for_writing(tmp, mode, fd=fd)
        yield handle
        finishing = True  # from here on every OSError is ours: flushing the rest, closing, renaming
        handle.close()
        os.replace(tmp, path)
    except BaseException as exc:
        if handle is None:
            os.close(fd)
        else:
            close_quietly(handle)
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and (finishing or failed_write(exc, tmp)):
            raise WriteError(f"{path}: cannot write ({describe_os_error(exc)}; nothing was written)") from None
        raise


def try_lock(path: Path) -> IO | None:
    """An exclusive flock on the file `path` (created if need be), held while the returned handle is open; None
    when another writer holds it. flock is released by the kernel when a process dies, so a killed writer never
    leaves a name locked. Raises OSError when the file cannot be created (the caller says what for)."""
    import fcntl

    handle = open(path, "a")  # noqa: SIM115 (held open: the lock lives as long as the handle)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


def release_lock(handle: IO) -> None:
    """Remove the lock file, then let go of it (in this order: a writer that opens the name next makes a new one)."""
    Path(handle.name).unlink(missing_ok=True)
    handle.close()

