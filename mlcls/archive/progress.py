"""The progress bar of an archive job: shards done out of those to do, records scored across every worker and
records/s since the job started (model loading included: what the archive costs, not a warmed-up peak).

Workers add to a counter after each chunk; a thread here reads it twice a second, while the main thread waits
on Ray Data for finished shards.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import suppress
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

POLL_SECONDS = 0.5


class ArchiveProgress:
    def __init__(self, shards: int, read_records: Callable[[], int], console: Console | None = None):
        self.read_records = read_records
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("shards"),
            TextColumn("{task.fields[records]:,} records"), TextColumn("{task.fields[rate]:.1f} records/s"),
            TimeElapsedColumn(), console=console or Console(stderr=True), transient=True,
        )
        self.task = self.progress.add_task("predicting", total=shards, records=0, rate=0.0)
        self.started = time.perf_counter()
        self.records = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._poll, name="mlcls-archive-progress", daemon=True)

    def __enter__(self) -> ArchiveProgress:
        self.started = time.perf_counter()
        self.progress.start()
        self.thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.progress.stop()

    def shard_done(self, records: int | None = None) -> None:
        """One more shard finished; `records`, when known, lifts the count to at least what finished shards hold
        (the counter's last messages may still be on their way)."""
        self.progress.advance(self.task)
        if records is not None:
            self._show(max(self.records, records))

    def _poll(self) -> None:
        while not self.stop.wait(POLL_SECONDS):
            with suppress(Exception):  # a slow or gone counter must not stop the job: the bar just waits
                self._show(max(self.records, int(self.read_records())))

    def _show(self, records: int) -> None:
        self.records = records
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        self.progress.update(self.task, records=records, rate=records / elapsed)
