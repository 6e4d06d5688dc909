"""Counting a study's trials so that `--trials N` means N in all, across resumes and processes, and retrying the
trials whose process died.

A trial takes one of the N slots unless it failed and does not count: it was retried (its retry holds the slot:
a trial killed, interrupted or stopped by an error), or it was surplus (two processes asked for the last slot at
once: the one with the higher number gives it up; or a second retry of one trial, which only the first may
hold). A trial whose config the trainer or its data refuses fails and counts (the space allowed it: retrying
gives the same config). A retry is Optuna's own form: a WAITING trial with the same parameters and the
intermediate values reported so far, `failed_trial` / `retry_history` in its system attributes (as
`RetryHeartbeatStaleTrialCallback` writes them), which the next `study.ask()` of any process takes. Its run is the
retried trial's: resumed from its checkpoint when it has one.
"""

from __future__ import annotations

import signal
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlcls.tune.study import is_dead, live_workers

MAX_RETRIES = 3  # a trial that kills its process every time (out of memory, say) stops being retried
# A trial that names no process yet is judged dead only this long after it began: a process of another machine
# sharing a journal file (whose locks are not in this folder) names its trial milliseconds after asking for it.
UNNAMED_GRACE_S = 60.0

# user attributes a trial carries (visible in optuna-dashboard)
WORKER_HOST, WORKER_LOCK, RUN, ERROR, SURPLUS = "worker_host", "worker_lock", "run", "error", "surplus"
ERROR_KIND = "error_kind"  # beside ERROR: "config" (the trainer refused the values) or "data" (the data did)
# how many of the failures a retry continues were crashes or deaths: Ctrl-C, the way to pause, is not one
CRASHES = "crashes"
BASE = "base_config"  # the trial of the base config's own values (base_trial.py); its retries carry it too


def is_base(trial) -> bool:
    """Whether `trial` is (a try of) the trial of the base config's own values."""
    return bool(trial.user_attrs.get(BASE))


def retried(trials) -> set[int]:
    """The numbers of the trials that a later trial retries."""
    return set(retries(trials))


def retries(trials) -> dict[int, int]:
    """Retried trial -> the trial that retried it: the first one, when two processes both queued a retry of it
    (the other is a duplicate: surplus)."""
    found: dict[int, int] = {}
    for trial in sorted(trials, key=lambda t: t.number):
        if trial.system_attrs.get("retry_history"):
            found.setdefault(trial.system_attrs["retry_history"][-1], trial.number)
    return found


def takes_a_slot(trial, retried_numbers: set[int], duplicates: frozenset[int] = frozenset()) -> bool:
    from optuna.trial import TrialState

    if trial.number in duplicates:
        return False  # whatever its state: the first retry holds the slot
    if trial.state != TrialState.FAIL:
        return True  # complete, pruned, or running / waiting (it will be one of those)
    return trial.number not in retried_numbers and not trial.user_attrs.get(SURPLUS)


def duplicate_retries(trials) -> frozenset[int]:
    """The numbers of the trials that retry a trial an earlier trial retries already (two processes both queued
    its retry): they must not run (the config would be trained twice) nor hold a slot (counted twice)."""
    first = retries(trials)
    return frozenset(t.number for t in trials if t.system_attrs.get("retry_history")
                     and first[t.system_attrs["retry_history"][-1]] != t.number)


def slots_taken(trials, below: int | None = None) -> int:
    """How many of the N slots the trials hold (those numbered below `below`, when given)."""
    again, duplicates = retried(trials), duplicate_retries(trials)
    return sum(1 for t in trials if (below is None or t.number < below) and takes_a_slot(t, again, duplicates))


def all_taken(trials, total: int) -> bool:
    """Nothing left to ask for: the slots are taken, and no trial waits (a retry, or one a user enqueued)."""
    return slots_taken(trials) >= total and not any(t.state.name == "WAITING" for t in trials)


def root_number(trial) -> int:
    """The trial whose slot (and run) this one holds: itself, or the first trial of the retries it continues."""
    return trial.system_attrs.get("failed_trial", trial.number)


def crashes(trial) -> int:
    """How many crashes or deaths the tries of `trial` so far ended in (a retry queued before this count was kept
    counts every earlier try)."""
    return int(trial.user_attrs.get(CRASHES, len(trial.system_attrs.get("retry_history", []))))


def retry(optuna, study, trial, interrupted: bool = False) -> bool:
    """Queue `trial` (failed, not by its own config) to run again with the same parameters; False when it has
    crashed or died MAX_RETRIES + 1 times (it then stays failed, and counts). `interrupted`: it stopped for Ctrl-C,
    which does not count towards MAX_RETRIES (pausing a search any number of times never ends a trial)."""
    history = [*trial.system_attrs.get("retry_history", []), trial.number]
    crashed = crashes(trial) + (0 if interrupted else 1)
    if crashed > MAX_RETRIES:
        return False
    study.add_trial(optuna.trial.create_trial(
        state=optuna.trial.TrialState.WAITING, params=trial.params, distributions=trial.distributions,
        # the values an enqueued trial was given go with it: a try that died before drawing them all would
        # otherwise have the rest drawn at random (the base config's trial would no longer be the base config)
        system_attrs={"failed_trial": history[0], "retry_history": history,
                      **({"fixed_params": trial.system_attrs["fixed_params"]} if "fixed_params" in trial.system_attrs
                         else {})},
        user_attrs={CRASHES: crashed, **({BASE: True} if is_base(trial) else {})},
        intermediate_values=dict(trial.intermediate_values)))
    return True


def fail(optuna, study, number: int) -> bool:
    """Fail the running trial `number`; False when it is finished already (another process failed it first)."""
    try:
        study.tell(number, state=optuna.trial.TrialState.FAIL)
    except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
        return False
    return True


def fail_and_retry(optuna, study, number: int, interrupted: bool = False) -> bool | None:
    """Fail the running trial `number` (another process's, or this one's that stopped) and queue its retry: True
    when queued; False when it has crashed too often (retry: it stays failed, and counts); None when another
    process got there first (the trial is finished already: it must not be retried twice)."""
    with sigint_held_off():  # failed and not yet queued again, the trial would be lost to a second Ctrl-C
        if not fail(optuna, study, number):
            return None
        return retry(optuna, study, study.get_trials(deepcopy=False)[number], interrupted)  # trials are numbered 0..


@contextmanager
def sigint_held_off() -> Iterator[None]:
    """Ctrl-C ignored for the block: a few storage writes that must happen together (the main thread only: no
    other may set a signal handler)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        # None: a handler set outside Python, which cannot be put back; the default is the closest
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)


def orphans(trials, folder: Path, one_machine: bool) -> list[Any]:
    """The running trials whose process has died, as this machine can tell: its lock is free; or, for a trial
    that names no process yet (its process died between asking for it and naming itself), no other process of
    this study holds a lock, so none can be about to name itself: known only when every process of the study
    keeps its lock in this folder (`one_machine`: a SQLite or journal file, not an RDB server)."""
    from optuna.trial import TrialState

    running = [t for t in trials if t.state == TrialState.RUNNING]
    if not running:
        return []
    alone = one_machine and live_workers(folder) <= 1  # this process's own lock is the one
    found = []
    for trial in running:
        host, lock = trial.user_attrs.get(WORKER_HOST), trial.user_attrs.get(WORKER_LOCK)
        if (lock is None and alone and _began_before(trial, UNNAMED_GRACE_S)) or (
                lock is not None and is_dead(folder, host, lock)):
            found.append(trial)
    return found


def _began_before(trial, seconds: float) -> bool:
    """Whether the trial began more than `seconds` ago (Optuna stamps datetime_start with the local clock)."""
    from datetime import datetime, timedelta

    return trial.datetime_start is None or datetime.now() - trial.datetime_start > timedelta(seconds=seconds)


def recover(optuna, study, folder: Path, one_machine: bool) -> dict[int, bool]:
    """Fail and retry every orphaned trial (and, with Optuna's heartbeat on, the heartbeat-stale ones): the
    numbers of those this process failed -> whether it queued their retry (False: they died too often)."""
    if not one_machine:  # Optuna's heartbeat, on for RDB servers (study.py)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
    found = {}
    for trial in orphans(study.get_trials(deepcopy=False), folder, one_machine):
        queued = fail_and_retry(optuna, study, trial.number)
        if queued is not None:  # else another process failed it first, and retries it
            found[trial.number] = queued
    return found


def heartbeat_stale(optuna):
    """What Optuna's heartbeat does with a stale trial (it has failed it already): queue its retry."""
    return lambda study, trial: retry(optuna, study, trial)
