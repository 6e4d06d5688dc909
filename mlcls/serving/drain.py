"""SIGTERM's drain with a deadline: the requests in flight get `--drain-seconds` to finish; each one still
unfinished then is answered a JSON 503 with `Retry-After`, in the one error shape, and the log gets one line.

Without this, uvicorn's own graceful-shutdown timeout cancels the unfinished requests: each client gets a
plain-text `500 Internal Server Error` and the log a CancelledError traceback per request. Here the deadline is
ours (Drain), and uvicorn's timeout is set a margin past it (server.py), so uvicorn never has a request left to
cancel: DrainDeadline, an ASGI middleware around the whole app, races each HTTP request against the deadline
and answers the ones that lose it itself. The request's own work is cancelled (its records still queued are
dropped by the batcher; a model call already running finishes on the worker thread and its rows are discarded).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from contextlib import suppress
from typing import Any

from mlcls.serving.api_errors import error_response

RETRY_AFTER_SECONDS = 5  # what a 503 at the drain deadline tells the client: retry (elsewhere, or after a restart)


class Drain:
    """The drain's clock: `begin()` (from the signal handler) starts it; `expired` is set `seconds` later."""

    def __init__(self, seconds: float):
        self.seconds = max(0.0, float(seconds))
        self.expired: asyncio.Event | None = None  # made on the server's event loop (bind)
        self.begun = False
        self.cut_off = 0  # requests answered 503 at the deadline
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The app's lifespan calls this on the loop that serves the requests."""
        self._loop, self.expired = loop, asyncio.Event()

    def begin(self) -> None:
        """Start the clock. Safe from a signal handler: the loop is only asked to schedule the deadline."""
        if self._loop is None or self.begun:
            return
        self.begun = True
        self._loop.call_soon_threadsafe(self._schedule)

    def _schedule(self) -> None:
        assert self._loop is not None and self.expired is not None
        self._loop.call_later(self.seconds, self.expired.set)

    def message(self) -> str:
        return (f"the server is shutting down and this request did not finish within the drain time "
                f"({self.seconds:g} s); retry it in {RETRY_AFTER_SECONDS} s")


async def finished_before(work: asyncio.Future, stop: Awaitable[Any]) -> bool:
    """Whether `work` ends before `stop` does (the drain's deadline; a client's disconnect). When `stop` comes
    first, `work` is cancelled and awaited to its end; `stop` is cancelled either way. A cancellation of the
    caller itself (uvicorn's own timeout) cancels the work too."""
    stopper = asyncio.ensure_future(stop)
    try:
        await asyncio.wait({work, stopper}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        work.cancel()
        raise
    finally:
        stopper.cancel()
    if work.done():
        return True
    work.cancel()
    with suppress(asyncio.CancelledError):
        await work
    return False


class DrainDeadline:
    """ASGI middleware: an HTTP request unfinished when the drain's time is up gets a JSON 503 with Retry-After
    (or, when its answer had started already, its connection is closed: the status line is sent)."""

    def __init__(self, app: Any, drain: Drain):
        self.app, self.drain = app, drain

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        expired = self.drain.expired
        if scope["type"] != "http" or expired is None:
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        work = asyncio.ensure_future(self.app(scope, receive, tracked_send))
        if await finished_before(work, expired.wait()):
            work.result()  # the app's own exception, if any, as without this middleware
            return
        self.drain.cut_off += 1
        if not started:
            response = error_response(503, self.drain.message(),
                                      headers={"Retry-After": str(RETRY_AFTER_SECONDS), "Connection": "close"})
            await response(scope, receive, send)
