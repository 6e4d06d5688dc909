"""`mlcls serve`: the endpoints, every bad input a 4xx naming the field (and the server answering after it), the
bearer token, answers equal to `mlcls predict`'s on the tiny run, dynamic batching (concurrent requests scored in
fewer calls), start-up failures as one line, and SIGTERM draining the requests in flight (a subprocess on
127.0.0.1, bounded in time). FastAPI's TestClient and httpx's ASGI transport need no network. No assertion here
depends on how fast the machine is: batching and draining are proven by handshakes, not by time windows.

    pytest -q tests/serving/test_serve.py
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mlcls.cli import app as cli_app
from tests.conftest import TINY_RECORDS, write_jsonl

fastapi = pytest.importorskip("fastapi", reason="the serve extra (pip install 'mlcls[serve]')")
from fastapi.testclient import TestClient  # noqa: E402

from mlcls.serving.api_errors import ApiError  # noqa: E402
from mlcls.serving.app import create_app  # noqa: E402
from mlcls.serving.batcher import DynamicBatcher  # noqa: E402
from mlcls.serving.request import FIELDS, read_body  # noqa: E402
from mlcls.serving.settings import Limits, ServeSettings  # noqa: E402

REQUEST_RECORDS = [{k: v for k, v in r.items() if k != "labels"} for r in TINY_RECORDS]


@pytest.fixture(scope="module")
def client(loaded):
    with TestClient(create_app(loaded)) as test_client:
        yield test_client


LIMITS = Limits(max_records=5, max_text_chars=200, max_body_bytes=8192)


@pytest.fixture(scope="module")
def limited(loaded):
    with TestClient(create_app(loaded, ServeSettings(limits=LIMITS))) as test_client:
        yield test_client


def cli_predict(run_dir: Path, tmp_path: Path, rows: list[dict], *options: str) -> list[dict]:
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(cli_app, ["predict", str(source), "--model", str(run_dir), "-o", str(out), *options])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in out.read_text().splitlines()]


# ------------------------------------------------------------------ endpoints


def test_health_ready_labels_and_model(client, run_dir):
    assert client.get("/health").json() == {"status": "ok"}
    assert client.head("/health").status_code == 200  # a load balancer's HEAD probe
    ready = client.get("/ready").json()
    assert ready["ready"] is True and ready["run"] == "tiny"
    assert set(ready["scored"]) == {"records", "batches", "busy_seconds", "queued"}
    assert client.get("/v1/labels").json() == {"labels": ["cocoa", "grain", "oil"], "count": 3}
    card = client.get("/v1/model").json()
    assert card["name"] == "tiny" and card["labels"] == 3 and card["max_length"] == 32
    assert card["record_format"]["text_fields"] == ["text"] and card["record_format"]["id_field"] == "id"
    rule = json.loads((run_dir / "thresholds.json").read_text())
    assert card["decision_rule"]["rule"] == rule["rule"] and card["decision_rule"]["per_label"] == rule["per_label"]
    assert card["decision_rule"]["description"].startswith("per-label")
    assert card["metrics"] == json.loads((run_dir / "metrics.json").read_text())
    assert "config" not in card  # the training machine's paths stay in the run (test_model_card_shows_no_paths)
    assert card["serving"]["max_batch"] == 64 and card["serving"]["token_required"] is False


def test_openapi_and_docs(client):
    spec = client.get("/openapi.json").json()
    assert {"/v1/predict", "/v1/labels", "/v1/model", "/health", "/ready"} <= set(spec["paths"])
    body = spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["records"] and "top_k" in body["properties"]
    assert client.get("/docs").status_code == 200


def predict_body_schema(test_client) -> dict:
    spec = test_client.get("/openapi.json").json()
    return spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]


def schema_allows(schema: dict, value) -> bool:
    """JSON Schema's verdict on one option's value, for the keywords the options use: type (a name or a list),
    minimum, maximum, pattern (searched, as JSON Schema does: unanchored unless the pattern anchors itself).
    "integer" is taken as a JSON number without a fraction written, which is what the parser reads as one."""
    types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    python = {"null": type(None), "integer": int, "number": (int, float), "string": str}
    if isinstance(value, bool) or not any(isinstance(value, python[name]) for name in types):
        return False
    if isinstance(value, int | float):
        return not (("minimum" in schema and not value >= schema["minimum"])
                    or ("maximum" in schema and not value <= schema["maximum"]))
    if isinstance(value, str) and "pattern" in schema:
        return re.search(schema["pattern"], value) is not None
    return True


def candidate_values(schema: dict) -> list:
    """Values on both sides of each of the schema's bounds, of every JSON type, and strings near the pattern."""
    values = [None, True, False, "1", [1], {"a": 1}, 0.5, 1.5, math.nan, 7, -3]
    for bound in ("minimum", "maximum"):
        if bound in schema:
            values += [schema[bound] + step for step in (-1, -0.5, 0, 0.5, 1)]
    values += [schema.get("default"), "predicted", "all", "top-5", "top-05", "top-0", "top-", "top-x", "some",
               "all ", "top-5x", "xtop-5", "top-\u0663", ""]
    return values


def test_the_openapi_schema_of_predict_is_what_the_parser_accepts(limited):
    """The schema is made from the parser's declaration; this proves the two agree on the wire: every field of
    the schema is one the parser reads and the reverse, and for each option, every value on either side of
    its type, bounds and pattern is accepted by the server exactly when the schema allows it."""
    body = predict_body_schema(limited)
    assert set(body["properties"]) == set(FIELDS) and body["required"] == ["records"]
    assert body["additionalProperties"] is False  # an unknown field is refused (BAD: "unknown option")
    records = body["properties"]["records"]
    assert records["type"] == "array" and records["minItems"] == 1 and records["items"]["type"] == "object"
    assert limited.post("/v1/predict", json={"records": []}).status_code == 422
    assert limited.post("/v1/predict", json={"records": ["text"]}).status_code == 422
    checked = 0
    for name, schema in body["properties"].items():
        if name == "records":
            continue
        for value in candidate_values(schema):
            sent = json.dumps({"records": [{"text": "cocoa beans"}], name: value})  # (httpx's json= refuses NaN)
            answer = limited.post("/v1/predict", content=sent, headers={"content-type": "application/json"})
            assert answer.status_code in (200, 422), answer.text
            assert (answer.status_code == 200) == schema_allows(schema, value), (name, value, schema, answer.text)
            if answer.status_code == 422:
                assert answer.json()["error"]["field"] == name, answer.text
            checked += 1
    assert checked >= 4 * 20


def test_labels_list_is_the_runs_vocabulary(client, loaded):
    assert client.get("/v1/labels").json()["labels"] == loaded.labels.labels


# ------------------------------------------------------------------ the same answers as `mlcls predict`

OPTIONS = [
    ({}, []),
    ({"scores": "all"}, ["--scores", "all"]),
    ({"scores": "top-2"}, ["--scores", "top-2"]),
    ({"top_k": 2}, ["--top-k", "2"]),
    ({"threshold": 0.3, "scores": "all"}, ["--threshold", "0.3", "--scores", "all"]),
    ({"min_labels": 1}, ["--min-labels", "1"]),
]


@pytest.mark.parametrize(("body", "flags"), OPTIONS, ids=lambda v: json.dumps(v))
def test_predict_equals_mlcls_predict(client, run_dir, tmp_path, body, flags):
    expected = cli_predict(run_dir, tmp_path, TINY_RECORDS, *flags)
    answer = client.post("/v1/predict", json={"records": REQUEST_RECORDS, **body})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"predictions": expected}
    # one record per request: the same rows (scores do not depend on what a record is batched with)
    for record, row in zip(REQUEST_RECORDS[:4], expected[:4], strict=True):
        assert client.post("/v1/predict", json={"records": [record], **body}).json() == {"predictions": [row]}


def test_records_are_read_as_predict_reads_them(client, run_dir, tmp_path):
    """No id: the position stands in (a file's line number); integer ids become strings; labels and other
    fields are ignored; text is stripped."""
    rows = [{"text": "cocoa beans harvest"}, {"id": 7, "text": "  crude oil barrel  ", "labels": "whatever"},
            {"id": "x", "text": "museum choir", "extra": [1, 2]}]
    expected = cli_predict(run_dir, tmp_path, rows)
    answer = client.post("/v1/predict", json={"records": rows}).json()["predictions"]
    assert answer == expected
    assert [row["id"] for row in answer] == ["1", "7", "x"]


def test_the_tiny_run_tags_what_it_learnt(client):
    rows = client.post("/v1/predict", json={"records": REQUEST_RECORDS}).json()["predictions"]
    gold = {r["id"]: sorted(r["labels"]) for r in TINY_RECORDS}
    assert sum(sorted(row["labels"]) == gold[row["id"]] for row in rows) >= 10  # it memorised the tiny set


# ------------------------------------------------------------------ bad input: a 4xx naming the problem, never a 500

GOOD = {"records": [{"id": "ok", "text": "cocoa beans"}]}
BAD = [
    # (name, body bytes, status, field, index, words in the message)
    ("invalid JSON", b'{"records": [{"id": "a", "text": "x"}', 400, "body", None, "invalid JSON"),
    ("truncated", b'{"records": [', 400, "body", None, "invalid JSON"),
    ("not UTF-8", b'{"records": [{"id": "a", "text": "caf\xe9"}]}', 400, "body", None, "not valid UTF-8"),
    ("empty body", b"", 400, "body", None, "empty"),
    ("nested too deeply", b"[" * 3000, 400, "body", None, "nested too deeply"),
    ("number too long", b'{"records": [{"id": ' + b"1" * 5000 + b', "text": "x"}]}', 400, "body", None,
     "invalid JSON: Exceeds the limit"),
    ("not an object", b'[{"text": "x"}]', 422, "body", None, "expected a JSON object"),
    ("no records", b'{"top_k": 1}', 422, "records", None, "missing"),
    ("records not a list", b'{"records": {"text": "x"}}', 422, "records", None, "must be a list"),
    ("empty list", b'{"records": []}', 422, "records", None, "empty list"),
    ("record not an object", b'{"records": [{"text": "x"}, "text"]}', 422, "records[1]", 1, "expected a JSON object"),
    ("missing text", b'{"records": [{"id": "a"}]}', 422, "records[0].text", 0, "missing text"),
    ("null text", b'{"records": [{"id": "a", "text": null}]}', 422, "records[0].text", 0, "got null"),
    ("text not a string", b'{"records": [{"text": "x"}, {"text": "y"}, {"id": "c", "text": 5}]}', 422,
     "records[2].text", 2, "must be a string, got a number"),
    ("empty text", b'{"records": [{"id": "a", "text": "   "}]}', 422, "records[0].text", 0, "empty text"),
    ("lone surrogate in text", b'{"records": [{"text": "x"}, {"text": "cocoa \\ud800 beans"}]}', 422,
     "records[1].text", 1, "unpaired surrogate"),
    ("lone surrogate in id", b'{"records": [{"id": "\\udfff", "text": "cocoa"}]}', 422, "records[0].id", 0,
     "id field 'id' holds an unpaired surrogate"),
    ("bad id", b'{"records": [{"id": [1], "text": "x"}]}', 422, "records[0].id", 0, "must be a string or an integer"),
    ("boolean id", b'{"records": [{"id": true, "text": "x"}]}', 422, "records[0].id", 0, "id field"),
    ("unknown option", b'{"records": [{"text": "x"}], "topk": 2}', 422, "topk", None, "unknown field 'topk'"),
    ("unknown field with a lone surrogate", b'{"records": [{"text": "x"}], "\\ud800": 1}', 422, "\ud800", None,
     "unknown field '\\ud800'"),
    ("unknown field a megabyte long", b'{"records": [{"text": "x"}], "' + b"k" * 2000 + b'": 1}', 422,
     "k" * 37 + "...", None, "unknown field 'kkkk"),
    ("a key given twice", b'{"records": [{"text": "x"}], "records": [{"text": "y"}]}', 400, "body", None,
     "body: the key 'records' is given twice (the first would be dropped)"),
    ("scores top-N of 4301 digits", b'{"records": [{"text": "x"}], "scores": "top-' + b"1" * 4301 + b'"}', 422,
     "scores", None, "top-N"),
    ("top_k 0", b'{"records": [{"text": "x"}], "top_k": 0}', 422, "top_k", None, "integer >= 1"),
    ("top_k a string", b'{"records": [{"text": "x"}], "top_k": "2"}', 422, "top_k", None, "integer >= 1"),
    ("threshold over 1", b'{"records": [{"text": "x"}], "threshold": 1.5}', 422, "threshold", None, "[0, 1]"),
    ("threshold a boolean", b'{"records": [{"text": "x"}], "threshold": true}', 422, "threshold", None, "[0, 1]"),
    ("threshold NaN", b'{"records": [{"text": "x"}], "threshold": NaN}', 422, "threshold", None, "[0, 1]"),
    ("threshold and top_k", b'{"records": [{"text": "x"}], "threshold": 0.5, "top_k": 1}', 422, "threshold", None,
     "give one of them"),
    ("min_labels 2", b'{"records": [{"text": "x"}], "min_labels": 2}', 422, "min_labels", None, "0 or 1"),
    ("scores unknown", b'{"records": [{"text": "x"}], "scores": "some"}', 422, "scores", None, "top-N"),
    ("scores top-0", b'{"records": [{"text": "x"}], "scores": "top-0"}', 422, "scores", None, "top-N"),
    ("scores a number", b'{"records": [{"text": "x"}], "scores": 5}', 422, "scores", None, "top-N"),
    ("too many records", json.dumps({"records": [{"text": "x"}] * 6}).encode(), 413, "records", None,
     "6 records, more than the limit of 5"),
    ("text too long", json.dumps({"records": [{"text": "x"}, {"text": "word " * 100}]}).encode(), 413,
     "records[1].text", 1, "more than the limit of 200"),
    ("body too large", json.dumps({"records": [{"text": "x" * 9000}]}).encode(), 413, "body", None,
     "more than the limit of 8192"),
]


@pytest.mark.parametrize(("name", "body", "status", "field", "index", "words"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_a_4xx_naming_the_field_and_the_server_goes_on(limited, name, body, status, field, index,
                                                                     words):
    answer = limited.post("/v1/predict", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["status"] == status and error["field"] == field and error["index"] == index
    assert words in error["message"], error["message"]
    if index is not None:
        assert error["message"].startswith(f"records[{index}]: ")
    after = limited.post("/v1/predict", json=GOOD)
    assert after.status_code == 200 and after.json()["predictions"][0]["id"] == "ok"


def test_a_streamed_body_over_the_limit_is_refused_while_it_comes_in(limited):
    def chunks():  # no Content-Length: the limit is checked while reading
        yield b'{"records": [{"text": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}]}'

    answer = limited.post("/v1/predict", content=chunks(), headers={"content-type": "application/json"})
    assert answer.status_code == 413 and answer.json()["error"]["field"] == "body"
    assert limited.post("/v1/predict", json=GOOD).status_code == 200


def test_unknown_paths_and_methods_are_json_errors(client):
    missing = client.get("/v1/nothing")
    assert missing.status_code == 404 and missing.json()["error"]["status"] == 404
    wrong = client.get("/v1/predict")
    assert wrong.status_code == 405 and wrong.json()["error"]["message"] == "Method Not Allowed"


def test_a_bad_content_length_is_a_400(limited):
    class FakeRequest:
        headers = {"content-length": "lots"}

    with pytest.raises(ApiError) as caught:
        asyncio.run(read_body(FakeRequest(), 100))
    assert caught.value.status == 400 and caught.value.field == "Content-Length"


# ------------------------------------------------------------------ bearer token


def test_token_is_required_everywhere_but_health(loaded):
    with TestClient(create_app(loaded, ServeSettings(token="s3cret-token"))) as guarded:
        assert guarded.get("/health").status_code == 200
        for method, path in (("get", "/ready"), ("get", "/v1/labels"), ("get", "/v1/model"), ("post", "/v1/predict")):
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic czNjcmV0LXRva2Vu"}):
                answer = getattr(guarded, method)(path, headers=headers, **({"json": GOOD} if method == "post" else {}))
                assert answer.status_code == 401, (path, headers)
                assert answer.headers["www-authenticate"] == "Bearer"
                assert answer.json()["error"]["field"] == "Authorization"
            good = getattr(guarded, method)(path, headers={"Authorization": "Bearer s3cret-token"},
                                            **({"json": GOOD} if method == "post" else {}))
            assert good.status_code == 200, (path, good.text)
        assert guarded.get("/v1/model", headers={"Authorization": "Bearer s3cret-token"}).json()["serving"][
            "token_required"] is True
        spec = guarded.get("/openapi.json").json()
        assert "HTTPBearer" in spec["components"]["securitySchemes"]


# ------------------------------------------------------------------ dynamic batching


def counting_score_chunk(monkeypatch) -> list[int]:
    """Count the calls of the scoring function (scoring.score_chunk) and the records of each."""
    from mlcls.inference import scoring

    calls: list[int] = []
    real = scoring.score_chunk

    def counted(run, records, *args, **kwargs):
        records = list(records)
        calls.append(len(records))
        return real(run, records, *args, **kwargs)

    monkeypatch.setattr(scoring, "score_chunk", counted)
    return calls


async def concurrent_posts(app, bodies: list[dict]) -> list:
    import httpx

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as session:
            return await asyncio.gather(*(session.post("/v1/predict", json=body) for body in bodies))


def test_concurrent_requests_are_scored_together(loaded, client, monkeypatch):
    """12 single-record requests at once, max_batch 12: the batcher waits for company until the batch is full
    (max_wait of two minutes is never reached, however slow the machine), so all 12 go in one call."""
    expected = client.post("/v1/predict", json={"records": REQUEST_RECORDS}).json()["predictions"]
    calls = counting_score_chunk(monkeypatch)
    app = create_app(loaded, ServeSettings(max_batch=len(REQUEST_RECORDS), max_wait_ms=120_000))
    answers = asyncio.run(concurrent_posts(app, [{"records": [r]} for r in REQUEST_RECORDS]))
    assert [a.status_code for a in answers] == [200] * len(REQUEST_RECORDS)
    assert [a.json()["predictions"][0] for a in answers] == expected  # each got its own answer
    assert calls == [len(REQUEST_RECORDS)]  # 12 requests, one model call
    assert app.state.batcher.stats.calls == 1 and app.state.batcher.stats.records == len(REQUEST_RECORDS)


def test_what_arrives_during_a_call_is_scored_together_by_the_next():
    """Under load batches fill without waiting: while the model scores one request, 11 more arrive; with no
    max_wait at all they are scored in one call, the next. The first call is held by a handshake (it returns
    only once the 11 are queued), not by a time window."""
    release = threading.Event()
    calls: list[list] = []

    def score(items):
        calls.append(list(items))
        if len(calls) == 1 and not release.wait(60):
            raise AssertionError("the 11 requests never queued behind the first call")
        return np.array([[float(i)] for i in items], dtype=np.float32)

    async def wait_until(condition) -> None:
        for _ in range(60_000):  # a bound on the polls (about a minute), not a timing assertion
            if condition():
                return
            await asyncio.sleep(0.001)
        raise AssertionError("condition never met")

    async def scenario():
        batcher = DynamicBatcher(score, max_batch=64, max_wait_s=0)
        await batcher.start()
        first = asyncio.ensure_future(batcher.score([0]))
        await wait_until(lambda: calls)  # the first call is running (held)
        rest = [asyncio.ensure_future(batcher.score([i])) for i in range(1, 12)]
        await wait_until(lambda: batcher.queued == 11)
        release.set()
        answers = await asyncio.gather(first, *rest)
        await batcher.stop()
        return answers, batcher

    answers, batcher = asyncio.run(scenario())
    assert calls == [[0], list(range(1, 12))]
    assert [a.ravel().tolist() for a in answers] == [[float(i)] for i in range(12)]
    assert batcher.stats.calls == 2 and batcher.stats.largest == 11


def test_max_batch_caps_each_call_and_big_requests_are_split(loaded, client, monkeypatch):
    expected = client.post("/v1/predict", json={"records": REQUEST_RECORDS}).json()["predictions"]
    calls = counting_score_chunk(monkeypatch)
    app = create_app(loaded, ServeSettings(max_batch=4, max_wait_ms=200))
    bodies = [{"records": REQUEST_RECORDS}, *({"records": [r]} for r in REQUEST_RECORDS[:6])]
    answers = asyncio.run(concurrent_posts(app, bodies))
    assert answers[0].json()["predictions"] == expected
    assert [a.json()["predictions"][0] for a in answers[1:]] == expected[:6]
    assert max(calls) <= 4 and sum(calls) == 18 and len(calls) >= 5, calls


def test_a_failing_call_fails_only_the_request_that_broke_it():
    calls = []

    def score(items):
        calls.append(list(items))
        if "bad" in items:
            raise RuntimeError("boom")
        return np.array([[float(i)] for i in items], dtype=np.float32)

    async def scenario():
        batcher = DynamicBatcher(score, max_batch=8, max_wait_s=0.05)
        await batcher.start()
        first = await asyncio.gather(batcher.score([1, 2]), batcher.score(["bad"]), batcher.score([3]),
                                     return_exceptions=True)
        second = await asyncio.gather(batcher.score([4, 5]), batcher.score(list(range(20))))
        await batcher.stop()
        return first, second, batcher

    first, second, batcher = asyncio.run(scenario())
    assert first[0].ravel().tolist() == [1, 2] and first[2].ravel().tolist() == [3]
    assert isinstance(first[1], RuntimeError)
    assert calls[:4] == [[1, 2, "bad", 3], [1, 2], ["bad"], [3]]  # together, then each request alone
    assert second[0].ravel().tolist() == [4, 5] and second[1].ravel().tolist() == list(range(20))
    assert batcher.stats.largest <= 8 and not batcher.running and batcher.queued == 0


def test_predict_before_start_or_after_stop_is_a_503(loaded):
    app = create_app(loaded)
    answer = TestClient(app).post("/v1/predict", json=GOOD)  # no `with`: the lifespan never started
    assert answer.status_code == 503 and "not ready" in answer.json()["error"]["message"]
    assert TestClient(app).get("/ready").status_code == 503


# ------------------------------------------------------------------ start-up failures: one line, exit 1


def one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def test_a_missing_run_fails_at_start(tmp_path):
    line = one_line_error(CliRunner().invoke(cli_app, ["serve", str(tmp_path / "nope")]))
    assert "nope" in line


def test_a_broken_run_fails_at_start(run_dir, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    (broken / "head.safetensors").write_bytes(b"not safetensors")
    line = one_line_error(CliRunner().invoke(cli_app, ["serve", str(broken)]))
    assert "head.safetensors" in line


def test_without_the_extra_a_line_names_it(run_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "fastapi", None)  # import fastapi -> ImportError
    line = one_line_error(CliRunner().invoke(cli_app, ["serve", str(run_dir)]))
    assert 'pip install "mlcls[serve]"' in line


def test_token_file_problems_fail_at_start(run_dir, tmp_path):
    line = one_line_error(CliRunner().invoke(cli_app, ["serve", str(run_dir), "--token-file", str(tmp_path / "t")]))
    assert "cannot read the token file" in line
    (tmp_path / "empty").write_text("\n")
    line = one_line_error(CliRunner().invoke(cli_app, ["serve", str(run_dir), "--token-file", str(tmp_path / "empty")]))
    assert "is empty" in line


def test_a_port_in_use_fails_at_start(run_dir):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        line = one_line_error(CliRunner().invoke(cli_app, ["serve", str(run_dir), "--port", str(port)]))
    assert f"cannot listen on 127.0.0.1:{port}" in line


# ------------------------------------------------------------------ SIGTERM drains in-flight requests, exit 0


# `mlcls serve` with two hooks, for the drain test: the model call of the record "held" says on stderr that it
# holds the request, and blocks until uvicorn's graceful shutdown waits for the requests in flight (uvicorn's
# private Server._wait_tasks_to_complete: if a uvicorn release renames it, the server fails to start here and
# the test says so). So the request is in flight when the shutdown starts, by construction, whatever the
# machine's speed, and it is answered only if the shutdown waits for it (DRAIN_SECONDS). Loading the run and each
# model call also say on stderr which thread they ran on.
GATED_SERVE = """
import sys, threading
import uvicorn
from mlcls.inference import loading, scoring

draining = threading.Event()
real_wait, real_score, real_load = uvicorn.Server._wait_tasks_to_complete, scoring.score_chunk, loading.load_run

def load_run(*args, **kwargs):
    print(f"thread: loaded on {threading.current_thread().name}", file=sys.stderr, flush=True)
    return real_load(*args, **kwargs)

async def wait_tasks_to_complete(self, *args, **kwargs):
    draining.set()
    await real_wait(self, *args, **kwargs)

def score_chunk(run, records, *args, **kwargs):
    records = list(records)
    print(f"thread: scored on {threading.current_thread().name}", file=sys.stderr, flush=True)
    if any(record.id == "held" for record in records):
        print("gate: holding the request in the model call", file=sys.stderr, flush=True)
        released = draining.wait(120)
        print("gate: released by the drain" if released else "gate: no drain came", file=sys.stderr, flush=True)
    return real_score(run, records, *args, **kwargs)

uvicorn.Server._wait_tasks_to_complete, scoring.score_chunk = wait_tasks_to_complete, score_chunk
loading.load_run = load_run
sys.argv = ["mlcls", *sys.argv[1:]]
from mlcls.cli import main
main()
"""


def stderr_lines(process) -> queue.Queue:
    """The process's stderr, line by line, read on a thread: a wait for a line is bounded (queue.get's timeout)
    instead of a readline that blocks for ever."""
    lines: queue.Queue = queue.Queue()

    def pump() -> None:
        for line in process.stderr:
            lines.put(line)
        lines.put(None)  # the end of stderr

    threading.Thread(target=pump, daemon=True).start()
    return lines


def wait_for_line(lines: queue.Queue, pattern: str, seen: list[str]) -> re.Match:
    while True:
        try:
            line = lines.get(timeout=120)  # a bound against a hung server, not a timing assertion
        except queue.Empty:
            pytest.fail(f"no line matching {pattern!r} within 120 s; stderr so far: {seen}")
        if line is None:
            pytest.fail(f"stderr ended without a line matching {pattern!r}: {seen}")
        seen.append(line)
        if found := re.search(pattern, line):
            return found


def test_sigterm_drains_requests_in_flight_and_exits_0(run_dir, tmp_path):
    """A real server on 127.0.0.1 (a free port), a request held inside the model call until the graceful
    shutdown waits for it (GATED_SERVE), SIGTERM sent once the request is held: the request is answered during
    the drain, then the process exits 0. A drain that did not happen fails: the gate must say it was released by
    the drain, and the answer must be a 200."""
    token = tmp_path / "token"
    token.write_text("tok\n")
    process = subprocess.Popen(
        [sys.executable, "-c", GATED_SERVE, "serve", str(run_dir), "--port", "0", "--token-file", str(token)],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=Path(__file__).parents[2],
        env={**os.environ, "MLCLS_DEBUG": ""})
    seen: list[str] = []
    try:
        lines = stderr_lines(process)
        port = int(wait_for_line(lines, r"on http://127\.0\.0\.1:(\d+) ", seen).group(1))
        url = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(f"{url}/health", timeout=30) as health:
            assert json.load(health) == {"status": "ok"}
        answers: list = []

        def ask() -> None:
            body = json.dumps({"records": [{"id": "held", "text": "cocoa beans"}]}).encode()
            request = urllib.request.Request(f"{url}/v1/predict", data=body, method="POST",
                                             headers={"Content-Type": "application/json",
                                                      "Authorization": "Bearer tok"})
            try:
                with urllib.request.urlopen(request, timeout=300) as response:
                    answers.append((response.status, json.load(response)))
            except Exception as exc:  # recorded, asserted below
                answers.append(exc)

        asker = threading.Thread(target=ask)
        asker.start()
        wait_for_line(lines, r"^gate: holding", seen)  # the handshake: the request is inside the model call
        process.send_signal(signal.SIGTERM)
        wait_for_line(lines, r"^gate: ", seen)
        assert seen[-1].startswith("gate: released by the drain"), seen  # SIGTERM came with it in flight
        asker.join(timeout=300)
        assert process.wait(timeout=300) == 0, seen
        assert len(answers) == 1 and not isinstance(answers[0], Exception), answers
        status, body = answers[0]
        assert status == 200 and body["predictions"][0]["id"] == "held"
        wait_for_line(lines, r"stopped: 1 record scored in 1 batch", seen)
        # the run loaded, tried once, warmed up and scored on one thread (server.py: one OpenMP pool, as predict)
        threads = [line.split(" on ")[1].strip() for line in seen if line.startswith("thread: ")]
        assert len(threads) == 4 and len(set(threads)) == 1 and threads[0].startswith("mlcls-inference"), seen
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_serve_help_imports_neither_torch_nor_fastapi():
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom mlcls.cli import app\n"
            "assert CliRunner().invoke(app, ['serve', '--help']).exit_code == 0\n"
            "heavy = [m for m in ('torch', 'transformers', 'fastapi', 'uvicorn') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_warm_up_scores_one_full_batch_on_the_worker_thread_before_requests(loaded, monkeypatch):
    import threading

    from mlcls.inference import scoring

    seen = []
    real = scoring.score_chunk

    def watched(run, records, *args, **kwargs):
        records = list(records)
        seen.append((len(records), max(len(r.text.split()) for r in records), threading.current_thread().name))
        return real(run, records, *args, **kwargs)

    monkeypatch.setattr(scoring, "score_chunk", watched)
    app = create_app(loaded, ServeSettings(max_batch=8, warm_up=True))
    with TestClient(app) as warmed:
        assert seen and seen[0][0] == 8 and seen[0][1] >= loaded.config.model.max_length
        assert seen[0][2].startswith("mlcls-inference")  # the thread that scores every request
        assert app.state.batcher.stats.calls == 0  # not counted as traffic
        assert warmed.post("/v1/predict", json={"records": REQUEST_RECORDS[:1]}).status_code == 200
    assert app.state.batcher.stats.calls == 1


def test_an_option_nested_too_deep_to_print_is_described_not_a_500():
    # The body parses (the parser's depth limit not reached) but json.dumps of the option, for the error
    # message, ran a few frames deeper and raised RecursionError: a 500.
    from mlcls.serving.request import _shown

    value: list = []
    for _ in range(5000):
        value = [value]
    assert _shown(value) == "a nested list"
    assert _shown([1, 2]) == "[1, 2]"


def test_a_key_given_twice_within_a_record_keeps_the_last_as_predict_does(limited, run_dir, tmp_path):
    body = b'{"records": [{"id": "r", "text": "museum festival", "text": "cocoa beans cocoa"}], "scores": "all"}'
    answer = limited.post("/v1/predict", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 200, answer.text
    source = tmp_path / "in.jsonl"
    source.write_bytes(body[len(b'{"records": ['):body.index(b"]")] + b"\n")  # the same record as a JSONL line
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(cli_app, ["predict", str(source), "--model", str(run_dir), "--scores", "all",
                                          "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert answer.json()["predictions"] == [json.loads(out.read_text())]


def test_the_schema_names_the_runs_own_record_fields(loaded):
    """The record schema and example were the module's (`id`, `title`, `text`) whatever the run read: a client
    generated from /openapi.json of a run of `headline` and `body` sent fields the server refuses."""
    import copy

    run = copy.copy(loaded)
    run.config = copy.deepcopy(loaded.config)
    run.config.data.text_fields, run.config.data.id_field = ["headline", "body"], "doc"
    with TestClient(create_app(run, ServeSettings(limits=LIMITS))) as test_client:
        spec = test_client.get("/openapi.json").json()
        body = spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["application/json"]
        record = body["schema"]["properties"]["records"]["items"]
        assert set(record["properties"]) == {"doc", "headline", "body"} and "`headline` and `body`" in \
            record["description"]
        [example] = body["example"]["records"]
        assert set(example) == {"doc", "headline", "body"}
        answer = test_client.post("/v1/predict", json=body["example"])  # the schema's own example is accepted
        assert answer.status_code == 200 and answer.json()["predictions"][0]["id"] == "n1"
    # an app of the default fields is not changed by it (the route's declaration is shared by every app)
    with TestClient(create_app(loaded, ServeSettings(limits=LIMITS))) as test_client:
        record = predict_body_schema(test_client)
    assert set(record["properties"]["records"]["items"]["properties"]) == {"id", "text"}
