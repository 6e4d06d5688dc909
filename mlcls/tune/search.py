"""`tune()`: a hyperparameter search over config keys, on Optuna, that resumes, prunes and scales out.

    search:  while slots are left: [recover orphaned trials -> ask -> name this process in it] -> train the
             trial -> tell -> keep the best K runs
    finish:  best.yaml, parameter importances, (refit)

The loop is Optuna's ask-and-tell interface rather than `study.optimize`, so that `trials` counts the study's
trials in all (ledger.py: slots), a killed process's trial is retried from its checkpoint, and two processes
that ask for the last slot at once do not both run it. The bracketed step holds the study's claim lock on one
machine (study.py), so that two processes never both retry one dead trial.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from mlcls.atomic import describe_os_error
from mlcls.config import Config, load_config
from mlcls.errors import ConfigError, DataError, Interrupted
from mlcls.run.layout import CONFIG, FOLDS, staging_dir, study_dir
from mlcls.training.data import TrainingInterrupted
from mlcls.training.interrupt import StopSignal
from mlcls.tune import ledger
from mlcls.tune.base_trial import base_params, duplicate_base, enqueue_base, the_base_trial
from mlcls.tune.best import best_config, keep_best_runs, param_importances, refit_config, write_best_config
from mlcls.tune.objective import (
    NO_VALIDATION,
    Outcome,
    TrialSetup,
    compares_on_validation,
    discard_unfinished,
    resumes_asked_code,
    run_trial,
    shares_data,
)
from mlcls.tune.report import best_of, cell, failure_notes, study_view
from mlcls.tune.space import SearchSpace
from mlcls.tune.space_checks import load_space
from mlcls.tune.study import (
    Worker,
    check_study_name,
    claim,
    heartbeat,
    is_remote,
    open_storage,
    open_study,
    require_optuna,
    storage_url,
    worker,
)


@dataclass
class TuneResult:
    """What tune() returns: the study, its trials, the best one and its best.yaml, the base config's trial,
    whether every slot is done, the searched keys' importances and the notes to show."""

    study: str
    storage: str  # what `optuna-dashboard` takes
    folder: Path  # runs/tune-<study>
    metric: str
    keys: list[str]  # the searched keys
    trials: list[Any]  # Optuna's FrozenTrials, every process's
    best: Any | None  # the best complete trial
    best_config: Path | None
    complete: bool  # every slot done and nothing running
    importances: dict[str, float] = field(default_factory=dict)  # the searched keys' share of the figure's variance
    base: Any | None = None  # the trial of the base config's own values (its latest try), when the study has one
    refit_run: Path | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Search:
    """One process's part in a study."""

    optuna: Any
    study: Any
    storage: Any
    setup: TrialSetup
    total: int
    keep_best: int
    one_machine: bool  # every process keeps its lock in the study's folder (not an RDB server)
    base_params: dict[str, Any] | None = None  # the base config's values, queued as a trial when a slot is free


def tune(config: Config, space: str | Path | SearchSpace, trials: int = 20, *, study: str = "default",
         storage: str | None = None, timeout: float | None = None, pruner: Any = "median", keep_best: int = 3,
         keep_pruned: bool = False, refit: bool = False, refit_folds: int = 3, base_trial: bool = True,
         console: Console | None = None, stop: StopSignal | None = None, trust_remote_code: bool = False) -> TuneResult:
    """Search `space` (a YAML file's path, or a SearchSpace) around the base `config` until the study holds
    `trials` trials in all (a resumed study counts the ones it has), or `timeout` seconds of this process have
    passed. Trials run as runs in runs/tune-<study>/ (config.output.dir); the study lives in `storage` (default:
    a SQLite file there; an RDB URL or a journal file's path otherwise). Several processes given one storage
    share the study. `pruner`: median, hyperband, none, or an Optuna pruner. `refit`: then train the best config
    on all of train (cross-fitting with `refit_folds` folds and train.refit) as an ordinary run. `base_trial`:
    one of the trials is the base config's own values (base_trial.py), so that the search is compared with it.
    `trust_remote_code`: the caller's --trust-remote-code (as training's: code that model.init_from's run carries)."""
    optuna = require_optuna()
    console = console or Console(stderr=True)
    _check(config, trials, keep_best, refit_folds)
    base = config.to_dict()
    space = space if isinstance(space, SearchSpace) else load_space(Path(space), base)
    check_data_files(config, space)
    from mlcls.run.parent import check_parent_code

    check_parent_code(config.model.init_from, trust_remote_code)  # one line now, not a failure in every trial
    study = check_study_name(study)
    folder = study_dir(Path(config.output.dir), study)
    url = storage_url(folder, storage)
    backend = open_storage(optuna, url, ledger.heartbeat_stale(optuna))
    opened = open_study(optuna, study, backend, pruner, base, space, total=trials)
    setup = TrialSetup(base, space, folder, config.train.select_metric, console, keep_pruned, stop or StopSignal(),
                       shares_data(space, config.train.folds), trust_remote_code=trust_remote_code)
    search = Search(optuna, opened, backend, setup, trials, keep_best, not is_remote(url))
    if base_trial:
        search.base_params, why_not = base_params(space, base)
        if why_not:
            console.print(f"note: the base config is not one of the trials: {why_not} (--no-base-trial says "
                          "so and silences this)", markup=False, highlight=False)
    # Ctrl-C or SIGTERM anywhere in the search sets the flag: read at a trial's next step (it checkpoints and is
    # retried from there) or before the next trial; a second Ctrl-C stops at once.
    with setup.stop.on_signals():
        with worker(folder) as me:
            _search(search, me, timeout)
        result = _result(search, study, url)
        if refit:
            _stop_here(setup.stop, "before the refit")
            result.refit_run = refit_best(result, base, refit_folds, console, setup.stop, trust_remote_code)
    return result


def _stop_here(stop: StopSignal, where: str) -> None:
    """A stop that came during a trial's last steps (the trial then finishes) or between trials: none begins."""
    stop.raise_if_requested(Interrupted, f"{where}; the search goes on when the same mlcls tune command runs again")


def _check(config: Config, trials: int, keep_best: int, refit_folds: int) -> None:
    if trials < 1 or keep_best < 0 or refit_folds < 2:
        raise ConfigError("--trials must be at least 1, --keep-best at least 0 and --refit-folds at least 2")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # set by torchrun / accelerate launch
        raise ConfigError("mlcls tune trains each trial in one process: start several `mlcls tune` processes on "
                          "one --storage instead of accelerate launch / torchrun")
    if not compares_on_validation(config):
        raise ConfigError(NO_VALIDATION)


def check_data_files(config: Config, space: SearchSpace) -> None:
    """The base config's data files (those no trial replaces) are there and readable: a typo in data.train is one
    line before the study is opened (or made, with that base config kept in it), not a failure in each trial."""
    from mlcls.data.formats import input_kind, open_input

    for key in ("data.train", "data.validation"):
        value = getattr(config.data, key.partition(".")[2])
        if not value or key in space.keys:
            continue
        path = Path(value)
        try:
            missing = not path.is_file()
        except OSError as exc:  # a name the file system refuses (too long)
            raise DataError(path, None, f"cannot read ({describe_os_error(exc)}; {key} of the base config)") from None
        if missing:
            raise DataError(path, None, f"file not found ({key} of the base config)")
        open_input(path, input_kind(path).compression).close()  # a one-line DataError when it cannot be read


def _search(search: Search, me: Worker, timeout: float | None) -> None:
    """Trials until the study's slots are taken (or the time is up)."""
    study, setup = search.study, search.setup
    started = time.monotonic()
    with study_view(setup.console, search.setup.space.keys, setup.metric, search.total,
                    study.get_trials(deepcopy=False)) as view:
        while True:
            if timeout is not None and time.monotonic() - started >= timeout:
                setup.console.print(f"note: --timeout {timeout:g} s reached: no new trial started", markup=False)
                return
            _stop_here(setup.stop, "between trials")
            trial = next_trial(search, me)
            if trial is None:
                return
            view.show(study.get_trials(deepcopy=False))  # this trial as running
            _one_trial(search, trial)
            trials = study.get_trials(deepcopy=False)
            write_best_config(setup.folder, study.study_name, setup.base, trials, setup.metric)
            keep_best_runs(setup.folder, trials, search.keep_best)
            view.finished(trials[trial.number], trials)


def next_trial(search: Search, me: Worker):
    """Recover the orphaned trials, then ask for the next trial and name this process in it; None when the slots
    are taken. Under the study's claim lock (one machine): no other process's orphan recovery, slot count or
    naming falls between these steps (two processes would otherwise both retry one dead trial)."""
    stop = search.setup.stop
    with claim(search.setup.folder, search.one_machine, lambda: _stop_here(stop, "between trials")):
        return _claimed_next_trial(search, me)


def _claimed_next_trial(search: Search, me: Worker):
    optuna, study, console = search.optuna, search.study, search.setup.console
    for number, queued in ledger.recover(optuna, study, search.setup.folder, search.one_machine).items():
        console.print(f"trial {number}: its process died; " + ("queued again" if queued else
                      f"it died {ledger.MAX_RETRIES + 1} times, so it stays failed and counts"), markup=False)
    if search.base_params is not None and enqueue_base(study, search.base_params, search.total):
        console.print("queued: a trial of the base config's own values (" + ", ".join(
            f"{k}={cell(v)}" for k, v in search.base_params.items()) + "), to compare the search with",
            markup=False, highlight=False)
    while not ledger.all_taken(study.get_trials(deepcopy=False), search.total):
        trial = study.ask()
        trials = study.get_trials(deepcopy=False)
        # another process queued this retry as well, or (an RDB server: no claim lock) a base trial of its own
        duplicate = trial.number in ledger.duplicate_retries(trials) or duplicate_base(trials, trials[trial.number])
        if duplicate or ledger.slots_taken(trials, below=trial.number) >= search.total:
            trial.set_user_attr(ledger.SURPLUS, True)  # or another process took the last slot first
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            if duplicate:
                continue
            return None
        trial.set_user_attr(ledger.WORKER_HOST, me.host)
        trial.set_user_attr(ledger.WORKER_LOCK, me.lock)
        return trial
    return None


def _one_trial(search: Search, trial) -> Outcome:
    """Run a trial and tell the study how it ended. A config or data error of the trial's own: it fails and counts,
    and the search goes on. Ctrl-C or another error: the trial fails, its retry is queued (it resumes from the
    run's checkpoint), and the exception goes on."""
    optuna, study, setup = search.optuna, search.study, search.setup
    try:
        # a stop that came while this trial was claimed: it is failed and queued again as a pause, not begun
        _stop_here(setup.stop, f"before trial {trial.number}")
        values = setup.space.sample(trial, setup.base)  # in here: a failure must not leave the trial running
        setup.console.print(f"trial {trial.number}: " + ", ".join(f"{k}={cell(v)}" for k, v in values.items()),
                            markup=False, highlight=False)
        with heartbeat(search.storage, trial):
            outcome = run_trial(optuna, setup, trial, values)
    except DataError as exc:
        if not _in_a_base_file(search, exc):  # a file the trial's own values name: the same values fail alike
            outcome = _refused(search, trial, exc)
        else:  # the base config's data, which every trial reads: the search's error, not one trial's
            ledger.fail_and_retry(optuna, study, trial.number, interrupted=True)  # retried once the file is fixed
            raise
    except ConfigError as exc:  # the same values would fail the same way: no retry
        outcome = _refused(search, trial, exc)
    except TrainingInterrupted as exc:
        ledger.fail_and_retry(optuna, study, trial.number, interrupted=True)  # a pause: never counts as a crash
        raise Interrupted(f"{str(exc).split('; continue with')[0]}; the search goes on (trial {trial.number} "
                          "from that checkpoint) when the same mlcls tune command runs again", exc.exit_code) from None
    except BaseException as exc:
        paused = isinstance(exc, KeyboardInterrupt | Interrupted)  # Ctrl-C outside the training loop
        if ledger.fail_and_retry(optuna, study, trial.number, interrupted=paused) is False:  # crashed too often
            setup.console.print(f"trial {trial.number}: it crashed {ledger.MAX_RETRIES + 1} times, so it stays "
                                "failed and counts", markup=False)
        raise
    _tell(search, trial, outcome)
    return outcome


# data.* keys that change how a data file is read: a DataError under a trial's value of one is that trial's
READING_KEYS = ("data.text_fields", "data.text_separator", "data.label_field", "data.id_field",
                "data.label_separator", "data.on_error")


def _in_a_base_file(search: Search, exc: DataError) -> bool:
    """Whether the error is in a data file of the base config that no trial replaces (a bad record in data.train
    would otherwise fail every trial in turn, each counted, and leave a study full of failures)."""
    if any(key in READING_KEYS for key in search.setup.space.keys):  # how a file is read: the trial's own error
        return False
    data = search.setup.base.get("data", {})
    for key in ("train", "validation"):
        value = data.get(key)
        if value and f"data.{key}" not in search.setup.space.keys and _same_path(value, exc.path):
            return True
    return False


def _same_path(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def _refused(search: Search, trial, exc: ConfigError | DataError) -> Outcome:
    """A trial whose config or data is refused: its reason kept in the trial (the table and the notes show it),
    and the run it began removed (it is never retried: nothing would continue it)."""
    trial.set_user_attr(ledger.ERROR, str(exc))
    trial.set_user_attr(ledger.ERROR_KIND, "data" if isinstance(exc, DataError) else "config")
    run = search.study.get_trials(deepcopy=False)[trial.number].user_attrs.get(ledger.RUN)
    if run is not None and staging_dir(search.setup.folder / run).exists():
        discard_unfinished(search.setup.folder / run)
    return Outcome("rejected", message=str(exc))


def _tell(search: Search, trial, outcome: Outcome) -> None:
    optuna, study, console = search.optuna, search.study, search.setup.console
    if outcome.state == "complete":
        study.tell(trial, outcome.value)
    elif outcome.state == "pruned":
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        console.print(f"trial {trial.number}: pruned ({outcome.message})", markup=False)
    else:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        console.print(f"trial {trial.number}: failed, and counts; the search goes on: {outcome.message}",
                      markup=False)


def _result(search: Search, study: str, url: str) -> TuneResult:
    trials = search.study.get_trials(deepcopy=False)
    setup = search.setup
    best_config = write_best_config(setup.folder, study, setup.base, trials, setup.metric)
    running = any(not t.state.is_finished() for t in trials)
    complete = ledger.slots_taken(trials) >= search.total and not running
    base = the_base_trial(trials)
    return TuneResult(study, url, setup.folder, setup.metric, setup.space.keys, list(trials), best_of(trials),
                      best_config, complete, param_importances(search.optuna, search.study), base=base,
                      notes=failure_notes(trials))


def refit_best(result: TuneResult, base: dict[str, Any], folds: int, console: Console,
               stop: StopSignal, trust_remote_code: bool = False) -> Path | None:
    """Train the best config on all of train, once the whole study is done (any process may finish it: the
    one that finds the refit run missing trains it). None, with a note, when it cannot be yet."""
    from mlcls.training.entry import train

    name = f"{result.folder.name}-refit"
    final = result.folder.parent / name
    if result.best is None or not result.complete:
        result.notes.append("refit: not yet: the study has trials left (or none done); run the same command again "
                            "once they are")
        return None
    if final.exists():
        result.notes.append(f"refit: {final} exists already")
        return final
    config, notes = refit_config(best_config(base, result.best), folds, name)
    result.notes += notes
    staging = staging_dir(final)
    if (staging / FOLDS).is_dir():  # a refit interrupted earlier (its finished folds kept): continued, as the
        resumed = load_config(staging / CONFIG)  # README promises of a killed mlcls tune
        if _searched(resumed) != _searched(config):
            raise ConfigError(f"{staging}: an interrupted refit of another config (the best trial changed since); "
                              "remove that folder to refit the best one")
        console.print(f"refit: continuing the interrupted refit in {staging}", markup=False)
        return train(resumed, console, resume=staging, stop=stop, trust_remote_code=trust_remote_code,
                     resume_asked_by_caller=resumes_asked_code(base, resumed, config.model.encoder)).run_dir
    console.print(f"refit: the best config (trial {result.best.number}) on all of train: {config.train.folds} folds "
                  f"+ a model on all of train, as {final}", markup=False)
    return train(config, console, stop=stop, trust_remote_code=trust_remote_code).run_dir


def _searched(config: Config) -> dict[str, Any]:
    """What a refit trains: the config's sections but `output` and `data` (a run keeps its data paths absolute)."""
    return {section: values for section, values in config.to_dict().items() if section not in ("output", "data")}
