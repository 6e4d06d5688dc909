"""--trials counts a study's trials in all: retried and surplus trials give their slot up, a retry takes it (the first
one, when two were queued); a running trial whose process died (its flock free) is failed and queued again, exactly
once; Ctrl-C never uses up a trial's retries, nor loses its retry."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

import pytest

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
    assert not ledger.fail_and_retry(optuna, study, number)  # failed, but not queued again
    trials = study.trials
    assert [t.state for t in trials] == [State.FAIL] * (ledger.MAX_RETRIES + 1)
    assert trials[-1].system_attrs["retry_history"] == list(range(ledger.MAX_RETRIES))
    assert ledger.slots_taken(trials) == 1  # the last failure holds the slot: the study moves on


def named(trial, host: str, lock: str):
    trial.set_user_attr(ledger.WORKER_HOST, host)
    trial.set_user_attr(ledger.WORKER_LOCK, lock)
    return trial


def test_a_running_trial_is_an_orphan_once_its_process_lock_is_free(tmp_path, monkeypatch):
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
            # Trial 2 began a moment ago: it may be a process's of another machine that shares a journal file
            # (its lock elsewhere), naming itself now; only once it is older than the grace is it an orphan.
            assert [t.number for t in ledger.orphans(study.trials, tmp_path, one_machine=True)] == [1]
            monkeypatch.setattr(ledger, "UNNAMED_GRACE_S", 0.0)
            orphaned = [t.number for t in ledger.orphans(study.trials, tmp_path, one_machine=True)]
            assert orphaned == [1, 2]  # 1's lock is free; 2 names none and no other process is left
            # With an RDB server, processes on other machines lock elsewhere: an unnamed trial is left to the heartbeat
            assert [t.number for t in ledger.orphans(study.trials, tmp_path, one_machine=False)] == [1]
            assert ledger.recover(optuna, study, tmp_path, one_machine=True) == {1: True, 2: True}  # queued again
            assert ledger.recover(optuna, study, tmp_path, one_machine=True) == {}  # once
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



def test_ctrl_c_never_uses_up_a_trials_retries():
    study = study_with(None)
    number = 0
    for _ in range(2 * ledger.MAX_RETRIES):  # paused again and again: each pause queues the trial again
        assert ledger.fail_and_retry(optuna, study, number, interrupted=True)
        number = study.ask().number
    assert ledger.crashes(study.trials[number]) == 0
    for _ in range(ledger.MAX_RETRIES):  # crashes still stop the retries, after MAX_RETRIES of them
        assert ledger.fail_and_retry(optuna, study, number)
        number = study.ask().number
    assert not ledger.fail_and_retry(optuna, study, number)
    assert ledger.slots_taken(study.trials) == 1


def test_a_second_retry_of_one_trial_is_surplus_and_never_counted():
    """Two processes that both failed trial 0 (a storage that does not refuse the second tell) queue two retries
    of it: the first holds the slot, the second holds none, whatever its state."""
    study = study_with(None)
    assert ledger.fail_and_retry(optuna, study, 0)
    ledger.retry(optuna, study, study.trials[0])  # the other process's
    trials = study.trials
    assert [t.state for t in trials] == [State.FAIL, State.WAITING, State.WAITING]
    assert ledger.retries(trials) == {0: 1} and ledger.duplicate_retries(trials) == {2}
    assert ledger.slots_taken(trials) == 1
    study.tell(study.ask(), 0.5)  # the first retry runs
    study.ask()  # ... and a process takes the second before seeing that it is one
    assert ledger.slots_taken(study.trials) == 1


def test_a_second_ctrl_c_between_failing_a_trial_and_queuing_its_retry_loses_nothing(monkeypatch, terminal_ctrl_c):
    study = study_with(None)
    queue = study.add_trial

    def pressed_then_queue(trial):  # Ctrl-C arrives between the two writes
        signal.raise_signal(signal.SIGINT)
        queue(trial)

    monkeypatch.setattr(study, "add_trial", pressed_then_queue)
    try:
        assert ledger.fail_and_retry(optuna, study, 0)
    except KeyboardInterrupt:
        pytest.fail("the second Ctrl-C stopped the retry of a failed trial from being queued")
    assert [t.state for t in study.trials] == [State.FAIL, State.WAITING]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Ctrl-C works again after


def search_over(folder, study, total: int):
    """A Search of `study` whose trials no test trains (next_trial only asks for them)."""
    import io

    from rich.console import Console

    from mlcls.tune.objective import TrialSetup
    from mlcls.tune.search import Search
    from mlcls.tune.space import SearchSpace

    setup = TrialSetup({}, SearchSpace(()), folder, "micro_f1", Console(file=io.StringIO()))
    return Search(optuna, study, None, setup, total, keep_best=3, one_machine=True)


def test_a_process_takes_its_next_trial_only_under_the_study_claim(tmp_path, monkeypatch):
    """Recovering, counting, asking and naming are one step per process: while another process holds the claim
    (it may be retrying the very trial this one would), this one waits, and asks for nothing."""
    import threading

    import mlcls.tune.search as search_module
    from mlcls.tune.search import next_trial

    polls, polled = [], threading.Event()  # the wait's polls, counted: no clock decides what the test sees
    check_stop = search_module._stop_here

    def counted(stop, where):
        polls.append(where)
        if len(polls) >= 3:
            polled.set()
        return check_stop(stop, where)

    monkeypatch.setattr(search_module, "_stop_here", counted)

    search = search_over(tmp_path, optuna.create_study(direction="maximize"), total=2)
    (tmp_path / "workers").mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path / "workers" / ".claim")],
                              stdout=subprocess.PIPE, text=True)
    taken = []
    try:
        assert holder.stdout.readline().strip() == "locked"
        with worker(tmp_path) as me:
            waiting = threading.Thread(target=lambda: taken.append(next_trial(search, me)))
            waiting.start()
            assert polled.wait(30)  # it found the claim held three times ...
            assert waiting.is_alive() and search.study.trials == []  # ... and waits for it, asking for nothing
            holder.kill()
            waiting.join(timeout=30)
            assert not waiting.is_alive()
    finally:
        holder.kill()
        holder.wait()
    [trial] = taken
    assert trial.number == 0 and search.study.trials[0].user_attrs[ledger.WORKER_LOCK] == me.lock


def test_a_stop_ends_the_wait_for_another_process_s_claim(tmp_path):
    """A Ctrl-C or SIGTERM only sets a flag in a search; a blocking flock would then wait on (Python retries it
    after the handler), for ever if the holder is stopped. The wait polls and asks whether to go on."""
    from mlcls.tune.study import claim

    (tmp_path / "workers").mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path / "workers" / ".claim")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        asked = []

        def stop_after_three_polls():
            asked.append(1)
            if len(asked) == 3:
                raise KeyboardInterrupt  # what the search's check raises once the flag is set

        with pytest.raises(KeyboardInterrupt), claim(tmp_path, True, stop_after_three_polls):
            pytest.fail("the claim was taken while another process held it")
        assert len(asked) == 3
    finally:
        holder.kill()
        holder.wait()
    with claim(tmp_path, True, stop_after_three_polls):  # free again: taken at once, nothing asked
        pass
    assert len(asked) == 3


def test_a_duplicate_retry_is_never_run(tmp_path):
    study = study_with(None)
    assert ledger.fail_and_retry(optuna, study, 0)
    ledger.retry(optuna, study, study.trials[0])  # another process's retry of the same trial
    search = search_over(tmp_path, study, total=2)
    with worker(tmp_path) as me:
        from mlcls.tune.search import next_trial

        first = next_trial(search, me)
        assert first.number == 1
        study.tell(first, 0.5)
        fresh = next_trial(search, me)  # trial 2 is given up as surplus; a new trial takes the second slot
        assert fresh.number == 3 and not study.trials[3].system_attrs.get("retry_history")
    trials = study.trials
    assert trials[2].state == State.FAIL and trials[2].user_attrs[ledger.SURPLUS]
    assert ledger.slots_taken(trials) == 2
