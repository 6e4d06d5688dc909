"""`mlcls serve` hardened: requests left unfinished by SIGTERM's drain time get a JSON 503 with Retry-After (and
the log no traceback), a token no HTTP client can send is refused at start, only JSON bodies are scored (a web
page cannot post text/plain or a form to a local server), /v1/model shows no path of the training machine,
listening beyond loopback without a token is a warning, and /docs and /redoc load nothing from outside.

Each test here failed before its fix. Servers listen on 127.0.0.1 only; waits are handshakes with a bound.

    pytest -q tests/serving/test_serve_hardening.py
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlcls.cli import app as cli_app

pytest.importorskip("fastapi", reason="the serve extra (pip install 'mlcls[serve]')")
from fastapi.testclient import TestClient  # noqa: E402

from mlcls.serving.app import create_app  # noqa: E402
from mlcls.serving.drain import RETRY_AFTER_SECONDS  # noqa: E402
from mlcls.serving.settings import ServeSettings  # noqa: E402
from tests.serving.test_serve import one_line_error, stderr_lines, wait_for_line  # noqa: E402

GOOD = {"records": [{"id": "ok", "text": "cocoa beans"}]}


@pytest.fixture(scope="module")
def client(loaded):
    with TestClient(create_app(loaded)) as test_client:
        yield test_client


# ------------------------------------------------------------------ 1. the drain deadline: JSON 503, no traceback

# `mlcls serve` with a gate: the model call of the record "held" blocks until the batcher is stopped (the app's
# lifespan shutdown, which uvicorn starts only once no request is left in flight). So that call cannot finish
# within the drain time whatever the machine's speed: its request, and the one queued behind it, are unfinished
# when the deadline comes, by construction.
GATED_UNTIL_STOP = """
import sys, threading
from mlcls.inference import scoring
from mlcls.serving import batcher

stopping = threading.Event()
real_score, real_stop = scoring.score_chunk, batcher.DynamicBatcher.stop

def score_chunk(run, records, *args, **kwargs):
    records = list(records)
    if any(record.id == "held" for record in records):
        print("gate: holding the request in the model call", file=sys.stderr, flush=True)
        released = stopping.wait(120)
        print("gate: released by the batcher's stop" if released else "gate: no stop came", file=sys.stderr,
              flush=True)
    return real_score(run, records, *args, **kwargs)

async def stop(self):
    stopping.set()
    await real_stop(self)

scoring.score_chunk, batcher.DynamicBatcher.stop = score_chunk, stop
sys.argv = ["mlcls", *sys.argv[1:]]
from mlcls.cli import main
main()
"""


def post(url: str, record_id: str, answers: dict) -> None:
    body = json.dumps({"records": [{"id": record_id, "text": "cocoa beans"}]}).encode()
    request = urllib.request.Request(f"{url}/v1/predict", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            answers[record_id] = (response.status, response.headers, response.read())
    except urllib.error.HTTPError as exc:
        answers[record_id] = (exc.code, exc.headers, exc.read())
    except Exception as exc:  # recorded, asserted below
        answers[record_id] = exc


def rest_of(lines: queue.Queue) -> list[str]:
    """The lines of a process that has exited, up to the end of its stderr (bounded)."""
    rest = []
    while (line := lines.get(timeout=120)) is not None:
        rest.append(line)
    return rest


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def test_requests_unfinished_at_the_drain_deadline_get_a_json_503_and_the_log_no_traceback(run_dir):
    """A real server (--drain-seconds 0), one request held in the model call and one queued behind it, then
    SIGTERM: both answered 503 in the JSON error shape with Retry-After (before: uvicorn's plain-text 500 and a
    CancelledError traceback each, after its timeout), the process exits 0, and its stderr holds one line per
    event, no traceback."""
    process = subprocess.Popen(
        [sys.executable, "-c", GATED_UNTIL_STOP, "serve", str(run_dir), "--port", "0", "--drain-seconds", "0"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=Path(__file__).parents[2],
        env={**os.environ, "MLCLS_DEBUG": ""})
    seen: list[str] = []
    try:
        lines = stderr_lines(process)
        port = int(wait_for_line(lines, r"on http://127\.0\.0\.1:(\d+) ", seen).group(1))
        url = f"http://127.0.0.1:{port}"
        answers: dict = {}
        askers = [threading.Thread(target=post, args=(url, "held", answers))]
        askers[0].start()
        wait_for_line(lines, r"^gate: holding", seen)  # the first request is inside the model call
        askers.append(threading.Thread(target=post, args=(url, "queued", answers)))
        askers[1].start()
        for _ in range(3000):  # the second is queued behind it (a bound on the polls, not a timing assertion)
            if get_json(f"{url}/ready")["scored"]["queued"] == 1:
                break
        else:
            pytest.fail("the second request never queued")
        process.send_signal(signal.SIGTERM)
        for asker in askers:
            asker.join(timeout=300)
        assert process.wait(timeout=300) == 0, seen
        wait_for_line(lines, r"stopped: .*2 requests unfinished after the 0 s drain answered 503", seen)
        for record_id in ("held", "queued"):
            status, headers, body = answers[record_id]
            assert status == 503, (record_id, body)
            assert headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
            assert headers["Content-Type"] == "application/json"
            error = json.loads(body)["error"]
            assert error["status"] == 503 and "drain time (0 s)" in error["message"]
        log = "".join(seen + rest_of(lines))
        assert "Traceback" not in log and "CancelledError" not in log and "Exception in ASGI" not in log, log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_the_drain_deadline_in_process(loaded, monkeypatch):
    """The same, without a subprocess: the drain's clock started by hand with the request held in the model call;
    a request that finishes before the deadline is untouched (the answer of /health during the drain)."""
    import httpx

    from mlcls.inference import scoring

    held, release = threading.Event(), threading.Event()
    real = scoring.score_chunk

    def gated(run, records, *args, **kwargs):
        records = list(records)
        if any(record.id == "held" for record in records):
            held.set()
            release.wait(120)
        return real(run, records, *args, **kwargs)

    monkeypatch.setattr(scoring, "score_chunk", gated)
    app = create_app(loaded, ServeSettings(drain_seconds=0))

    async def scenario():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as session:
                asking = asyncio.ensure_future(session.post("/v1/predict", json={"records": [
                    {"id": "held", "text": "cocoa beans"}]}))
                for _ in range(120_000):  # a bound on the polls, not a timing assertion
                    if held.is_set():
                        break
                    await asyncio.sleep(0.001)
                try:
                    app.state.drain.begin()
                    return await asking
                finally:
                    release.set()

    answer = asyncio.run(scenario())
    assert answer.status_code == 503 and answer.headers["retry-after"] == str(RETRY_AFTER_SECONDS)
    assert answer.json()["error"]["status"] == 503
    assert app.state.drain.cut_off == 1


def test_drain_seconds_is_an_option(loaded):
    assert "--drain-seconds" in CliRunner().invoke(cli_app, ["serve", "--help"], terminal_width=200).output
    with TestClient(create_app(loaded, ServeSettings(drain_seconds=7.5))) as seven:
        assert seven.get("/v1/model").json()["serving"]["drain_seconds"] == 7.5


# ------------------------------------------------------------------ 2. a token no client can send


@pytest.mark.parametrize("token", ["tökén", "tok\x01en", "€uro"], ids=["accents", "control", "euro"])
def test_a_token_no_http_client_can_send_is_refused_at_start(run_dir, tmp_path, token, monkeypatch):
    """Such a token was taken: the server started, and no client could ever authenticate (an HTTP header is
    latin-1 at best, and clients send ASCII). uvicorn is stubbed: a server that starts here returns at once."""
    import uvicorn

    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: None)
    path = tmp_path / "token"
    path.write_text(token + "\n", encoding="utf-8")
    line = one_line_error(CliRunner().invoke(cli_app, ["serve", str(run_dir), "--port", "0", "--token-file",
                                                       str(path)]))
    assert str(path) in line and "printable ASCII" in line


# ------------------------------------------------------------------ 3. JSON bodies only


@pytest.mark.parametrize("content_type", [None, "text/plain", "text/plain;charset=UTF-8",
                                          "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                                          "application/jsonx", "application/json; charset=latin-1"])
def test_a_body_not_declared_json_is_a_415_and_not_scored(client, content_type):
    """A web page can make a browser POST text/plain, a form or multipart to a token-less local server without
    asking it first (a CORS "simple" request): such a body is refused before it is read, and never scored."""
    scored = client.get("/ready").json()["scored"]["records"]
    headers = {} if content_type is None else {"content-type": content_type}
    answer = client.post("/v1/predict", content=json.dumps(GOOD).encode(), headers=headers)
    assert answer.status_code == 415, answer.text
    error = answer.json()["error"]
    assert error["status"] == 415 and error["field"] == "Content-Type"
    assert "application/json" in error["message"] or "UTF-8" in error["message"]
    assert client.get("/ready").json()["scored"]["records"] == scored


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8",
                                          "Application/JSON;charset=\"UTF-8\"", "application/json ; charset=utf8"])
def test_json_with_or_without_a_utf8_charset_is_scored(client, content_type):
    answer = client.post("/v1/predict", content=json.dumps(GOOD).encode(), headers={"content-type": content_type})
    assert answer.status_code == 200 and answer.json()["predictions"][0]["id"] == "ok"


def test_415_is_in_the_schema(client):
    responses = client.get("/openapi.json").json()["paths"]["/v1/predict"]["post"]["responses"]
    assert {"200", "415", "422", "503"} <= set(responses)


# ------------------------------------------------------------------ 4. /v1/model without paths; the warning


def test_model_card_shows_no_paths(client, trained, tiny_encoder):
    """The card carried the whole config: the absolute paths of the training data and of the encoder folder.
    Now it shows what a client needs, and no path of the machine the run was trained on."""
    folder, data, _ = trained
    card = client.get("/v1/model").json()
    text = json.dumps(card)
    for path in (folder, data, tiny_encoder, Path(folder).parent):
        assert str(path) not in text, path
    assert not re.search(r'"(/|[A-Za-z]:\\\\)[^"]*"', text), text  # no absolute path at all
    assert card["encoder"] == tiny_encoder.name
    assert card["max_length"] == 32 and card["labels"] == 3 and card["precision"] == "fp32"
    assert card["record_format"] == {"id_field": "id", "text_fields": ["text"], "text_separator": "\n"}
    assert card["decision_rule"]["description"] and card["api_version"] == "1"
    from mlcls import __version__

    assert card["mlcls_version"] == __version__


def test_listening_beyond_loopback_without_a_token_is_a_warning(run_dir, monkeypatch):
    """--host 0.0.0.0 without --token-file: a `warning:` line (was a `note:`). The socket is bound on
    127.0.0.1 all the same and uvicorn never runs: this test serves nothing."""
    import socket

    import uvicorn

    from mlcls.serving import server

    monkeypatch.setattr(server, "bind", lambda host, port: socket.create_server(("127.0.0.1", 0)))
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: None)
    result = CliRunner().invoke(cli_app, ["serve", str(run_dir), "--host", "0.0.0.0", "--port", "0"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "without --token-file" in line]
    assert len(lines) == 1 and lines[0].startswith("warning: listening on 0.0.0.0 without --token-file"), \
        result.output


# ------------------------------------------------------------------ 5. docs without a CDN


class _Urls(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.urls += [value for name, value in attrs if name in ("src", "href", "spec-url") and value]


def page_urls(html: str) -> list[str]:
    parser = _Urls()
    parser.feed(html)
    return parser.urls + re.findall(r"url: *'([^']*)'", html)  # Swagger UI's schema URL, in its script


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_only_local_assets(loaded, page):
    """The pages loaded Swagger UI / ReDoc from cdn.jsdelivr.net (and fonts from Google): blank offline. Now
    every script, stylesheet and icon they reference is served here, and answers 200 without the token."""
    with TestClient(create_app(loaded, ServeSettings(token="s3cret"))) as guarded:
        answer = guarded.get(page)
        assert answer.status_code == 200 and "text/html" in answer.headers["content-type"]
        urls = page_urls(answer.text)
        assert len(urls) >= 3, urls  # the script, the icon, the schema (and Swagger UI's stylesheet)
        assert "http:" not in answer.text and "https:" not in answer.text and "//" not in "".join(urls), urls
        for url in urls:
            assert url.startswith("/"), url
            fetched = guarded.get(url)
            assert fetched.status_code == 200, (url, fetched.status_code)
            assert len(fetched.content) > 100, url


def test_without_the_assets_docs_say_where_the_schema_is(loaded, monkeypatch):
    from mlcls.serving import docs_pages

    monkeypatch.setattr(docs_pages, "assets_folder", lambda: None)
    with TestClient(create_app(loaded)) as bare:
        for page in ("/docs", "/redoc"):
            answer = bare.get(page)
            assert answer.status_code == 200 and 'href="/openapi.json"' in answer.text
            assert "http" not in answer.text
