"""A client that hangs up before its answer: the handler stops waiting and its work is cancelled (which drops its
records still queued in the batcher), rather than scoring records nobody will read while others wait."""

from __future__ import annotations

import asyncio

import pytest

from mlcls.serving.routes import ClientGone, while_connected


class FakeRequest:
    """What while_connected reads of a request: ASGI messages, the disconnect after `gone_after` seconds."""

    def __init__(self, gone_after: float):
        self.gone_after = gone_after

    async def receive(self) -> dict:
        await asyncio.sleep(self.gone_after)
        return {"type": "http.disconnect"}


def test_the_work_is_cancelled_when_the_client_leaves_first():
    cancelled = []

    async def slow_scoring():
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def main():
        with pytest.raises(ClientGone):
            await asyncio.wait_for(while_connected(FakeRequest(0.05), slow_scoring()), timeout=5)

    asyncio.run(main())
    assert cancelled == [True]


def test_the_answer_is_returned_when_the_work_ends_first():
    async def quick():
        await asyncio.sleep(0.01)
        return 42

    assert asyncio.run(while_connected(FakeRequest(30), quick())) == 42


def test_the_works_own_error_goes_through():
    async def broken():
        raise ValueError("the model broke")

    with pytest.raises(ValueError, match="the model broke"):
        asyncio.run(while_connected(FakeRequest(30), broken()))


def test_a_client_that_hangs_up_mid_upload_is_a_499_not_an_internal_error():
    """Starlette raises ClientDisconnect from the body's stream; it went to the 500 handler, which logs a
    traceback for every aborted upload."""
    from starlette.requests import Request

    from mlcls.serving.api_errors import ApiError
    from mlcls.serving.request import read_body

    messages = [{"type": "http.request", "body": b'{"records": [', "more_body": True}, {"type": "http.disconnect"}]

    async def receive() -> dict:
        return messages.pop(0)

    request = Request({"type": "http", "method": "POST", "headers": []}, receive)
    with pytest.raises(ApiError) as caught:
        asyncio.run(read_body(request, 8192))
    assert caught.value.status == 499 and caught.value.message == "the client closed the connection"
