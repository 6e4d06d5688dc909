"""`mlcls tune` end to end on the tiny model: a 3-trial study, its best config trained as it is, resuming a finished
study, pruned trials (their runs removed or kept), and a trial whose config the trainer refuses."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console
from typer.testing import CliRunner

from mlcls.cli import app
from mlcls.config import load_config
from mlcls.tune.report import trial_table
from tests.conftest import one_line
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
    # the table says which run is gone, instead of pointing at a folder that is not there
    assert "(removed)" in result.stdout
    wide = Console(width=200, file=io.StringIO())
    wide.print(trial_table(trials, ["loss.name", "train.lr"], "micro_f1", folder=folder))
    rows = {line.split()[0]: line for line in wide.file.getvalue().splitlines() if line[:1].isdigit()}
    for trial in ranked:
        assert rows[str(trial.number)].rstrip().endswith(
            f"{trial.user_attrs['run']} (removed)" if trial is ranked[2] else trial.user_attrs["run"])
    # a trial still running (its run unfinished, or another worker's) is not "removed"
    import optuna

    running = optuna.trial.create_trial(state=optuna.trial.TrialState.RUNNING, params={}, distributions={},
                                        user_attrs={"run": "trial-0009"})
    wide = Console(width=200, file=io.StringIO())
    wide.print(trial_table([running], [], "micro_f1", folder=folder))
    assert "trial-0009" in wide.file.getvalue() and "(removed)" not in wide.file.getvalue()
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
                  keep_pruned=keep_pruned, base_trial=False)  # the base trial is never pruned (test_base_trial.py)
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


@pytest.mark.slow
@pytest.mark.parametrize("asked", [(), ("--set", "model.trust_remote_code=true")], ids=["plain", "remote-code"])
def test_an_interrupted_refit_is_continued_by_the_same_command(tiny_base, tiny_space, asked):
    """A refit killed after its staging folder had folds: the same `mlcls tune --refit` continues it (before, it
    said to run `mlcls train --resume`); one of another config (the best trial changed since) is refused. A
    search whose command line asked for the encoder's code continues its refit, which asks for it too."""
    import yaml

    args = tune_args(tiny_base, tiny_space, "--trials", "1", "--refit", "--refit-folds", "2", *asked)
    assert runner.invoke(app, tune_args(tiny_base, tiny_space, "--trials", "1", *asked)).exit_code == 0
    runs = tiny_base.parent / "runs"
    staging = runs / ".tune-tiny-refit.incomplete"
    (staging / "folds").mkdir(parents=True)  # what a refit killed in its first fold leaves (with no fold done)
    config = yaml.safe_load((runs / "tune-tiny" / "best.yaml").read_text())
    config["train"].update(folds=2, refit=True, lr=config["train"]["lr"] * 2)
    config["data"]["validation"] = None  # as refit_config sets them
    (staging / "config.yaml").write_text(yaml.safe_dump(config))
    refused = runner.invoke(app, args)
    assert refused.exit_code == 1 and "an interrupted refit of another config" in refused.stderr, refused.output

    config["train"]["lr"] /= 2  # the best config's own refit: continued, and finished
    config["output"]["name"] = "tune-tiny-refit"
    (staging / "config.yaml").write_text(yaml.safe_dump(config))
    resumed = runner.invoke(app, args)
    assert resumed.exit_code == 0, resumed.output
    assert "refit: continuing the interrupted refit" in resumed.stderr + resumed.stdout
    assert (runs / "tune-tiny-refit" / "metrics.json").is_file() and not staging.exists()


def test_a_trial_whose_training_refuses_its_config_or_data_fails_and_counts_and_the_search_goes_on(tiny_base,
                                                                                                    tmp_path):
    """A ConfigError or DataError raised inside training is the trial's own (the same values fail the same way):
    it fails and counts, is never retried, its reason is kept, and the search goes on to the next trial."""
    import optuna

    from mlcls.tune.report import state_of
    from mlcls.tune.search import tune

    records, missing = tmp_path / "tiny.jsonl", tmp_path / "missing.jsonl"
    space = tmp_path / "refused.yaml"
    space.write_text(f"train.folds: [1, 2]\ndata.train: ['{records}', '{missing}']\n")
    storage = f"sqlite:///{tmp_path / 'refused.db'}"
    queued = optuna.create_study(study_name="refused", storage=storage, direction="maximize")
    queued.enqueue_trial({"train.folds": 2, "data.train": str(records)})  # cross-fitting refuses data.validation
    queued.enqueue_trial({"train.folds": 1, "data.train": str(missing)})
    result = tune(load_config(tiny_base), space, 2, study="refused", storage=storage)
    assert [t.state.name for t in result.trials] == ["FAIL", "FAIL"] and result.complete  # no retry queued
    config_error = "train.folds > 1 validates on folds of data.train: set data.validation to null"
    data_error = f"{missing}: file not found"
    assert [t.user_attrs["error"] for t in result.trials] == [config_error, data_error]
    assert [state_of(t, {}) for t in result.trials] == ["failed: config refused", "failed: data error"]
    assert result.notes == [f"trial 0 failed: {config_error}", f"trial 1 failed: {data_error}"]
    assert not list(result.folder.glob("*trial-*"))  # nothing was trained, nothing left behind


def test_a_missing_data_file_is_one_line_before_the_study_is_made(tiny_base, tmp_path):
    from mlcls.errors import DataError
    from mlcls.tune.search import tune

    config = load_config(tiny_base, [f"data.train={tmp_path / 'tiny.jsonl.typo'}"])
    with pytest.raises(DataError) as caught:
        tune(config, _space(tmp_path), 1, study="typo")
    assert one_line(caught.value) == f"{tmp_path / 'tiny.jsonl.typo'}: file not found (data.train of the base config)"
    assert not (tmp_path / "runs").exists()  # no study (its base config kept), no trial


def test_a_resume_with_another_space_is_refused_naming_the_space_and_the_study(tiny_base, tmp_path):
    """The study keeps its space: a resume with an edited space is one line, before any trial; the same space
    written otherwise (keys reordered, comments) is the same search."""
    from mlcls.errors import ConfigError
    from mlcls.tune.search import tune

    space = tmp_path / "space.yaml"
    space.write_text("train.folds: [2]\nmodel.dropout: {low: 0.0, high: 0.2}\n")  # each trial refused: no training
    config = load_config(tiny_base)
    assert len(tune(config, space, 1, study="edited").trials) == 1
    space.write_text("# the same search\nmodel.dropout: {low: 0.0, high: 0.2}\n\ntrain.folds: [2]\n")
    assert len(tune(config, space, 2, study="edited").trials) == 2
    space.write_text("train.folds: [2]\nmodel.dropout: {low: 0.0, high: 0.3}\n")
    with pytest.raises(ConfigError) as caught:
        tune(config, space, 3, study="edited")
    assert one_line(caught.value) == (f"{space}: study 'edited' was begun with another search space (model.dropout: "
                                      "high 0.2 then, 0.3 now): put the space back to resume it, or use a new "
                                      "--study name")
    assert len(load_trials(sqlite_of(tiny_base.parent / "runs" / "tune-edited"), "edited")) == 2


def test_a_trial_whose_values_cannot_be_drawn_is_not_left_running(tiny_base, tmp_path, monkeypatch):
    from mlcls.tune.search import tune
    from mlcls.tune.space import SearchSpace

    def broken(self, trial, base):
        raise RuntimeError("the sampler broke")

    monkeypatch.setattr(SearchSpace, "sample", broken)
    with pytest.raises(RuntimeError, match="the sampler broke"):
        tune(load_config(tiny_base), _space(tmp_path), 1, study="broken")
    trials = load_trials(sqlite_of(tiny_base.parent / "runs" / "tune-broken"), "broken")
    assert [t.state.name for t in trials] == ["FAIL", "WAITING"]  # failed and queued again, not left running


def _space(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("train.lr: {low: 5.0e-4, high: 3.0e-3, log: true}\n")
    return path


def test_a_run_left_from_another_study_of_the_name_is_not_taken_as_a_trials(tiny_base, tmp_path):
    """The study's database removed (or another --storage with this --study): trial 0's folder holds a run of
    other values. Its figure must not be reported for the new trial's values (best.yaml would recommend values
    never trained): one line says so, and the folder is left alone."""
    from mlcls.errors import RunDirError
    from mlcls.tune.search import tune

    config = load_config(tiny_base)
    space = _space(tmp_path)
    tune(config, space, 1, study="again", base_trial=False)
    folder = tiny_base.parent / "runs" / "tune-again"
    trained_lr = load_config(folder / "trial-0000" / "config.yaml").train.lr
    (folder / "study.db").unlink()
    space.write_text("train.lr: {low: 1.0e-5, high: 2.0e-5, log: true}\n")  # no value of this draws trained_lr
    with pytest.raises(RunDirError) as caught:
        tune(config, space, 1, study="again", base_trial=False)
    message = one_line(caught.value)
    assert message.startswith(f"{folder / 'trial-0000'}: trial 0's run folder holds a run of other values (train.lr "
                              f"{trained_lr!r}, not ")
    assert message.endswith("left from another study of this name; remove it or choose another --study")
    assert load_config(folder / "trial-0000" / "config.yaml").train.lr == trained_lr


def test_a_trials_own_run_is_recognised_with_its_paths_saved_absolute(tmp_path, monkeypatch, tiny_encoder):
    """A run saves its data files, and an encoder named by a local folder, absolute: a searched relative (or ~)
    value is still the trial's own when it is retried or resumed, not 'another study's run'."""
    import shutil

    from mlcls.config import Config
    from mlcls.errors import RunDirError
    from mlcls.run.files import write_config
    from mlcls.tune.objective import check_same_values

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    shutil.copytree(tiny_encoder, tmp_path / "enc")
    config = Config()
    config.model.encoder, config.data.train = "enc", "~/d/train.jsonl"
    (tmp_path / "trial").mkdir()
    write_config(tmp_path / "trial", config)
    check_same_values(tmp_path / "trial", {"model.encoder": "enc", "data.train": "~/d/train.jsonl"}, 3)
    with pytest.raises(RunDirError, match="other values"):
        check_same_values(tmp_path / "trial", {"model.encoder": "other-enc"}, 3)


def test_a_bad_record_in_the_base_data_stops_the_search_without_using_up_its_trials(tiny_base, tmp_path):
    """Every trial reads the base config's data.train: a bad record there is the search's error (one line), not a
    failure of each trial in turn, each counted. The trial is queued again, and runs once the file is fixed."""
    from mlcls.errors import DataError
    from mlcls.tune.search import tune

    data = tmp_path / "tiny.jsonl"
    good = data.read_text()
    data.write_text(good + "not json\n")
    with pytest.raises(DataError) as caught:
        tune(load_config(tiny_base, ["train.epochs=1"]), _space(tmp_path), 2, study="bad")
    bad_line = len(good.splitlines()) + 1
    assert one_line(caught.value).startswith(f"{data}:{bad_line}: invalid JSON")
    folder = tmp_path / "runs" / "tune-bad"
    assert [t.state.name for t in load_trials(sqlite_of(folder), "bad")] == ["FAIL", "WAITING"]  # queued again

    data.write_text(good)
    result = tune(load_config(tiny_base, ["train.epochs=1"]), _space(tmp_path), 2, study="bad")
    assert result.complete and [t.state.name for t in result.trials if not t.user_attrs.get("surplus")].count(
        "COMPLETE") == 2


def test_a_trial_whose_values_leave_no_validation_is_refused_before_training(tiny_base, tmp_path):
    """The base has a validation share; a trial at data.val_fraction 0 would have none, nothing to compare it by.
    Refused as its config (counted, not retried), before a step is trained; the search goes on."""
    import optuna

    from mlcls.tune.search import tune

    space = tmp_path / "fraction.yaml"
    space.write_text("data.val_fraction: [0.0, 0.25]\n")
    storage = f"sqlite:///{tmp_path / 'fraction.db'}"
    optuna.create_study(study_name="fraction", storage=storage, direction="maximize").enqueue_trial(
        {"data.val_fraction": 0.0})
    config = load_config(tiny_base, ["data.validation=null", "data.val_fraction=0.25", "train.epochs=1"])
    result = tune(config, space, 1, study="fraction", storage=storage, base_trial=False)
    [trial] = result.trials
    assert trial.state.name == "FAIL" and result.complete
    assert trial.user_attrs["error"].startswith("these values leave no validation data: mlcls tune compares trials")
    assert not list(result.folder.glob("*trial-*"))  # nothing was trained
