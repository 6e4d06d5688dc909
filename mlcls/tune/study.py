"""The Optuna study behind `mlcls tune`: where it is stored, opening (or resuming) it, and the lock that tells
other `mlcls tune` processes this one is alive.

Storage. By default a SQLite file in the study's folder (runs/tune-<study>/study.db): the same command resumes
the study. `--storage` takes an RDB URL (postgresql://, mysql://, sqlite:///) or a journal file path (Optuna's
JournalStorage: a log file that processes append to under a file lock); several `mlcls tune` processes, on one
machine or many, then share the study: Optuna's own engine for scaling a search out, not one of ours.

Liveness. A trial's process may die without a word (SIGKILL, a lost machine). Each process holds an flock on a
file of its own in the study's workers/ folder for as long as it runs, and writes that file's name into every
trial it runs; the kernel drops the lock when the process dies, so another process on the same machine sees
at once that the trial is orphaned (ledger.py retries it). Machines do not share locks: with an RDB server,
Optuna's heartbeat (a beat a minute, stale after ten) catches a trial whose machine is gone.

Claiming. On one machine (a SQLite file or a journal), a process takes its next trial under an flock on the
study's workers/.claim (claim): recovering orphans, counting the slots, asking and naming itself in the trial
are one step that no other process interleaves with. Optuna's own check (failing a finished trial raises) is no
lock on SQLite: two processes started together could otherwise both fail and retry one dead trial.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from mlcls.atomic import describe_os_error, release_lock, try_lock
from mlcls.config import first_difference
from mlcls.errors import ConfigError, MlclsError, first_line
from mlcls.run.layout import STUDY_DB, WORKERS
from mlcls.tune.space import SearchSpace

MISSING_OPTUNA = 'mlcls tune needs Optuna: pip install "mlcls[tune]"'
BASE_CONFIG_ATTR = "base_config"  # the study's user attribute that holds its base config
SPACE_ATTR = "search_space"  # ... and the search space, as canonical_space gives it
CLAIM = ".claim"  # in workers/: held while a process takes its next trial (not a *.lock: no process's liveness)
HEARTBEAT_SECONDS = 60  # RDB servers only: how often a running trial says it is alive
STALE_SECONDS = 600  # ... and how long it may stay silent before it is failed and retried


def require_optuna():
    """The optuna module, quiet (its per-trial log lines would interleave with ours), or a one-line error."""
    try:
        import optuna
    except ImportError:
        raise MlclsError(MISSING_OPTUNA) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def check_study_name(name: str) -> str:
    if not name or name.startswith(".") or "/" in name or "\0" in name or name != name.strip():
        raise ConfigError(f"--study {name!r}: a study name is a plain folder name (no '/', no leading '.')")
    if len(name.encode()) > 200:  # runs/tune-NAME and its trials' names must fit a file name (255 bytes)
        raise ConfigError(f"--study {name[:24]!r}...: a study name is at most 200 bytes")
    return name


def storage_url(folder: Path, storage: str | None) -> str:
    """The storage as `optuna-dashboard` takes it: an RDB URL, or a journal file's path."""
    if storage is None:  # quoted: SQLAlchemy reads '?' in a path as the start of a query, and unquotes '%41'
        return f"sqlite:///{quote(str((folder / STUDY_DB).absolute()))}"
    if "://" not in storage and re.match(r"[A-Za-z][A-Za-z0-9+.-]+:", storage):  # sqlite:/x.db: a URL mistyped
        raise ConfigError(f"--storage {storage!r}: looks like a URL but has no '://' (e.g. sqlite:///path/to.db, "
                          "postgresql://user@host/db); a path without a scheme is an Optuna journal file")
    return storage if "://" in storage else str(Path(storage).absolute())


def is_remote(url: str) -> bool:
    """An RDB server, which processes on other machines may share (a SQLite file or a journal is one machine's)."""
    return "://" in url and not url.startswith("sqlite")


def open_storage(optuna, url: str, on_stale) -> Any:
    """The storage behind `url`; `on_stale(study, trial)` is what a heartbeat-stale trial gets (remote RDB)."""
    try:
        if "://" not in url:
            Path(url).parent.mkdir(parents=True, exist_ok=True)
            from optuna.storages.journal import JournalFileBackend, JournalStorage

            return JournalStorage(JournalFileBackend(url))
        if url.startswith("sqlite:///"):
            database = Path(unquote(url.removeprefix("sqlite:///").partition("?")[0]))
            database.parent.mkdir(parents=True, exist_ok=True)
            with _held(database):  # the first process creates the tables; one starting with it would collide
                # several processes on one file: wait for a writer's lock instead of failing at once
                return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 120}})
        with warnings.catch_warnings():  # the heartbeat is "experimental" in Optuna since 2.9
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_SECONDS, grace_period=STALE_SECONDS,
                                              heartbeat_stale_trial_callback=on_stale)
    except OSError as exc:
        raise MlclsError(f"--storage {url}: cannot open it ({describe_os_error(exc)})") from None
    except Exception as exc:  # a driver that is not installed, a server that does not answer, a bad URL
        raise MlclsError(f"--storage {url}: cannot open it ({type(exc).__name__}: {first_line(exc)})") \
            from None


@contextmanager
def claim(folder: Path, one_machine: bool, while_waiting: Callable[[], None] | None = None) -> Iterator[None]:
    """The study's claim lock for the block, waited for (module docstring); nothing to hold when processes on
    other machines share the study (an RDB server): they could not see it. `while_waiting`: called now and then
    while another process holds the lock (it raises to stop waiting: a Ctrl-C or SIGTERM that only set a flag)."""
    if not one_machine:
        yield
        return
    (folder / WORKERS).mkdir(parents=True, exist_ok=True)
    with _held(folder / WORKERS / CLAIM, while_waiting):
        yield


@contextmanager
def _held(path: Path, while_waiting: Callable[[], None] | None = None) -> Iterator[None]:
    """An exclusive flock on `path` for the block, waited for. (SQLite locks with fcntl, which flock does not
    touch: this lock is only between `mlcls tune` processes opening the file.) A blocking flock would outlast a
    signal whose handler returns (Python retries it), so with `while_waiting` the lock is polled."""
    import fcntl

    with open(path, "a") as handle:
        if while_waiting is None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        else:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    while_waiting()
                    time.sleep(0.05)
        yield


def make_pruner(optuna, pruner: Any):
    """`median` (a trial below the median of the others at the same epoch stops; the first 3 trials always run to
    the end), `hyperband`, `none`, or an Optuna pruner object (the Python API)."""
    if not isinstance(pruner, str):
        return pruner
    if pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    if pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1)
    if pruner == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"unknown pruner {pruner!r} (valid: median, hyperband, none)")


def startup_trials(total: int) -> int:
    """How many trials TPE draws at random before it models the ones done: a third of the study's trials, at
    least 3 and at most Optuna's default 10. With Optuna's 10, a study of 6 or 10 trials (what a CPU affords, each
    trial a training of tens of minutes) would be a random search, the base config's trial never modelled."""
    return min(10, max(3, math.ceil(total / 3)))


def open_study(optuna, name: str, storage: Any, pruner: Any, base: dict[str, Any], space: SearchSpace | None, *,
               total: int):
    """Create the study, or load it to resume. The base config and the search space it was begun with are kept in
    it: a resume (or a second process) with another base or space would mix trials of two searches, whose figures
    do not compare (and a queued retry's values might lie outside the new space). `total`: the study's trials
    (--trials), which sets TPE's random start (startup_trials)."""
    sampler = optuna.samplers.TPESampler(n_startup_trials=startup_trials(total))
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=True,
                                pruner=make_pruner(optuna, pruner), sampler=sampler)
    held = study.user_attrs.get(BASE_CONFIG_ATTR)
    if held is None:
        study.set_user_attr(BASE_CONFIG_ATTR, base)
    elif held != base:
        key, before, now = first_difference(held, base) or ("config", held, base)
        raise ConfigError(f"study {name!r} was begun with another base config ({key}: {before!r} then, {now!r} now):"
                          " resume it with the same config and --set options, or start another with --study NAME")
    if space is not None:
        _check_space(study, name, space)
    return study


def canonical_space(space: SearchSpace) -> list[dict[str, Any]]:
    """The space as the study keeps it: each key's kind, bounds, choices and conditions, by key (neither the file's
    lines nor its order change what a trial draws), in JSON's shapes (Optuna stores attributes as JSON)."""
    entries = [{name: value for name, value in dataclasses.asdict(p).items() if name != "line"} for p in space.params]
    return json.loads(json.dumps(sorted(entries, key=lambda e: e["key"])))


def _check_space(study, name: str, space: SearchSpace) -> None:
    """Keep the space in a new study (or one begun before spaces were kept); refuse another one in one line."""
    now = canonical_space(space)
    held = study.user_attrs.get(SPACE_ATTR)
    if held is None:
        study.set_user_attr(SPACE_ATTR, now)
    elif held != now:
        raise ConfigError(f"{space.source}: study {name!r} was begun with another search space "
                          f"({_space_difference(held, now)}): put the space back to resume it, or use a new --study "
                          "name")


def _space_difference(held: list[dict[str, Any]], now: list[dict[str, Any]]) -> str:
    before, after = {e["key"]: e for e in held}, {e["key"]: e for e in now}
    for key in sorted(set(before) | set(after)):
        if key not in after:
            return f"{key} was searched"
        if key not in before:
            return f"{key} was not searched"
        if before[key] != after[key]:
            field = next(f for f in sorted(set(before[key]) | set(after[key]))
                         if before[key].get(f) != after[key].get(f))
            return f"{key}: {field} {before[key].get(field)!r} then, {after[key].get(field)!r} now"
    return "its entries differ"


@dataclass(frozen=True)
class Worker:
    """This process, as the trials it runs name it."""

    host: str
    lock: str  # the name of its lock file in workers/


@contextmanager
def worker(folder: Path) -> Iterator[Worker]:
    """Hold this process's lock in the study's workers/ folder while the block runs."""
    (folder / WORKERS).mkdir(parents=True, exist_ok=True)
    name = f"{os.getpid()}-{uuid.uuid4().hex[:12]}.lock"
    handle = try_lock(folder / WORKERS / name)
    if handle is None:  # a fresh random name: nobody else can hold it
        raise MlclsError(f"{folder / WORKERS / name}: cannot lock this process's file")
    try:
        yield Worker(socket.gethostname(), name)
    finally:
        release_lock(handle)


def is_dead(folder: Path, host: str, lock: str) -> bool:
    """Whether the process of `lock` on this machine has ended (its lock is free). Another machine's: unknown,
    so False; Optuna's heartbeat (remote RDB) or that machine's next `mlcls tune` finds it."""
    if host != socket.gethostname():
        return False
    path = folder / WORKERS / lock
    if not path.exists():
        return True
    handle = try_lock(path)
    if handle is None:
        return False
    release_lock(handle)  # the file of a dead process, removed with the lock
    return True


def live_workers(folder: Path) -> int:
    """How many `mlcls tune` processes on this machine hold a lock in the study's workers/ folder now."""
    alive = 0
    for path in (folder / WORKERS).glob("*.lock"):
        handle = try_lock(path)
        if handle is None:
            alive += 1
        else:
            release_lock(handle)
    return alive


@contextmanager
def heartbeat(storage: Any, trial) -> Iterator[None]:
    """While a trial runs, tell a remote RDB storage it is alive (Optuna's heartbeat; nothing for other storages)."""
    interval = getattr(storage, "heartbeat_interval", None)
    if not interval:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while True:
            storage.record_heartbeat(trial._trial_id)  # Optuna's own optimize() does the same with it
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name="mlcls-tune-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
