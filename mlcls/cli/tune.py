"""`mlcls tune`: options -> the base config and the search space -> the search (mlcls/tune/) -> the table of
trials, the best config, importances and where to look further.

Optuna and the trainer are imported inside the command: `mlcls --help` loads neither.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlcls.cli.options import ConfigFile, Overrides, choices, option, value_of
from mlcls.cli.output import err, out, print_notes
from mlcls.config import check_remote_code_asked, load_config
from mlcls.errors import shell_command

Pruner = choices("Pruner", ("median", "hyperband", "none"))
Space = Annotated[Path, typer.Option("--space", help="The search space: YAML mapping config keys to ranges or choices "
                                     "(configs/spaces/reuters.yaml is an example).", show_default=False)]


def tune(
    space: Space,
    config: ConfigFile = None,
    set_: Overrides = None,
    trials: Annotated[int, typer.Option(min=1, help="Trials in the study in all: a resumed study counts the ones it "
                                        "has (interrupted ones are retried, never counted twice).")] = 20,
    timeout: Annotated[float | None, typer.Option(min=0.0, help="Start no new trial after this many seconds "
                                                  "(the trial running then finishes).")] = None,
    study: Annotated[str | None, typer.Option(help="The study's name: its folder is runs/tune-NAME (default: the "
                                              "config file's name, or 'default').", show_default=False)] = None,
    storage: Annotated[str | None, typer.Option(help="Where the study lives: an RDB URL (postgresql://, mysql://, "
                                                "sqlite:///) or a journal file's path; processes given the same one "
                                                "share the study. Default: a SQLite file in runs/tune-NAME.",
                                                show_default=False)] = None,
    pruner: Annotated[Pruner, typer.Option(help="Stop trials that cannot win, on each epoch's validation figure "
                                           "(median: below the other trials' median at that epoch).")] = "median",
    keep_best: Annotated[int, typer.Option("--keep-best", min=0, help="Keep the runs of the K best trials; the "
                                           "others' are removed as the search goes.")] = 3,
    keep_pruned: Annotated[bool, typer.Option("--keep-pruned", help="Keep a pruned trial's unfinished run "
                                              "(mlcls train --resume continues it).")] = False,
    refit: Annotated[bool, typer.Option("--refit", help="Then train the best config on all of train, as an "
                                        "ordinary run (cross-fitting with train.refit: --refit-folds + 1 "
                                        "trainings).")] = False,
    refit_folds: Annotated[int, typer.Option("--refit-folds", min=2, help="Folds of the refit (its decision rule "
                                             "is tuned on their out-of-fold scores).")] = 3,
    base_trial: Annotated[bool, typer.Option("--base-trial/--no-base-trial", help="Make one of the trials the base "
                                             "config's own values, so that the search is compared with it.")] = True,
    out_dir: Annotated[Path | None, option("output.dir", "--out")] = None,
    trust_remote_code: Annotated[bool, typer.Option("--trust-remote-code", help="Allow code from the encoder's "
                                                    "repository (sets model.trust_remote_code) and from the run of "
                                                    "model.init_from. Only for sources you trust.")] = False,
) -> None:
    """Search hyperparameters (Optuna): trials of the base config with values from --space, compared on validation.

    Resumes with the same command; several processes on one --storage share the study. Needs the "tune" extra.
    """
    from mlcls.tune.study import require_optuna

    require_optuna()  # before any reading: the one-line install hint
    options = {"output.dir": out_dir and str(out_dir), "model.trust_remote_code": trust_remote_code or None}
    cfg = load_config(config, set_ or [], options)
    check_remote_code_asked(cfg, config)  # the trials train with the base config's encoder
    from mlcls.run.parent import check_parent_code

    check_parent_code(cfg.model.init_from, trust_remote_code)  # a trial starts from it: its code needs the flag
    print_notes(cfg.notes)
    from mlcls.training.host_malloc import keep_freed_memory
    from mlcls.tune.search import tune as run_search

    keep_freed_memory()  # the trials train in this process: as `mlcls train` does

    name = study or (config.stem if config is not None else "default")
    result = run_search(cfg, space, trials, study=name, storage=storage, timeout=timeout, pruner=value_of(pruner),
                        keep_best=keep_best, keep_pruned=keep_pruned, refit=refit, refit_folds=refit_folds,
                        base_trial=base_trial, console=err, trust_remote_code=bool(trust_remote_code))
    _render(result, cfg.model.trust_remote_code)


def _against_base(result) -> str:
    """The best trial against the base config's, the question a search answers."""
    base, best = result.base, result.best
    if base is None:
        return "the base config: not a trial of this study"
    state = base.state.name
    if state == "PRUNED":
        return f"the base config (trial {base.number}): pruned after epoch {base.last_step}: the search beat it there"
    if state == "FAIL":
        return f"the base config (trial {base.number}): failed"
    if state != "COMPLETE":
        return f"the base config (trial {base.number}): not trained yet"
    if best.value <= base.value:
        tie = f" (trial {best.number} ties it)" if best.number != base.number else ""
        return f"the base config (trial {base.number}) is the best: no trial beats it{tie}"
    return (f"the base config (trial {base.number}): validation {result.metric} {base.value:.4f}; the best beats it "
            f"by {best.value - base.value:+.4f}")


def _render(result, asks_code: bool) -> None:
    """The study's table and what to do next; `asks_code`: the base config asks for its encoder's code."""
    from mlcls.tune.best import train_best_args
    from mlcls.tune.report import trial_table

    out.print(trial_table(result.trials, result.keys, result.metric, folder=result.folder))
    if result.best is None:
        out.print("no trial is complete yet", markup=False)
    else:
        out.print(f"best: trial {result.best.number}, validation {result.metric} {result.best.value:.4f}",
                  markup=False)
        out.print(_against_base(result), markup=False)
        train_it = shell_command(*train_best_args(result.best_config, asks_code))
        out.print(f"best config: {result.best_config}; train it: {train_it}", markup=False, highlight=False)
    if result.importances:
        out.print("importance: " + ", ".join(f"{key} {share:.2f}" for key, share in result.importances.items()),
                  markup=False, highlight=False)
    if not result.complete:
        out.print("the study has trials left: the same command goes on with them", markup=False)
    if result.refit_run is not None:
        out.print(f"refit run: {result.refit_run}; next: {shell_command('mlcls', 'eval', result.refit_run)}",
                  markup=False, highlight=False)
    print_notes(result.notes)
    err.print(f"note: {shell_command('optuna-dashboard', result.storage)} shows the study "
              "(pip install optuna-dashboard)", markup=False, highlight=False)
