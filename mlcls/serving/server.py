"""Start and stop `mlcls serve`.

Everything that can fail is tried before the server listens, each failure one line (MlclsError): the extra
installed, the token file readable, the run loaded and scored once (a broken run fails here, not at the first
request), the address bound (a port in use, a host that does not resolve). Then uvicorn serves on the bound
socket. SIGTERM (and Ctrl-C) is uvicorn's graceful shutdown: no new connections, the requests in flight are
answered (for at most --drain-seconds; those still unfinished then get a JSON 503 with Retry-After, drain.py),
the batcher stops, and the process exits 0.
"""

from __future__ import annotations

import ipaddress
import signal
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from mlcls.atomic import describe_os_error
from mlcls.data.records import Record
from mlcls.errors import MlclsError
from mlcls.serving.settings import ServeSettings

EXTRA = 'mlcls serve needs FastAPI and uvicorn, the "serve" extra: pip install "mlcls[serve]"'
# uvicorn's own graceful-shutdown timeout, this long after ours (settings.drain_seconds): by then drain.py has
# answered every unfinished request, so uvicorn never cancels one (a plain-text 500 and a traceback each)
UVICORN_MARGIN_SECONDS = 10


def require_extra() -> None:
    try:  # imported here, not at the top: without the extra, this is the one-line error, not an ImportError
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise MlclsError(EXTRA) from None


def read_token(path: Path) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise MlclsError(f"{path}: cannot read the token file ({describe_os_error(exc)})") from None
    except UnicodeDecodeError:
        raise MlclsError(f"{path}: the token file is not UTF-8 text") from None
    if not token or any(c.isspace() for c in token):
        raise MlclsError(f"{path}: the token file must hold one token (no spaces), and it "
                         + ("is empty" if not token else "holds several words"))
    odd = next((c for c in token if not " " < c < "\x7f"), None)
    if odd is not None:  # an HTTP header carries ASCII: no client could send this token, so none could get in
        raise MlclsError(f"{path}: the token holds {odd!r}, which no HTTP client can send in an Authorization "
                         "header; use printable ASCII only (e.g. python -c 'import secrets; "
                         "print(secrets.token_urlsafe(32))')")
    return token


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: a free one), or a one-line error."""
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise MlclsError(f"--host {host}: cannot resolve it ({exc})") from None
    try:
        return socket.create_server(address[:2], family=family, backlog=2048)
    except OSError as exc:
        raise MlclsError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(run: Path | None, host: str, port: int, settings: ServeSettings, token_file: Path | None, int8: bool,
          note: Callable[[str], None], precision: str | None = None, trust_remote_code: bool = False) -> None:
    """Serve `run` until SIGTERM or Ctrl-C; `note` prints a line for the user. `precision`: auto, fp32 or bf16
    (None: the run's model.inference_precision); `trust_remote_code`: --trust-remote-code (load_run's)."""
    require_extra()
    # imported here, not at the top: FastAPI once the extra is known to be there, and torch (through the app and
    # load_run) only when a server starts, never for `mlcls --help`
    from mlcls.serving.app import create_app

    if token_file is not None:
        settings = replace(settings, token=read_token(token_file))
    # Every torch call of the server runs on this one thread: loading the run, the start-up check, the warm-up and
    # every scoring call, as `mlcls predict` runs them all on its one thread. torch's OpenMP keeps a pool of
    # threads for each thread that runs parallel work; with two pools (the main thread's and the batcher's) a
    # 2-core machine holds more OpenMP threads than cores, and libgomp then no longer spins between operations:
    # its threads sleep after each one and are woken for the next, and the model scored 1.1-1.3x slower than on
    # one thread (docs/benchmarks.md, "Serving").
    inference = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlcls-inference")
    try:
        loaded = inference.submit(_load, run, settings.batch_size, int8, precision, trust_remote_code).result()
        app = create_app(loaded, replace(settings, warm_up=True), inference)  # warm-up: one full batch at start
        sock = bind(host, port)
        shown = f"[{host}]" if ":" in host else host
        note(f"serving {loaded.path} ({len(loaded.labels)} labels, {loaded.device}) on http://{shown}:"
             f"{sock.getsockname()[1]} (docs: /docs); Ctrl-C or SIGTERM stops it after the requests in flight")
        note(f"note: {loaded.precision_note}")
        if not is_loopback(host) and settings.token is None:
            note(f"warning: listening on {host} without --token-file: whoever reaches this port can use the model")
        _run_uvicorn(app, sock, settings.drain_seconds)
    finally:  # (the batcher has finished its work by now; a Ctrl-C while loading does not wait for the load)
        inference.shutdown(wait=False, cancel_futures=True)
    stats, drain = app.state.batcher.stats, app.state.drain
    cut_off = (f"; {_count(drain.cut_off, 'request')} unfinished after the {drain.seconds:g} s drain answered 503"
               if drain.cut_off else "")
    note(f"stopped: {_count(stats.records, 'record')} scored in {_count(stats.calls, 'batch', 'batches')}{cut_off}")


def _load(run: Path | None, batch_size: int | None, int8: bool, precision: str | None, trust_remote_code: bool):
    """The run, loaded and made to score one record (on the inference thread)."""
    from mlcls.inference.loading import load_run
    from mlcls.serving.app import scorer

    loaded = load_run(run, int8=int8, precision=precision, trust_remote_code=trust_remote_code)
    _try_once(loaded, scorer(loaded, batch_size))
    return loaded


def _run_uvicorn(app, sock: socket.socket, drain_seconds: float) -> None:
    """uvicorn on the bound socket until SIGTERM or Ctrl-C, with the drain's clock started by the signal."""
    import uvicorn

    config = uvicorn.Config(app, lifespan="on", log_level="warning", access_log=False,
                            timeout_graceful_shutdown=drain_seconds + UVICORN_MARGIN_SECONDS)
    server = uvicorn.Server(config)
    handle_exit = server.handle_exit

    def on_signal(sig, frame) -> None:  # /ready answers 503 from the signal on, while in-flight requests finish
        app.state.draining = True
        app.state.drain.begin()
        handle_exit(sig, frame)

    server.handle_exit = on_signal  # type: ignore[method-assign]
    # uvicorn re-raises the signal it stopped on once it has shut down; with these handlers in place SIGTERM
    # and Ctrl-C then end the process normally (exit 0) instead of killing it. (A second Ctrl-C during the
    # drain is still uvicorn's: stop at once.)
    previous = {sig: signal.signal(sig, _stopped) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


def _stopped(_sig, _frame) -> None:
    """SIGTERM or SIGINT after the graceful shutdown: nothing left to do."""


def _try_once(loaded, score) -> None:
    """Score one record before listening: a run that loads but cannot score fails now, with one line."""
    try:
        score([Record(id="warm-up", text="warm-up", labels=None, line=1)])
    except MlclsError:
        raise
    except Exception as exc:
        raise MlclsError(f"{loaded.path}: the run loads but cannot score a record ({type(exc).__name__}: {exc})") \
            from None
