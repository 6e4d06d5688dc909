"""Download a file once into a cache: streamed, checksummed, written atomically, reused next time.

urllib (standard library) rather than requests/httpx: one GET with a progress bar needs nothing more,
and keeps the dependency list to what the product uses.
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from mlcls.atomic import atomic_open
from mlcls.errors import MlclsError

CHUNK = 1 << 16


def parse_checksum(checksum: str) -> tuple[str, str]:
    """'sha256:HEX' or 'md5:HEX' -> (algorithm, hex digest)."""
    algorithm, sep, digest = checksum.partition(":")
    if not sep or algorithm not in ("sha256", "md5") or not digest:
        raise MlclsError(f"checksum {checksum!r}: expected sha256:HEX or md5:HEX")
    return algorithm, digest.lower()


def file_digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(url: str, dest: Path, checksum: str, console: Console | None = None, timeout: float = 15.0) -> Path:
    """Return `dest`, downloading `url` there first unless a copy with the right checksum is cached."""
    algorithm, expected = parse_checksum(checksum)
    if dest.is_file() and file_digest(dest, algorithm) == expected:
        return dest
    digest = hashlib.new(algorithm)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, atomic_open(dest, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with _progress(console) as progress:
                task = progress.add_task(f"downloading {url.rsplit('/', 1)[-1]}", total=total)
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    progress.advance(task, len(chunk))
            if digest.hexdigest() != expected:  # raised inside atomic_open: the partial file is removed
                raise MlclsError(f"{url}: checksum mismatch ({algorithm} expected {expected}, "
                                 f"got {digest.hexdigest()}); nothing was kept")
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise MlclsError(f"cannot download {url} ({reason}); offline? pass --source with a local copy") from None
    return dest


def _progress(console: Console | None) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    TimeRemainingColumn(), console=console or Console(stderr=True), transient=True)
