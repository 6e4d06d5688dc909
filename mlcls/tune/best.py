"""What a search leaves: the best trial's config as a YAML file that `mlcls train -c` takes as it is, the runs of
the best K trials (the others' removed as the search goes, so that disk use stays bounded), and on request a
refit of the best config on all of train."""

from __future__ import annotations

import copy
import json
import shutil
import warnings
from pathlib import Path
from typing import Any

from mlcls.atomic import atomic_open
from mlcls.config import Config, commented_yaml
from mlcls.errors import shell_command
from mlcls.run.layout import BEST_CONFIG, LATEST
from mlcls.tune.ledger import RUN, is_base
from mlcls.tune.report import best_of
from mlcls.tune.schema import build, with_values


def best_config(base: dict[str, Any], trial) -> Config:
    """The base config with the trial's values, named by no run (a training of it picks its own name)."""
    return build(with_values(base, {**trial.params, "output.name": None}))


def write_best_config(folder: Path, study: str, base: dict[str, Any], trials, metric: str) -> Path | None:
    """runs/tune-<study>/best.yaml: the best trial so far as a complete config, each key with its help; written
    whole or not at all (several processes may write it: each writes the study's best)."""
    best = best_of(trials)
    if best is None:
        return None
    path = folder / BEST_CONFIG
    itself = " It is the base config's own trial: no trial beats it so far." if is_base(best) else ""
    header = (f"# The best trial of mlcls tune's study {study!r} so far: trial {best.number}, validation {metric} "
              f"{best.value:.4f} (run {folder / best.user_attrs.get(RUN, '?')}).{itself}\n"
              # json.dumps: a value with a line break (data.text_separator "\n") must not end the comment line
              f"# Searched: {', '.join(f'{k}={json.dumps(v)}' for k, v in best.params.items())}. The rest is the base "
              "config; data "
              "paths are as it gave them.\n"
              f"# Train it: {shell_command(*train_best_args(path, base['model']['trust_remote_code']))}")
    with atomic_open(path, "w") as handle:
        handle.write(commented_yaml(best_config(base, best), header))
    return path


def train_best_args(path: Path, asks_code: bool) -> list[str]:
    """The command that trains best.yaml. A search whose command line allowed the encoder's code hands on a config
    that asks for it, and `mlcls train` takes that from the command line only (a file's ask is refused)."""
    return ["mlcls", "train", "-c", str(path), *(["--trust-remote-code"] if asks_code else [])]


def keep_best_runs(folder: Path, trials, keep: int) -> list[Path]:
    """Remove the runs of the complete trials outside the best `keep` (ties: the earlier trial stays); the
    removed runs. The study's own `latest` link, which each trial's training points at itself, goes too."""
    complete = sorted((t for t in trials if t.state.name == "COMPLETE" and t.value is not None and RUN in t.user_attrs),
                      key=lambda t: (-t.value, t.number))
    removed = []
    for trial in complete[keep:]:
        run = folder / trial.user_attrs[RUN]
        if run.is_dir():
            shutil.rmtree(run, ignore_errors=True)  # another process may be removing it too
            removed.append(run)
    link = folder / LATEST
    if link.is_symlink():
        link.unlink(missing_ok=True)
    return removed


def refit_config(config: Config, folds: int, name: str) -> tuple[Config, list[str]]:
    """The best config trained on all of train: mlcls's cross-fitting with train.refit (README: a model on all of
    train for the folds' median kept epoch; its decision rule tuned on out-of-fold scores of all of train, since
    no held-out share is left to tune it on). A best config that cross-fits already keeps its folds."""
    refit = copy.deepcopy(config)
    notes = []
    if refit.train.folds <= 1:
        refit.train.folds = folds
    refit.train.refit = True
    if refit.data.validation:
        notes.append(f"refit: cross-fitting validates on folds of data.train; data.validation ({refit.data.validation})"
                     " is not used")
        refit.data.validation = None
    refit.output.name = name
    return refit, notes


def param_importances(optuna, study) -> dict[str, float]:
    """Optuna's parameter importances (its default evaluator) over the complete trials, highest first; {} until
    they can be computed (two complete trials, a parameter that varies)."""
    try:
        with warnings.catch_warnings():  # "few trials for this parameter": the table shows how few there are
            warnings.simplefilter("ignore")
            return dict(optuna.importance.get_param_importances(study))
    except (RuntimeError, ValueError):
        return {}
