"""`train()`: the one entry point of training. It reads the data and hands it to one of two siblings: the
one-model recipe (recipe.py) or cross-fitting (crossfit.py, train.folds > 1), which trains K of those."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import IO

from rich.console import Console

from mlcls.config import Config, first_difference, load_config
from mlcls.errors import ConfigError
from mlcls.run.find import resumable_run
from mlcls.run.layout import CONFIG
from mlcls.training.crossfit import train_folds
from mlcls.training.data import TrainingData, TrainResult, read_training_data
from mlcls.training.devices import check_trackers, is_launch_main_process
from mlcls.training.hooks import OnEpoch
from mlcls.training.interrupt import StopSignal
from mlcls.training.recipe import train_one


def train(config: Config, console: Console | None = None, rejects: IO[bytes] | None = None,
          resume: Path | None = None, stop: StopSignal | None = None, data: TrainingData | None = None,
          on_epoch: OnEpoch | None = None, trust_remote_code: bool = False,
          resume_asked_by_caller: bool = False) -> TrainResult:
    """Train a run from `config`, or (with `resume`: an unfinished run's directory) continue one. `data`: records
    already read (by default, the config's files are read and validated here, before anything heavy exists).
    `on_epoch`: called after every epoch with its figures (hooks.EpochEnd; with train.folds, each fold's epochs in
    turn); an exception it raises stops the training there, its run left unfinished (mlcls tune prunes so).
    `config` is not changed (the run's name and resolved paths go into a copy: the same object trains again).
    `resume` may name the run as the interruption message does (runs/NAME) or its staging folder; `config` must
    then be the run's own (`load_config(RUN/config.yaml)`, what `mlcls train --resume` takes), else ConfigError.
    Training seeds the global random generators (torch, numpy, random) from train.seed, as the Trainer does.
    `trust_remote_code`: the caller's --trust-remote-code, which code carried by the run that model.init_from
    names needs, and a resumed run whose config asks for code; the config's model.trust_remote_code is for its
    own encoder, and a run may come from anyone. `resume_asked_by_caller`: the resumed run's ask for its encoder's
    code is the caller's own (mlcls tune resuming its trial, whose ask its command line made), and allows that
    resume alone, not a model.init_from run's code."""
    from mlcls.run.model_files import check_remote_code
    from mlcls.run.parent import check_parent_code

    check_parent_code(config.model.init_from, trust_remote_code)  # before anything of the parent is loaded
    config = copy.deepcopy(config)
    if resume is not None:
        resume = resumable_run(Path(resume))
        _check_resume_config(config, resume)
        # The run's config (what `config` must equal) may be someone else's: its model.trust_remote_code needs
        # the caller's own opt-in, as `mlcls train --resume` needs the flag (API callers resume here too).
        check_remote_code(resume, [], config, trust_remote_code or resume_asked_by_caller)
    elif trust_remote_code:  # as `mlcls train --trust-remote-code` sets it: the parent loads with it
        config.model.trust_remote_code = True
    stop = stop or StopSignal()
    main = is_launch_main_process()  # under `accelerate launch`, only the main process reports
    console = console if console is not None and main else Console(stderr=True, quiet=not main)
    check_trackers(config.train.report_to)
    if config.train.folds > 1:
        if data is not None:
            raise ConfigError("train.folds > 1 reads and splits the config's data.train itself: records given as "
                              "data= would train one model (leave data out, or set train.folds to 1)")
        return train_folds(config, console, rejects if main else None, resume, stop, on_epoch)
    data = data or read_training_data(config, console, rejects if main else None)
    return train_one(config, data, console, resume, stop, on_epoch)


def _check_resume_config(config: Config, resume: Path) -> None:
    """A resumed run goes on with the config it was started with: another one would train its remaining epochs
    otherwise while config.yaml still described the first (the CLI refuses other settings with --resume)."""
    differ = first_difference(load_config(resume / CONFIG).to_dict(), config.to_dict())
    if differ is not None:
        key, saved, given = differ
        raise ConfigError(f"{resume}: resuming continues the run with its own config ({resume / CONFIG}); "
                          f"{key} is {saved!r} there, {given!r} here: pass load_config('{resume / CONFIG}')")
