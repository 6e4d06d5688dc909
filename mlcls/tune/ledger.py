"""Counting a study's trials so that `--trials N` means N in all, across resumes and processes, and retrying the
trials whose process died.

A trial takes one of the N slots unless it failed and does not count: it was retried (its retry holds the slot:
a trial killed, interrupted or stopped by an error), or it was surplus (two processes asked for the last slot at
once: the one with the higher number gives it up). A trial whose config the trainer refuses fails and counts
(the space allowed it: retrying gives the same config). A retry is Optuna's own form: a WAITING trial with the
same parameters and the intermediate values reported so far, `failed_trial` / `retry_history` in its system
attributes (as `RetryHeartbeatStaleTrialCallback` writes them), which the next `study.ask()` of any process
takes. Its run is the retried trial's: resumed from its checkpoint when it has one.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from mlcls.tune.study import is_dead, live_workers

MAX_RETRIES = 3  # a trial that kills its process every time (out of memory, say) stops being retried

# user attributes a trial carries (visible in optuna-dashboard)
WORKER_HOST, WORKER_LOCK, RUN, ERROR, SURPLUS = "worker_host", "worker_lock", "run", "error", "surplus"


def retried(trials) -> set[int]:
    """The numbers of the trials that a later trial retries."""
    return set(retries(trials))


def retries(trials) -> dict[int, int]:
    """Retried trial -> the trial that retried it."""
    return {t.system_attrs["retry_history"][-1]: t.number for t in trials if t.system_attrs.get("retry_history")}


def takes_a_slot(trial, retried_numbers: set[int]) -> bool:
    from optuna.trial import TrialState

    if trial.state != TrialState.FAIL:
        return True  # complete, pruned, or running / waiting (it will be one of those)
    return trial.number not in retried_numbers and not trial.user_attrs.get(SURPLUS)


def slots_taken(trials, below: int | None = None) -> int:
    """How many of the N slots the trials hold (those numbered below `below`, when given)."""
    again = retried(trials)
    return sum(1 for t in trials if (below is None or t.number < below) and takes_a_slot(t, again))


def all_taken(trials, total: int) -> bool:
    """Nothing left to ask for: the slots are taken, and no trial waits (a retry, or one a user enqueued)."""
    return slots_taken(trials) >= total and not any(t.state.name == "WAITING" for t in trials)


def root_number(trial) -> int:
    """The trial whose slot (and run) this one holds: itself, or the first trial of the retries it continues."""
    return trial.system_attrs.get("failed_trial", trial.number)


def retry(optuna, study, trial) -> bool:
    """Queue `trial` (failed, not by its own config) to run again with the same parameters; False when it has been
    retried MAX_RETRIES times (it then stays failed, and counts)."""
    history = [*trial.system_attrs.get("retry_history", []), trial.number]
    if len(history) > MAX_RETRIES:
        return False
    study.add_trial(optuna.trial.create_trial(
        state=optuna.trial.TrialState.WAITING, params=trial.params, distributions=trial.distributions,
        system_attrs={"failed_trial": history[0], "retry_history": history},
        intermediate_values=dict(trial.intermediate_values)))
    return True


def fail_and_retry(optuna, study, number: int) -> bool:
    """Fail the running trial `number` (another process's, or this one's that stopped) and queue its retry; False
    when another process got there first (the trial is finished already: it must not be retried twice)."""
    try:
        study.tell(number, state=optuna.trial.TrialState.FAIL)
    except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
        return False
    retry(optuna, study, study.get_trials(deepcopy=False)[number])  # a study's trials are numbered 0, 1, ...
    return True


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
        if (lock is None and alone) or (lock is not None and is_dead(folder, host, lock)):
            found.append(trial)
    return found


def recover(optuna, study, folder: Path, one_machine: bool) -> list[int]:
    """Fail and retry every orphaned trial (and, with Optuna's heartbeat on, the heartbeat-stale ones); the
    numbers of those this process retried."""
    if not one_machine:  # Optuna's heartbeat, on for RDB servers (study.py)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
    return [t.number for t in orphans(study.get_trials(deepcopy=False), folder, one_machine)
            if fail_and_retry(optuna, study, t.number)]


def heartbeat_stale(optuna):
    """What Optuna's heartbeat does with a stale trial (it has failed it already): queue its retry."""
    return lambda study, trial: retry(optuna, study, trial)
