"""The downloader against a tarball served on 127.0.0.1: good, cached, corrupted, and no server at all."""

from __future__ import annotations

import hashlib
import socket
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

from mlcls.cli import app
from tests.data.test_reuters import fake_tarball

runner = CliRunner()


class Served:
    def __init__(self, payload: bytes):
        self.payload = payload
        self.requests = 0


@pytest.fixture()
def server(tmp_path):
    served = Served(fake_tarball(tmp_path / "src" / "reuters21578.tar.gz").read_bytes())

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            served.requests += 1
            self.send_response(200)
            self.send_header("Content-Length", str(len(served.payload)))
            self.end_headers()
            self.wfile.write(served.payload)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    served.url = f"http://127.0.0.1:{httpd.server_address[1]}/reuters21578.tar.gz"
    yield served
    httpd.shutdown()
    httpd.server_close()


def invoke(url: str, checksum: str, out, cache, monkeypatch):
    monkeypatch.setenv("MLCLS_CACHE_DIR", str(cache))
    return runner.invoke(app, ["data", "reuters", "--url", url, "--checksum", checksum, "--out", str(out),
                               "--split", "modapte"])


def test_good_download_is_verified_cached_and_reused(server, tmp_path, monkeypatch):
    checksum = "sha256:" + hashlib.sha256(server.payload).hexdigest()
    result = invoke(server.url, checksum, tmp_path / "out", tmp_path / "cache", monkeypatch)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cache" / "reuters21578.tar.gz").read_bytes() == server.payload
    assert (tmp_path / "out" / "train.jsonl").is_file()
    result = invoke(server.url, checksum, tmp_path / "out2", tmp_path / "cache", monkeypatch)
    assert result.exit_code == 0, result.output
    assert server.requests == 1  # the second run used the cache
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["reuters21578.tar.gz"]


def test_checksum_mismatch_fails_and_leaves_nothing(server, tmp_path, monkeypatch):
    result = invoke(server.url, "sha256:" + "0" * 64, tmp_path / "out", tmp_path / "cache", monkeypatch)
    assert result.exit_code == 1
    assert "checksum mismatch" in result.stderr and "nothing was kept" in result.stderr
    assert list((tmp_path / "cache").iterdir()) == []
    assert not (tmp_path / "out").exists()


def spy_on_urlopen(monkeypatch, timeout: float | None = None) -> list:
    """Record the timeout of every urlopen call the downloader makes; with `timeout`, use that one instead."""
    calls = []
    real = urllib.request.urlopen

    def urlopen(url, *args, **kwargs):
        calls.append(kwargs.get("timeout"))
        if timeout is not None:
            kwargs["timeout"] = timeout
        return real(url, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return calls


def test_no_server_fails_fast_with_a_hint(tmp_path, monkeypatch):
    # "Fast": one attempt (no retry loop), bounded by a timeout; not a wall-clock reading.
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    calls = spy_on_urlopen(monkeypatch)
    result = invoke(f"http://127.0.0.1:{port}/reuters21578.tar.gz", "md5:" + "0" * 32, tmp_path / "out",
                    tmp_path / "cache", monkeypatch)
    assert result.exit_code == 1
    assert "cannot download" in result.stderr and "pass --source" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert len(calls) == 1, calls  # one attempt
    assert isinstance(calls[0], int | float) and 0 < calls[0] <= 60, calls  # with a timeout: no endless wait
    assert not any((tmp_path / "cache").glob("*")) if (tmp_path / "cache").exists() else True


def test_a_stalled_server_ends_in_the_timeout_with_a_hint(tmp_path, monkeypatch):
    # A server that takes the connection and never answers: the timeout given to urlopen is what ends the wait.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # the kernel completes the handshake; nobody ever reads the request or answers
        calls = spy_on_urlopen(monkeypatch, timeout=0.2)
        result = invoke(f"http://127.0.0.1:{listener.getsockname()[1]}/reuters21578.tar.gz", "md5:" + "0" * 32,
                        tmp_path / "out", tmp_path / "cache", monkeypatch)
    assert result.exit_code == 1, result.output
    assert len(calls) == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "cannot download" in result.stderr and "timed out" in result.stderr and "pass --source" in result.stderr
    assert not any((tmp_path / "cache").glob("*")) if (tmp_path / "cache").exists() else True


def test_bad_checksum_spec():
    # a closed port as the URL: the spec is refused before any fetch, and a fetch could not leave this machine
    result = runner.invoke(app, ["data", "reuters", "--checksum", "crc32:1234", "--url", "http://127.0.0.1:9/x.tar.gz"])
    assert result.exit_code == 1 and "expected sha256:HEX or md5:HEX" in result.stderr
