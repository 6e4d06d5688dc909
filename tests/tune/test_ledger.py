"""--trials counts a study's trials in all: retried and surplus trials give their slot up, a retry takes it; a running
trial whose process died (its flock free) is failed and queued again, exactly once."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

from mlcls.tune import ledger
from mlcls.tune.study import require_optuna, worker

optuna = require_optuna()
State = optuna.trial.TrialState

HOLD_LOCK = """
import fcntl, sys, time
handle = open(sys.argv[1], "a")
fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
print("locked", flush=True)
time.sleep(600)
"""


def study_with(*states):
    """An in-memory study whose trials end in `states` (None: left running)."""
    study = optuna.create_study(direction="maximize")
    for i, state in enumerate(states):
        trial = study.ask()
        trial.suggest_float("x", 0, 1)
        trial.report(0.1 * i, 1)
        if state == State.COMPLETE:
            study.tell(trial, 0.5)
        elif state is not None:
            study.tell(trial, state=state)
    return study


def test_retried_and_surplus_trials_give_their_slot_up_and_a_retry_takes_it():
    study = study_with(State.COMPLETE, None, State.PRUNED, None)
    assert ledger.slots_taken(study.trials) == 4  # running trials hold their slot
    assert ledger.fail_and_retry(optuna, study, 1)
    assert not ledger.fail_and_retry(optuna, study, 1)  # a second process finds it finished: no second retry
    trials = study.trials
    assert [t.state for t in trials] == [State.COMPLETE, State.FAIL, State.PRUNED, State.RUNNING, State.WAITING]
    retry = trials[4]
    assert retry.params == trials[1].params and retry.intermediate_values == trials[1].intermediate_values
    assert ledger.root_number(retry) == 1 and ledger.retries(trials) == {1: 4}
    assert ledger.slots_taken(trials) == 4  # the failed trial's slot went to its retry
    surplus = study.ask()  # the waiting retry is asked for first
    assert surplus.number == 4
    extra = study.ask()
    extra.set_user_attr(ledger.SURPLUS, True)
    study.tell(extra, state=State.FAIL)
    assert ledger.slots_taken(study.trials) == 4
    assert ledger.slots_taken(study.trials, below=3) == 2


def test_a_trial_that_keeps_dying_stops_being_retried_and_then_counts():
    study = study_with(None)
    number = 0
    for _ in range(ledger.MAX_RETRIES):
        assert ledger.fail_and_retry(optuna, study, number)
        number = study.ask().number  # the retry runs ... and dies too
    assert ledger.fail_and_retry(optuna, study, number)  # failed, but not queued again
    trials = study.trials
    assert [t.state for t in trials] == [State.FAIL] * (ledger.MAX_RETRIES + 1)
    assert trials[-1].system_attrs["retry_history"] == list(range(ledger.MAX_RETRIES))
    assert ledger.slots_taken(trials) == 1  # the last failure holds the slot: the study moves on


def named(trial, host: str, lock: str):
    trial.set_user_attr(ledger.WORKER_HOST, host)
    trial.set_user_attr(ledger.WORKER_LOCK, lock)
    return trial


def test_a_running_trial_is_an_orphan_once_its_process_lock_is_free(tmp_path):
    study = optuna.create_study(direction="maximize")
    with worker(tmp_path) as me:
        holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path / "workers" / "other.lock")],
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout.readline().strip() == "locked"
            named(study.ask(), socket.gethostname(), me.lock)  # this process's
            named(study.ask(), socket.gethostname(), "other.lock")  # the other process's
            study.ask()  # a trial that names no process yet
            # Another process is alive: trial 2 may be its own, about to be named; nothing is an orphan.
            assert ledger.orphans(study.trials, tmp_path, one_machine=True) == []
            holder.send_signal(signal.SIGKILL)
            holder.wait()
            orphaned = [t.number for t in ledger.orphans(study.trials, tmp_path, one_machine=True)]
            assert orphaned == [1, 2]  # 1's lock is free; 2 names none and no other process is left
            # With an RDB server, processes on other machines lock elsewhere: an unnamed trial is left to the heartbeat
            assert [t.number for t in ledger.orphans(study.trials, tmp_path, one_machine=False)] == [1]
            assert ledger.recover(optuna, study, tmp_path, one_machine=True) == [1, 2]
            assert ledger.recover(optuna, study, tmp_path, one_machine=True) == []  # once
        finally:
            holder.kill()
            holder.wait()
    states = [t.state for t in study.trials]
    assert states == [State.RUNNING, State.FAIL, State.FAIL, State.WAITING, State.WAITING]


def test_a_trial_of_another_machine_is_not_judged_here(tmp_path):
    study = optuna.create_study(direction="maximize")
    named(study.ask(), "elsewhere", "gone.lock")
    with worker(tmp_path):
        assert ledger.orphans(study.trials, tmp_path, one_machine=True) == []

