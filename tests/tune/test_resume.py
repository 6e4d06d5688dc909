"""A study outlives its processes: a `mlcls tune` killed in the middle of a trial (SIGKILL: no handler runs) is
resumed by the same command, the killed trial retried from its run's checkpoint, no trial lost or counted twice;
and two processes on one study share it, its total exactly --trials."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from mlcls.cli import app
from tests.conftest import sigterm_at_step, sigterm_to_self
from tests.tune.conftest import load_trials, sqlite_of, subprocess_env, tune_args

# `mlcls tune`, whose trial KILL_TRIAL dies by SIGKILL at the end of its first epoch (after that epoch's checkpoint:
# the training hook runs after it). Nothing of mlcls is replaced: the kill is added after the real hook.
KILLED_IN_A_TRIAL = """
import os, signal, sys
from mlcls.tune import objective

hook = objective.PruneOnEpoch.__call__

def dying(self, end):
    hook(self, end)
    if self.trial.number == int(sys.argv[1]) and end.epoch == 1:
        os.kill(os.getpid(), signal.SIGKILL)

objective.PruneOnEpoch.__call__ = dying
from mlcls.cli import app
app(sys.argv[2:], prog_name="mlcls")
"""


# asked: the command line's opt-in to the encoder's code (training resumes a run that asks for it only with one:
# the search's own command line is that opt-in for its trials' runs)
@pytest.mark.parametrize("asked", [(), ("--set", "model.trust_remote_code=true")], ids=["plain", "remote-code"])
def test_a_killed_search_resumes_with_the_same_command(tiny_base, tiny_space, asked):
    args = tune_args(tiny_base, tiny_space, "--trials", "2", "--pruner", "none", *asked, epochs=2)
    killed = subprocess.run([sys.executable, "-c", KILLED_IN_A_TRIAL, "1", *args], env=subprocess_env(),
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    folder = tiny_base.parent / "runs" / "tune-tiny"
    left = load_trials(sqlite_of(folder))
    assert [t.state.name for t in left] == ["COMPLETE", "RUNNING"]  # what a killed process leaves in the storage
    assert (folder / ".trial-0001.incomplete" / "checkpoint").is_dir()

    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})  # the table's rows on one line each
    assert result.exit_code == 0, result.output
    assert "trial 1: its process died; queued again" in result.stderr
    assert "trial 2: resuming trial-0001 from its checkpoint" in result.stderr
    trials = load_trials(sqlite_of(folder))
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE"]
    killed_trial, retry = trials[1], trials[2]
    assert retry.system_attrs["retry_history"] == [1] and retry.params == killed_trial.params
    assert retry.user_attrs["run"] == "trial-0001"  # the killed trial's run, continued
    assert sorted(retry.intermediate_values) == [1, 2]  # epoch 1 from before the kill, epoch 2 after it
    # 2 trials in all (--trials), each with its own finished run: none lost, none twice.
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert sorted(t.user_attrs["run"] for t in complete) == ["trial-0000", "trial-0001"]
    assert sorted(p.name for p in folder.glob("trial-*")) == ["trial-0000", "trial-0001"]
    # no process's lock is left (workers/.claim, the lock processes take their trials under, stays: see study.py)
    assert not list(folder.glob(".*incomplete")) and not list((folder / "workers").glob("*.lock"))
    assert [line.split("│")[1].strip() for line in result.stdout.splitlines() if line.startswith("1 ")] == [
        "retried as 2"]
    # best.yaml asks for the code when the search did: the command that trains it carries the opt-in that
    # `mlcls train` takes from the command line only
    hint = f"mlcls train -c {folder / 'best.yaml'}" + (" --trust-remote-code" if asked else "")
    assert f"train it: {hint} " in " ".join(result.stdout.split()) + " "  # the console may wrap the line
    assert f"# Train it: {hint}\n" in (folder / "best.yaml").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["journal", "sqlite"])
def test_two_processes_share_one_study_and_run_exactly_its_trials(tiny_base, tiny_space, storage):
    folder = tiny_base.parent / "runs" / "tune-tiny"
    url = str(tiny_base.parent / "study.journal") if storage == "journal" else sqlite_of(tiny_base.parent)
    args = tune_args(tiny_base, tiny_space, "--trials", "5", "--keep-best", "5", "--storage", url)
    workers = [subprocess.Popen([sys.executable, "-m", "mlcls", *args], env=subprocess_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [worker.communicate(timeout=600) for worker in workers]
    for worker, (_, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err[-2000:]
    trials = load_trials(url)
    done = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(done) == 5
    # A trial beyond the 5 (both asked for the last slot at once) is failed as surplus, never run or counted.
    assert all(t.user_attrs.get("surplus") for t in trials if t.state.name == "FAIL")
    runs = [t.user_attrs["run"] for t in done]
    assert len(set(runs)) == 5  # each trial its own run
    assert sorted(p.name for p in folder.glob("trial-*")) == sorted(t.user_attrs["run"] for t in done
                                                                    if t.state.name == "COMPLETE")


def test_sigterm_in_a_trial_exits_143_and_the_trial_goes_on_from_its_checkpoint(tiny_base, tiny_space, monkeypatch):
    """A scheduler stopping `mlcls tune` (SIGTERM) pauses the search as Ctrl-C does, not as a crash."""
    import mlcls.tune.search as search
    from mlcls.training.interrupt import StopSignal

    monkeypatch.setattr(search, "StopSignal", lambda: sigterm_at_step(4))  # a real SIGTERM in epoch 2
    stopped = CliRunner().invoke(app, tune_args(tiny_base, tiny_space, "--trials", "1", "--study", "term",
                                                "--pruner", "none", epochs=2))
    assert stopped.exit_code == 143, stopped.output
    assert "stopped by SIGTERM in epoch 2" in stopped.output and "the search goes on (trial 0" in stopped.output
    folder = tiny_base.parent / "runs" / "tune-term"
    trials = load_trials(sqlite_of(folder), "term")
    assert [t.state.name for t in trials] == ["FAIL", "WAITING"]
    assert trials[1].user_attrs["crashes"] == 0  # a pause, not one of the crashes that end a trial's retries

    monkeypatch.setattr(search, "StopSignal", StopSignal)
    done = CliRunner().invoke(app, tune_args(tiny_base, tiny_space, "--trials", "1", "--study", "term",
                                             "--pruner", "none", epochs=2))
    assert done.exit_code == 0, done.output
    log = (folder / "trial-0000" / "train_log.jsonl").read_text().splitlines()
    assert len(log) == 2  # the 2 epochs of one training, continued from the checkpoint


def test_sigterm_between_trials_starts_no_other_trial(tiny_base, tiny_space, monkeypatch):
    """SIGTERM outside a training loop (here while the study's best config is written) is taken by the search too:
    without that, the default action would kill the process and the next start would count a death."""
    import signal

    import mlcls.tune.search as search

    write = search.write_best_config

    def write_then_sigterm(*args, **kwargs):
        write(*args, **kwargs)
        sigterm_to_self()  # outside any training: the search's own handler must hold SIGTERM

    monkeypatch.setattr(search, "write_best_config", write_then_sigterm)
    args = tune_args(tiny_base, tiny_space, "--trials", "2", "--study", "between", "--pruner", "none")
    stopped = CliRunner().invoke(app, args)
    assert stopped.exit_code == 143, stopped.output
    assert "stopped by SIGTERM between trials; the search goes on" in stopped.output
    folder = tiny_base.parent / "runs" / "tune-between"
    assert [t.state.name for t in load_trials(sqlite_of(folder), "between")] == ["COMPLETE"]  # trial 1 not begun
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL

    monkeypatch.setattr(search, "write_best_config", write)
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    assert [t.state.name for t in load_trials(sqlite_of(folder), "between")] == ["COMPLETE", "COMPLETE"]


def test_a_stop_while_a_trial_is_claimed_does_not_begin_it(tiny_base, tiny_space, monkeypatch):

    import mlcls.tune.search as search

    claimed = search._claimed_next_trial

    def claim_then_sigterm(*args):
        trial = claimed(*args)
        sigterm_to_self()  # arrives before the trial's training begins
        return trial

    monkeypatch.setattr(search, "_claimed_next_trial", claim_then_sigterm)
    stopped = CliRunner().invoke(app, tune_args(tiny_base, tiny_space, "--trials", "1", "--study", "claimed",
                                                "--pruner", "none"))
    assert stopped.exit_code == 143, stopped.output
    assert "stopped by SIGTERM before trial 0; the search goes on" in stopped.output
    folder = tiny_base.parent / "runs" / "tune-claimed"
    trials = load_trials(sqlite_of(folder), "claimed")
    assert [t.state.name for t in trials] == ["FAIL", "WAITING"] and trials[1].user_attrs["crashes"] == 0
    assert not (folder / "trial-0000").exists() and not list(folder.glob(".trial-0000*"))  # never begun


def test_a_stop_before_the_refit_leaves_it_for_the_next_command(tiny_base, tiny_space, monkeypatch):

    import mlcls.tune.search as search

    result_of = search._result

    def result_then_sigterm(*args):
        result = result_of(*args)
        sigterm_to_self()  # the search is done; the refit has not begun
        return result

    monkeypatch.setattr(search, "_result", result_then_sigterm)
    args = tune_args(tiny_base, tiny_space, "--trials", "1", "--study", "prerefit", "--pruner", "none", "--refit",
                     "--refit-folds", "2")
    stopped = CliRunner().invoke(app, args)
    assert stopped.exit_code == 143, stopped.output
    assert "stopped by SIGTERM before the refit; the search goes on" in stopped.output
    assert not (tiny_base.parent / "runs" / "tune-prerefit-refit").exists()


def test_ctrl_c_in_a_trial_keeps_its_checkpoint_and_the_search_goes_on_from_it(tiny_base, tiny_space):
    from mlcls.config import load_config
    from mlcls.errors import Interrupted
    from mlcls.training.interrupt import StopAfterStep
    from mlcls.tune.search import tune

    config = load_config(tiny_base, ["train.epochs=2", f"train.cache_dir={tiny_base.parent / 'cache'}"])
    with pytest.raises(Interrupted, match="the search goes on .trial 0 from that checkpoint"):
        tune(config, tiny_space, 1, study="ctrl-c", pruner="none", stop=StopAfterStep(4))  # Ctrl-C in epoch 2
    folder = tiny_base.parent / "runs" / "tune-ctrl-c"
    assert [t.state.name for t in load_trials(sqlite_of(folder), "ctrl-c")] == ["FAIL", "WAITING"]
    result = tune(config, tiny_space, 1, study="ctrl-c", pruner="none")
    assert [t.state.name for t in result.trials] == ["FAIL", "COMPLETE"] and result.complete
    assert result.best.number == 1 and result.best.user_attrs["run"] == "trial-0000"
    log = (folder / "trial-0000" / "train_log.jsonl").read_text().splitlines()
    assert len(log) == 2  # one training of 2 epochs, continued mid-epoch, not begun again


def test_a_resumed_trial_asks_for_code_as_the_search_did_whatever_the_encoders_spelling(tmp_path, monkeypatch):
    """A run's config.yaml holds a local encoder folder absolute; the base config holds it as the user typed it
    (./enc): the search's own ask still covers its trial's resume, and not a run naming another encoder."""
    from mlcls.config import Config
    from mlcls.tune.objective import resumes_asked_code

    monkeypatch.chdir(tmp_path)
    (tmp_path / "enc").mkdir()
    base = Config().to_dict()
    base["model"].update(encoder="./enc", trust_remote_code=True)
    resumed = Config()
    resumed.model.encoder, resumed.model.trust_remote_code = str(tmp_path / "enc"), True
    assert resumes_asked_code(base, resumed, "./enc")
    resumed.model.encoder = str(tmp_path / "other")
    assert not resumes_asked_code(base, resumed, "./enc")
    base["model"]["trust_remote_code"] = False  # the search did not ask: the run's own ask is refused as ever
    resumed.model.encoder = str(tmp_path / "enc")
    assert not resumes_asked_code(base, resumed, "./enc")
