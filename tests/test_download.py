"""The downloader against a tarball served on 127.0.0.1: good, cached, corrupted, and no server at all."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

from mlcls.cli import app
from tests.test_reuters import fake_tarball

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


def test_no_server_fails_fast_with_a_hint(tmp_path, monkeypatch):
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    result = invoke(f"http://127.0.0.1:{port}/reuters21578.tar.gz", "md5:" + "0" * 32, tmp_path / "out",
                    tmp_path / "cache", monkeypatch)
    assert result.exit_code == 1
    assert "cannot download" in result.stderr and "pass --source" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert time.monotonic() - started < 10
    assert not any((tmp_path / "cache").glob("*")) if (tmp_path / "cache").exists() else True


def test_bad_checksum_spec():
    result = runner.invoke(app, ["data", "reuters", "--checksum", "crc32:1234"])
    assert result.exit_code == 1 and "expected sha256:HEX or md5:HEX" in result.stderr
