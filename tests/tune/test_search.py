"""`mlcls tune` end to end on the tiny model: a 3-trial study, its best config trained as it is, resuming a finished
study, pruned trials (their runs removed or kept), and a trial whose config the trainer refuses."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from mlcls.cli import app
from mlcls.config import load_config
from tests.tune.conftest import load_trials, sqlite_of, tune_args

runner = CliRunner()


def test_a_three_trial_study_keeps_the_best_runs_and_writes_a_config_that_trains(tiny_base, tiny_space):
    args = tune_args(tiny_base, tiny_space, "--trials", "3", "--keep-best", "2", "--pruner", "none")
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    runs = tiny_base.parent / "runs"
    folder = runs / "tune-tiny"  # the study is named after the base config's file
    trials = load_trials(sqlite_of(folder))
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    for trial in trials:  # focal's gamma is drawn with focal only
        assert ("loss.gamma" in trial.params) == (trial.params["loss.name"] == "focal")
    # Each trial's figure is its run's validation figure (the run's tuned rule; never test).
    ranked = sorted(trials, key=lambda t: (-t.value, t.number))
    kept = sorted(p.name for p in folder.iterdir() if p.name.startswith("trial-"))
    assert kept == sorted(t.user_attrs["run"] for t in ranked[:2])  # the best 2 runs; the other one removed
    for trial in ranked[:2]:
        metrics = json.loads((folder / trial.user_attrs["run"] / "metrics.json").read_text())
        assert metrics["validation"]["micro_f1"] == pytest.approx(trial.value)
    assert not list(folder.glob(".*incomplete")) and not (folder / "latest").exists()
    best = ranked[0]
    assert f"best: trial {best.number}, validation micro_f1 {best.value:.4f}" in result.stdout
    assert "optuna-dashboard sqlite:///" in result.stderr

    # best.yaml is the base config with the best values; `mlcls train -c` takes it as it is and trains the same run.
    best_yaml = folder / "best.yaml"
    config = load_config(best_yaml)
    assert config.train.lr == best.params["train.lr"] and config.loss.name == best.params["loss.name"]
    assert config.train.epochs == 1 and config.output.name is None and config.output.dir == str(runs)
    trained = runner.invoke(app, ["train", "-c", str(best_yaml), "--name", "from-best"])
    assert trained.exit_code == 0, trained.output
    again = json.loads((runs / "from-best" / "metrics.json").read_text())
    assert again["validation"]["micro_f1"] == pytest.approx(best.value)

    # The same command once more: the study has its 3 trials, so none is added.
    resumed = runner.invoke(app, args)
    assert resumed.exit_code == 0, resumed.output
    assert len(load_trials(sqlite_of(folder))) == 3
    # Another base config under the same study name would mix two searches: refused, naming the key.
    other = runner.invoke(app, [*args, "--set", "train.batch_size=2"])
    assert other.exit_code == 1
    assert "was begun with another base config (train.batch_size: 4 then, 2 now)" in other.stderr


@pytest.mark.parametrize("keep_pruned", [False, True])
def test_a_pruned_trial_stops_after_its_epoch_and_its_run_is_removed_or_kept(tiny_base, tiny_space, keep_pruned):
    import optuna

    from mlcls.tune.search import tune

    config = load_config(tiny_base, ["train.epochs=2", f"train.cache_dir={tiny_base.parent / 'cache'}"])
    # Every figure is below 2: the pruner gives up on each trial after its first epoch (never after its last).
    result = tune(config, tiny_space, 2, study="pruned", pruner=optuna.pruners.ThresholdPruner(lower=2.0),
                  keep_pruned=keep_pruned)
    assert [t.state.name for t in result.trials] == ["PRUNED", "PRUNED"]
    assert all(list(t.intermediate_values) == [1] for t in result.trials)  # reported epoch 1, stopped there
    assert result.best is None and result.best_config is None and result.complete
    folder = result.folder
    staged = sorted(p.name for p in folder.glob(".trial-*.incomplete"))
    assert not list(folder.glob("trial-*"))  # no finished run
    if not keep_pruned:
        assert staged == [] and not list(folder.glob(".trial-*.lock"))
        return
    assert staged == [".trial-0000.incomplete", ".trial-0001.incomplete"]
    # A kept pruned run is an interrupted training: `mlcls train --resume` finishes it.
    resumed = runner.invoke(app, ["train", "--resume", str(folder / "trial-0001")])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((folder / "trial-0001" / "metrics.json").read_text())["epochs_trained"] == 2


def test_a_trial_the_trainer_refuses_fails_and_counts(tiny_base, tmp_path):
    """A combination the space allows key by key but the config refuses as a whole (head_tokens must leave room
    within max_length) fails that trial, and the study goes on: the trial holds its slot (retrying gives the
    same config)."""
    import optuna

    from mlcls.tune.search import tune

    space = tmp_path / "head_tail.yaml"
    space.write_text("model.max_length: [16, 32]\nmodel.head_tokens: {low: 8, high: 20}\n")
    config = load_config(tiny_base, ["model.long_text=head_tail"])
    storage = f"sqlite:///{tmp_path / 'refused.db'}"
    optuna.create_study(study_name="refused", storage=storage, direction="maximize").enqueue_trial(
        {"model.max_length": 16, "model.head_tokens": 20})
    result = tune(config, space, 1, study="refused", storage=storage)
    [trial] = result.trials
    assert trial.state.name == "FAIL" and result.complete
    assert "model.head_tokens must be above 0 and leave room" in trial.user_attrs["error"]
    assert not list(result.folder.glob("*trial-*"))  # nothing was trained


@pytest.mark.slow
def test_refit_trains_the_best_config_on_all_of_train_as_an_ordinary_run(tiny_base, tiny_space):
    result = runner.invoke(app, tune_args(tiny_base, tiny_space, "--trials", "1", "--refit", "--refit-folds", "2"))
    assert result.exit_code == 0, result.output
    runs = tiny_base.parent / "runs"
    refit = runs / "tune-tiny-refit"
    assert f"refit run: {refit}" in result.stdout
    metrics = json.loads((refit / "metrics.json").read_text())
    assert metrics["folds"] == 2 and metrics["validation_kind"] == "out-of-fold" and metrics["refit_epochs"] == 1
    best = load_config(runs / "tune-tiny" / "best.yaml")
    config = load_config(refit / "config.yaml")  # the best config, cross-fitted with a refit on all of train
    assert config.train.lr == best.train.lr and config.loss.to_dict() == best.loss.to_dict()
    assert (config.train.folds, config.train.refit, config.data.validation) == (2, True, None)
    assert (runs / "latest").resolve() == refit.resolve()
    evaluated = runner.invoke(app, ["eval", str(refit)])
    assert evaluated.exit_code == 0, evaluated.output
