"""How `mlcls serve`'s batcher forms and runs its calls: through predict's scoring step (a chunked run's articles
answered as predict scores them), on the one thread it is given (the thread that loaded the run), with the time
the model was busy counted, and starting a call at once when every client of the last call has asked again.
Batching is proven by handshakes and by which items went into which call, never by a time window.

    pytest -q tests/serving/test_serve_batching.py
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tests.inference.test_scoring import mixed_records

pytest.importorskip("fastapi", reason="the serve extra (pip install 'mlcls[serve]')")
from mlcls.serving.app import create_app  # noqa: E402
from mlcls.serving.batcher import DynamicBatcher  # noqa: E402
from mlcls.serving.settings import ServeSettings  # noqa: E402


@pytest.fixture(scope="module")
def chunked_run(run_dir):
    """The tiny run, read as chunks of 8 tokens (2 shared, at most 4): several windows per article."""
    from mlcls.inference.loading import load_run

    run = load_run(run_dir, precision="fp32")
    model = run.config.model
    model.long_text, model.max_length, model.chunk_overlap, model.max_chunks = "chunks", 8, 2, 4
    return run


def test_a_chunked_run_is_served_as_predict_scores_it(chunked_run):
    """32 one-record requests at once, max_batch 16: two calls of 16 articles (one to four windows each), every
    answer its own article's scores as predict's scoring of the whole file gives them (4 decimals, fp32)."""
    import httpx

    from mlcls.inference.scoring import score_records

    records = mixed_records(32, seed=11)
    expected = np.concatenate([s for _, s in score_records(chunked_run, records, None)])
    app = create_app(chunked_run, ServeSettings(max_batch=16, max_wait_ms=120_000))  # full calls, never the clock
    windows_before = chunked_run.windows.windows

    async def ask():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as session:
                return await asyncio.gather(*(session.post("/v1/predict", json={
                    "records": [{"id": r.id, "text": r.text}], "scores": "all"}) for r in records))

    answers = asyncio.run(ask())
    assert app.state.batcher.stats.calls == 2 and app.state.batcher.stats.largest == 16
    labels = chunked_run.labels.labels
    for answer, record, row in zip(answers, records, expected, strict=True):
        prediction = answer.json()["predictions"][0]
        assert prediction["id"] == record.id
        np.testing.assert_allclose([prediction["scores"][name] for name in labels], row, atol=6e-5)
    assert chunked_run.windows.windows - windows_before > 2 * len(records)  # several windows per article, served


def rows_of(items) -> np.ndarray:
    return np.array([[float(len(str(item)))] for item in items], dtype=np.float32)


def test_a_call_starts_at_once_when_every_client_of_the_last_call_has_asked_again():
    """Clients a and b each send 4 items (one full call of 8), then 1 item each: with a wait for company of an
    hour, that second call can only start because both are back. Then a and a new client c ask: as many requests
    as the last call answered, but b is not back, so they wait for it (while the loop runs freely), and the
    third call holds all three."""
    calls: list[list] = []

    def score(items):
        calls.append(list(items))
        return rows_of(items)

    async def scenario():
        batcher = DynamicBatcher(score, max_batch=8, max_wait_s=3600)
        await batcher.start()
        await asyncio.gather(batcher.score(["a"] * 4, source="a"), batcher.score(["b"] * 4, source="b"))
        await asyncio.wait_for(asyncio.gather(batcher.score(["a1"], source="a"), batcher.score(["b1"], source="b")),
                               120)  # a bound against the hour's wait, which would fail the test
        early = [asyncio.ensure_future(batcher.score(["a2"], source="a")),
                 asyncio.ensure_future(batcher.score(["c1"], source="c"))]
        for _ in range(50):  # the collector gets every chance to start a call without b
            await asyncio.sleep(0)
        together = await asyncio.wait_for(asyncio.gather(*early, batcher.score(["b2"], source="b")), 120)
        await batcher.stop()
        return together

    together = asyncio.run(scenario())
    assert calls == [["a"] * 4 + ["b"] * 4, ["a1", "b1"], ["a2", "c1", "b2"]]
    assert [t.ravel().tolist() for t in together] == [[2.0], [2.0], [2.0]]


def test_clients_just_answered_are_waited_for_so_two_cohorts_merge_into_one_call():
    """Client a's call runs while b queues (and waits past max_wait_s). When a is answered, b's request alone is
    not scored at once: a, which asks again on its answer, is given a quarter of max_wait_s to come back, and
    the next call holds both. Without that grace a's and b's calls would alternate for good (the cohorts of
    issue 31's 16 single-article clients: calls of 8.5 articles instead of 16)."""
    calls: list[list] = []
    b_queued = threading.Event()

    def score(items):
        calls.append(list(items))
        if items == ["a1"]:  # the first call: b queues meanwhile, and its wait runs out before the answer
            assert b_queued.wait(30)
            threading.Event().wait(0.6)
        return rows_of(items)

    async def client_a(batcher):
        await batcher.score(["a1"], source="a")
        return await batcher.score(["a2"], source="a")  # on its answer, as a closed-loop client does

    async def scenario():
        batcher = DynamicBatcher(score, max_batch=8, max_wait_s=0.4)  # grace: 0.1 s after the answer
        await batcher.start()
        first = asyncio.ensure_future(client_a(batcher))
        while not calls:
            await asyncio.sleep(0.001)
        second = asyncio.ensure_future(batcher.score(["b1"], source="b"))
        while batcher.queued < 1:
            await asyncio.sleep(0)
        b_queued.set()
        await asyncio.wait_for(asyncio.gather(first, second), 60)
        await batcher.stop()

    asyncio.run(scenario())
    assert calls == [["a1"], ["b1", "a2"]]


def test_a_gone_clients_queued_items_leave_the_queue_at_once():
    """While a call runs, client a queues 4 items and hangs up (its request cancelled, as serve's handler is):
    they leave the queue then, not when the collector reaches them, so /ready's `queued` says 0, and they are
    never scored."""
    calls: list[list] = []
    release = threading.Event()

    def score(items):
        calls.append(list(items))
        if items == ["x"]:
            assert release.wait(30)
        return rows_of(items)

    async def scenario():
        batcher = DynamicBatcher(score, max_batch=8, max_wait_s=0)
        await batcher.start()
        running = asyncio.ensure_future(batcher.score(["x"], source="x"))
        while not calls:
            await asyncio.sleep(0.001)
        gone = asyncio.ensure_future(batcher.score(["a"] * 4, source="a"))
        while batcher.queued < 4:
            await asyncio.sleep(0)
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        queued_after = batcher.queued
        release.set()
        await asyncio.wait_for(running, 30)
        await asyncio.wait_for(batcher.score(["b"], source="b"), 30)
        await batcher.stop()
        return queued_after

    assert asyncio.run(scenario()) == 0
    assert calls == [["x"], ["b"]]


def test_the_model_time_is_counted_and_a_given_thread_runs_every_call_and_outlives_the_batcher():
    inference = ThreadPoolExecutor(max_workers=1, thread_name_prefix="given")
    given = inference.submit(lambda: threading.current_thread().name).result()
    threads: list[str] = []

    def score(items):
        threads.append(threading.current_thread().name)
        return rows_of(items)

    async def scenario(executor):
        batcher = DynamicBatcher(score, max_batch=4, max_wait_s=0, executor=executor)
        await batcher.start()
        await batcher.warm_up(["w"])
        await asyncio.gather(*(batcher.score([i]) for i in range(6)))
        await batcher.stop()
        return batcher

    batcher = asyncio.run(scenario(inference))
    assert set(threads) == {given} and len(threads) >= 3  # the warm-up and every call (6 items, 4 at most)
    assert batcher.stats.records == 6 and batcher.stats.busy_seconds > 0
    assert inference.submit(lambda: "still running").result() == "still running"  # not shut down by stop()
    inference.shutdown()
    threads.clear()
    own = asyncio.run(scenario(None))
    assert len(set(threads)) == 1 and threads[0].startswith("mlcls-inference") and not own.running  # its own


def test_ready_says_how_long_the_model_was_busy(chunked_run):
    from fastapi.testclient import TestClient

    with TestClient(create_app(chunked_run)) as client:
        assert client.get("/ready").json()["scored"]["busy_seconds"] == 0
        assert client.post("/v1/predict", json={"records": [{"text": "cocoa beans"}]}).status_code == 200
        scored = client.get("/ready").json()["scored"]
    assert scored["batches"] == 1 and scored["busy_seconds"] > 0
