"""Dynamic batching: many small requests scored like one big file.

Each request puts its records on a queue (cut into pieces of at most `max_batch` records) and awaits their
scores. One collector task on the event loop takes queued pieces, in arrival order, until `max_batch` records
are gathered, the oldest of them has waited `max_wait_s` and arrivals have paused for a quarter of it (the
clients the last call answered are given that quarter from their answers to ask again), or every client the
last call answered has asked again, and scores them in one call of `score` on a single worker
thread: the event loop stays free to read requests and write answers while the model runs, and what arrives
during a call is scored together by the next one (under load, batches fill without waiting at all). `score` is
the scoring step of `mlcls predict` (app.scorer: scoring.score_chunk), so each call's records are scored as
predict scores a chunk of its file: windows sorted by length into forward passes of predict's batch size and
padding, answered in order. A call that fails is retried request by request, so that one request's bad records
fail that request only.

Standard library and numpy only: no FastAPI here, so the batching is testable without the `serve` extra.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import numpy as np


class NotRunning(RuntimeError):
    """The batcher is not started, or is stopping: no new work is taken."""


@dataclass
class _Piece:
    items: Sequence[Any]
    future: asyncio.Future
    arrived: float  # loop.time() when queued
    source: Any = None  # who asked (the client's connection), None: unknown


@dataclass
class BatchStats:
    calls: int = 0  # calls of the scoring function
    records: int = 0  # records scored
    largest: int = 0  # records in the largest call
    busy_seconds: float = 0.0  # time spent in calls of the scoring function, on the worker thread

    def add(self, size: int, seconds: float) -> None:
        self.calls += 1
        self.records += size
        self.largest = max(self.largest, size)
        self.busy_seconds += seconds


class DynamicBatcher:
    """`await batcher.score(items)` -> the rows `score(items)` would return, computed together with the items of
    other requests that arrive within `max_wait_s` (at most `max_batch` items per call)."""

    def __init__(self, score: Callable[[list[Any]], np.ndarray], max_batch: int = 64, max_wait_s: float = 0.01,
                 executor: ThreadPoolExecutor | None = None):
        """`executor`: the one thread that runs `score` (server.py's, which loaded the model: see there why one
        thread does all of it), left running at stop(); None: the batcher starts its own and stops it."""
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._score = score
        self._given = executor
        self.max_batch = max_batch
        self.max_wait_s = max(0.0, max_wait_s)
        self.stats = BatchStats()
        self._queue: deque[_Piece] = deque()
        self._queued = 0  # items in the queue
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._busy = False  # a call of `score` is running
        # the sources the last call answered (None: one was unknown, or no call yet): clients that send their
        # next request on each answer are all back once these have asked again, and nobody else is waited for
        self._returning: set | None = None
        self._answered_at = 0.0  # loop.time() when the last call's answers were handed out

    @property
    def queued(self) -> int:
        """Items waiting to be scored (not counting those being scored now)."""
        return self._queued

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        if self.running:
            return
        self._wakeup = asyncio.Event()
        self._executor = self._given or ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlcls-inference")
        self._task = asyncio.get_running_loop().create_task(self._collect(), name="mlcls-batcher")

    async def warm_up(self, items: Sequence[Any]) -> None:
        """Score `items` on the worker thread, outside the stats: the memory a full call needs is taken there,
        in the thread (and the allocator arena) that will score every request."""
        if not self.running:
            raise NotRunning("the batcher is not started")
        await asyncio.get_running_loop().run_in_executor(self._executor, self._score, list(items))

    async def stop(self) -> None:
        """Finish the work queued so far, then stop (new work is refused from the start of the call)."""
        task, self._task = self._task, None
        if task is None:
            return
        while (self._queue or self._busy) and not task.done():
            await asyncio.sleep(0.01)
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        for piece in self._queue:  # only when the collector died: nothing is left waiting forever
            if not piece.future.done():
                piece.future.set_exception(NotRunning("the server is shutting down"))
        self._queue.clear()
        self._queued = 0
        if self._executor is not None and self._executor is not self._given:
            self._executor.shutdown(wait=True)
        self._executor = None

    async def score(self, items: Sequence[Any], source: Any = None) -> np.ndarray:
        """The rows of `items`; `source`: who asks (a hashable id of the client's connection), or None."""
        if not self.running:
            raise NotRunning("the server is not ready (starting or shutting down)")
        loop = asyncio.get_running_loop()
        futures = []
        for start in range(0, len(items), self.max_batch):
            piece = _Piece(items[start:start + self.max_batch], loop.create_future(), loop.time(), source)
            self._queue.append(piece)
            self._queued += len(piece.items)
            futures.append(piece.future)
        assert self._wakeup is not None
        self._wakeup.set()
        try:
            parts = await asyncio.gather(*futures)
        except BaseException:
            for future in futures:  # a client gone: its pieces still queued are dropped, not scored
                future.cancel()
            self._drop_cancelled()
            raise
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._wakeup is not None
        while True:
            while not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            # wait for company, up to max_wait_s after the oldest queued piece arrived (pieces that queued while
            # the model was busy are past it already: they go at once), and no longer than a quarter of it after
            # the newest: once arrivals pause, the batch is what it will be (16 closed-loop clients send their
            # next requests within a few ms of their answers; waiting out max_wait_s left the model idle); and
            # not at all once the clients the last call answered are all back (one client: it never waits)
            # And the clients the last call answered get a quarter of max_wait_s from their answers to ask again
            # even when what is queued is past its own wait: 16 closed-loop clients otherwise split into two
            # cohorts of 8 whose calls alternate for good (each cohort queues while the other's call runs), and
            # one call of 16 articles sorts its windows into fuller, less padded passes than two calls of 8.
            deadline = self._queue[0].arrived + self.max_wait_s
            grace = self._answered_at + self.max_wait_s / 4 if self._returning else 0.0
            while self._queue and self._queued < self.max_batch and not self._all_back() and (remaining := max(
                    grace, min(deadline, self._queue[-1].arrived + self.max_wait_s / 4)) - loop.time()) > 0:
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except asyncio.TimeoutError:
                    break
            batch: list[_Piece] = []
            size = 0
            while self._queue and size + len(self._queue[0].items) <= self.max_batch:
                piece = self._queue.popleft()
                self._queued -= len(piece.items)
                if piece.future.done():  # cancelled: its request is gone
                    continue
                batch.append(piece)
                size += len(piece.items)
            if not batch:
                continue
            self._busy = True
            try:
                await self._run_batch(loop, batch)
            finally:
                self._busy = False
            sources = {piece.source for piece in batch}
            self._returning = None if None in sources else sources
            self._answered_at = loop.time()

    def _drop_cancelled(self) -> None:
        """Take the pieces of requests gone out of the queue now, not when the collector reaches them: else they
        count in `queued` (what /ready reports) and towards a full call, which then starts short of max_batch.
        A queued piece's future is done only when cancelled (answers are set once pieces leave the queue)."""
        if any(piece.future.done() for piece in self._queue):
            self._queue = deque(piece for piece in self._queue if not piece.future.done())
            self._queued = sum(len(piece.items) for piece in self._queue)

    def _all_back(self) -> bool:
        """Whether every source the last call answered has asked again. Counting pieces instead let a call of 1
        (one client) start the next one at the first of 4 new clients' requests, and calls of 2 and 2 then
        alternated for good: 20% slower than calls of 4."""
        return bool(self._returning) and self._returning <= {piece.source for piece in self._queue}

    def _timed_score(self, items: list[Any]) -> tuple[np.ndarray, float]:
        """`score(items)` and the seconds it took, on the worker thread (the model's busy time, hand-offs apart)."""
        started = time.perf_counter()
        rows = self._score(items)
        return rows, time.perf_counter() - started

    async def _run_batch(self, loop: asyncio.AbstractEventLoop, batch: list[_Piece]) -> None:
        items = [item for piece in batch for item in piece.items]
        try:
            rows, seconds = await loop.run_in_executor(self._executor, self._timed_score, items)
        except Exception as exc:
            if len(batch) == 1:  # this request fails; the server goes on
                if not batch[0].future.done():
                    batch[0].future.set_exception(exc)
                return
            for piece in batch:  # one request's records broke the call: each request alone, so only it fails
                await self._run_batch(loop, [piece])
            return
        self.stats.add(len(items), seconds)
        start = 0
        for piece in batch:
            end = start + len(piece.items)
            if not piece.future.done():
                piece.future.set_result(rows[start:end])
            start = end
