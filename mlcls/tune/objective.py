"""One trial: the base config with the trial's values, trained as an ordinary run in the study's folder, scored by
the validation figure training keeps (`train.select_metric` after the run's tuned decision rule; out-of-fold with
train.folds), never test. After each epoch the kept figure so far is reported to the pruner, which may stop
the trial; its unfinished run is then removed, or kept (`--keep-pruned`: `mlcls train --resume` continues it).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from mlcls.config import ABSOLUTE_PATH_KEYS, Config, absolute_data_paths, load_config, read_yaml_mapping
from mlcls.errors import ConfigError, RunDirError
from mlcls.run.checkpoint import find_checkpoint
from mlcls.run.files import is_trained, peek_metrics
from mlcls.run.layout import CONFIG, FOLDS, METRICS, staging_dir, trial_run_name
from mlcls.run.lifecycle import lock_run, release_run
from mlcls.training.data import TrainingData
from mlcls.training.hooks import EpochEnd
from mlcls.training.interrupt import StopSignal
from mlcls.tune.ledger import ERROR, ERROR_KIND, RUN, is_base, root_number
from mlcls.tune.schema import base_value, build, with_values
from mlcls.tune.space import SearchSpace


def resumes_asked_code(base: dict[str, Any], resumed: Config, encoder: str) -> bool:
    """Whether a run this search resumes asks for its encoder's code because the search asked: the base config's
    model.trust_remote_code (which `mlcls tune` takes from its command line only, never from a file) and the
    encoder the trial trains (`encoder`: a folder left by another search may name another one). A search resumed
    without asking gets the refusal that `mlcls train --resume` gives."""
    saved = resumed.model.encoder  # a local folder is saved absolute (run/files.write_config)
    return bool(base["model"]["trust_remote_code"]) and saved in (encoder, _as_saved("model.encoder", encoder))


@dataclass
class TrialSetup:
    """What every trial of this process shares."""

    base: dict[str, Any]  # the base config, as Config.to_dict gives it
    space: SearchSpace
    folder: Path  # runs/tune-<study>
    metric: str  # train.select_metric
    console: Console
    keep_pruned: bool = False
    stop: StopSignal = field(default_factory=StopSignal)  # Ctrl-C / SIGTERM, read by every trial and between them
    share_data: bool = False  # every trial reads the same records and splits them alike (shares_data)
    data: TrainingData | None = None  # then read once, at the first trial that trains
    trust_remote_code: bool = False  # --trust-remote-code: code of the run that model.init_from names may run

    def training_data(self, config) -> TrainingData | None:
        """The records for a trial of `config`: read once and shared where every trial reads the same (reading
        and checking Reuters takes seconds), else None (the trial reads its own)."""
        if not self.share_data or config.train.folds != 1:
            return None
        if self.data is None:
            from mlcls.training.data import read_training_data

            self.data = read_training_data(config, self.console, None)
        return self.data


@dataclass(frozen=True)
class Outcome:
    state: str  # "complete", "pruned" or "rejected" (the trainer refused the trial's config, or its data)
    value: float | None = None
    message: str = ""


class PruneOnEpoch:
    """The training hook of a trial: report the kept validation figure after each epoch; stop a trial the pruner
    gives up on (never after its last epoch: nothing would be saved)."""

    def __init__(self, optuna, trial, metric: str, prunable: bool = True):
        self.optuna, self.trial, self.metric, self.prunable = optuna, trial, metric, prunable
        # a retry carries the figures its first try reported; a step is reported once
        self.reported = set(trial.study.get_trials(deepcopy=False)[trial.number].intermediate_values)

    def __call__(self, end: EpochEnd) -> None:
        value = end.best.get(self.metric)
        if value is None:  # no validation data: nothing to prune on
            return
        if end.step not in self.reported:
            self.trial.report(float(value), end.step)
            self.reported.add(end.step)
        if self.prunable and not end.ends_training and self.trial.should_prune():
            raise self.optuna.TrialPruned(f"epoch {end.epoch}: {self.metric} {value:.4f}")


def run_trial(optuna, setup: TrialSetup, trial, values: dict[str, Any]) -> Outcome:
    """Train the trial with `values` (dotted key -> value) and return what became of it. Ctrl-C
    (TrainingInterrupted) and errors go through; the caller fails the trial and queues its retry."""
    from mlcls.training.entry import train

    frozen = trial.study.get_trials(deepcopy=False)[trial.number]  # a study's trials are numbered 0, 1, ...
    name = trial_run_name(root_number(frozen))  # a retry trains (or resumes) the run of the trial it retries
    final = setup.folder / name
    trial.set_user_attr(RUN, name)
    try:
        config = build(with_values(setup.base, {**values, "output.dir": str(setup.folder), "output.name": name}))
    except ConfigError as exc:  # a combination the space allows and the trainer refuses: the trial fails, counted
        return _rejected(trial, str(exc))
    if not compares_on_validation(config):  # said before training, not after it (the trial would have no figure)
        return _rejected(trial, f"these values leave no validation data: {NO_VALIDATION}")
    staging = staging_dir(final)
    # what `mlcls train --resume` continues: a checkpoint, or a cross-fitted run's folds (each resumed or kept)
    resume = staging if find_checkpoint(staging) is not None or (staging / FOLDS).is_dir() else None
    trained = is_trained(final)
    if trained or resume is not None:  # this trial's own run, or one left from another study of this name
        check_same_values(final if trained else staging, values, trial.number)
    if trained:  # a retry of a trial whose process died after its run was complete
        return Outcome("complete", _figure(peek_metrics(final) or {}, setup.metric, final))
    asked = False
    if resume is not None:
        # as `mlcls train --resume` does: the run's own config
        encoder, config = config.model.encoder, load_config(staging / CONFIG)
        asked = resumes_asked_code(setup.base, config, encoder)
        setup.console.print(f"trial {trial.number}: resuming {name} from its checkpoint", markup=False)
    try:
        result = train(config, setup.console, resume=resume, stop=setup.stop, data=setup.training_data(config),
                       trust_remote_code=setup.trust_remote_code, resume_asked_by_caller=asked,
                       # the base config's trial is what the others are compared with: it runs to the end
                       on_epoch=PruneOnEpoch(optuna, trial, setup.metric, prunable=not is_base(frozen)))
    except optuna.TrialPruned as exc:
        if not setup.keep_pruned:
            discard_unfinished(final)
        return Outcome("pruned", message=str(exc))
    return Outcome("complete", _figure(result.metrics, setup.metric, result.run_dir))


NO_VALIDATION = ("mlcls tune compares trials on validation: set data.validation, data.val_fraction > 0 or "
                 "train.folds > 1 (never test)")


def compares_on_validation(config: Config) -> bool:
    """Whether a run of `config` has the validation figure a trial is compared by."""
    return config.train.folds > 1 or config.data.validation is not None or config.data.val_fraction > 0


def _rejected(trial, message: str) -> Outcome:
    trial.set_user_attr(ERROR, message)
    trial.set_user_attr(ERROR_KIND, "config")
    return Outcome("rejected", message=message)


def check_same_values(run: Path, values: dict[str, Any], number: int) -> None:
    """A run already at this trial's name is this trial's own (a retry of a trial whose process died) only when it
    was trained with the trial's values. Otherwise it is left from another study of this name (a study.db removed,
    another --storage with this --study): reporting its figure for these values would recommend a config that was
    never trained, and resuming it would train its values under this trial's."""
    try:
        raw = read_yaml_mapping(run / CONFIG)
    except ConfigError:
        raw = {}
    differ = [f"{key} {base_value(raw, key)!r}, not {value!r}" for key, value in values.items()
              if base_value(raw, key) not in (value, _as_saved(key, value))]
    if differ:
        raise RunDirError(f"{run}: trial {number}'s run folder holds a run of other values ({differ[0]}), left from "
                          "another study of this name; remove it or choose another --study")


def _as_saved(key: str, value: Any) -> Any:
    """A searched value as a run's config.yaml holds it: data files, and an encoder named by a local folder,
    absolute (run/files.write_config), so that the run is evaluated and resumed from any folder."""
    if not isinstance(value, str) or key not in ABSOLUTE_PATH_KEYS:
        return value
    section, _, name = key.partition(".")
    probe = Config()
    setattr(getattr(probe, section), name, value)
    return getattr(getattr(absolute_data_paths(probe), section), name)


def _figure(metrics: dict[str, Any], metric: str, run: Path) -> float:
    value = (metrics.get("validation") or {}).get(metric)
    if value is None:  # every trial is checked for validation data first: a run without the figure is a bug
        raise RuntimeError(f"{run / METRICS}: no validation {metric}")
    return float(value)


def discard_unfinished(final: Path) -> None:
    """Remove the unfinished run of `final` (its staging folder and lock), claimed first so that nothing else is
    writing it."""
    staging = staging_dir(final)
    lock_run(staging)
    try:
        shutil.rmtree(staging, ignore_errors=True)
    finally:
        release_run(staging)


def shares_data(space: SearchSpace, folds: int) -> bool:
    """Whether every trial reads the same records and splits them alike, so that they are read once: no data key
    searched, nor the seed (it draws the hold-out), nor cross-fitting (it reads its own pool)."""
    return folds == 1 and not any(key.startswith("data.") or key in ("train.seed", "train.folds")
                                  for key in space.keys)
