"""The base config as one of the study's trials: its values, queued once per study when a slot is free, kept
through a retry, left out (with the reason) where the space does not allow them, and reported against the best."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from mlcls.cli import app
from mlcls.config import load_config
from tests.tune.conftest import load_trials, sqlite_of, tune_args

runner = CliRunner(env={"COLUMNS": "200"})  # the table's state column unwrapped


def _space(tmp_path, text: str):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


def test_the_base_values_are_those_of_the_keys_a_trial_of_it_draws(tiny_base, tmp_path):
    from mlcls.tune.base_trial import base_params
    from mlcls.tune.space_checks import load_space

    text = ("train.lr: {low: 5.0e-4, high: 3.0e-3, log: true}\nloss.name: [bce, focal]\n"
            "loss.gamma: {low: 0.5, high: 3.0}\n")
    base = load_config(tiny_base).to_dict()  # lr 1e-3, bce: focal's gamma is not drawn
    space = load_space(_space(tmp_path, text), base)
    assert base_params(space, base) == ({"train.lr": 1.0e-3, "loss.name": "bce"}, "")
    focal = load_config(tiny_base, ["loss.name=focal", "loss.gamma=2.5"]).to_dict()
    assert base_params(load_space(_space(tmp_path, text), focal), focal) == (
        {"train.lr": 1.0e-3, "loss.name": "focal", "loss.gamma": 2.5}, "")


@pytest.mark.parametrize(("text", "why"), [
    ("train.lr: {low: 2.0e-3, high: 3.0e-3, log: true}\n", "train.lr = 0.001 in the base config, 0.002 to 0.003 in "
                                                           "the space"),
    ("train.batch_size: {low: 1, high: 9, step: 2}\n", "train.batch_size = 4 in the base config, 1 to 9 in steps of "
                                                       "2 in the space"),
    ("loss.name: [focal, asl]\n", "loss.name = 'bce' in the base config, choices 'focal', 'asl' in the space"),
])
def test_a_base_value_the_space_does_not_allow_keeps_the_base_out_and_says_why(tiny_base, tmp_path, text, why):
    from mlcls.tune.base_trial import base_params
    from mlcls.tune.space_checks import load_space

    base = load_config(tiny_base).to_dict()
    assert base_params(load_space(_space(tmp_path, text), base), base) == (None, why)


def test_a_choice_is_matched_by_type_too():
    from mlcls.tune.base_trial import allows
    from mlcls.tune.space import Param

    assert allows(Param("train.folds", "choice", choices=(1, 2)), 1)
    assert not allows(Param("train.folds", "choice", choices=(1, 2)), True)  # True == 1 in Python, not in a config
    assert allows(Param("train.weight_decay", "choice", choices=(0, 0.01)), 0.0)  # the config reads 0 as 0.0
    assert allows(Param("train.batch_size", "int", low=2, high=10, step=4), 6)
    assert not allows(Param("train.batch_size", "int", low=2, high=10, step=4), 4)
    assert not allows(Param("train.batch_size", "int", low=2, high=10), 4.0)


def test_a_study_gets_one_base_trial_even_when_resumed_from_one_begun_without(tiny_base, tiny_space):
    """A study begun with --no-base-trial gets its base trial at the next resume that has a slot free, once: a
    further resume adds sampled trials only. The summary compares the best with it."""
    folder = tiny_base.parent / "runs" / "tune-tiny"
    first = runner.invoke(app, tune_args(tiny_base, tiny_space, "--trials", "1", "--pruner", "none",
                                         "--no-base-trial"))
    assert first.exit_code == 0, first.output
    assert "the base config: not a trial of this study" in first.stdout
    second = runner.invoke(app, tune_args(tiny_base, tiny_space, "--trials", "2", "--pruner", "none"))
    assert second.exit_code == 0, second.output
    assert "queued: a trial of the base config's own values (loss.name=bce, train.lr=0.001)" in second.stderr
    third = runner.invoke(app, tune_args(tiny_base, tiny_space, "--trials", "3", "--pruner", "none"))
    assert third.exit_code == 0, third.output
    assert "queued" not in third.stderr
    trials = load_trials(sqlite_of(folder))
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    assert [bool(t.user_attrs.get("base_config")) for t in trials] == [False, True, False]
    assert trials[1].params == {"train.lr": 1.0e-3, "loss.name": "bce"}
    best = max(trials, key=lambda t: (t.value, -t.number))
    if best.value <= trials[1].value:
        assert "the base config (trial 1) is the best: no trial beats it" in third.stdout
    else:
        assert (f"the base config (trial 1): validation micro_f1 {trials[1].value:.4f}; the best beats it by "
                f"{best.value - trials[1].value:+.4f}") in third.stdout
    assert "done, base config" in third.stdout  # the table marks it


def test_a_retry_of_the_base_trial_is_still_the_base_trial():
    import optuna

    from mlcls.tune.base_trial import enqueue_base
    from mlcls.tune.ledger import fail_and_retry, is_base, slots_taken

    study = optuna.create_study(direction="maximize")
    assert enqueue_base(study, {"train.lr": 1.0e-3}, total=2)
    trial = study.ask()
    assert trial.params == {} and trial.suggest_float("train.lr", 5e-4, 3e-3, log=True) == 1.0e-3
    assert fail_and_retry(optuna, study, trial.number, interrupted=True) is True
    first, retry = study.get_trials(deepcopy=False)
    assert is_base(first) and is_base(retry) and retry.state.name == "WAITING"
    assert slots_taken(study.get_trials(deepcopy=False)) == 1  # the retry holds the base trial's one slot
    assert not enqueue_base(study, {"train.lr": 1.0e-3}, total=2)  # the study has its base trial


def _trial(number, state, value=None, base=False, last_step=None):
    from types import SimpleNamespace

    return SimpleNamespace(number=number, state=SimpleNamespace(name=state), value=value, last_step=last_step,
                           user_attrs={"base_config": True} if base else {}, system_attrs={})


@pytest.mark.parametrize(("base", "best", "line"), [
    (None, _trial(0, "COMPLETE", 0.9), "the base config: not a trial of this study"),
    (_trial(1, "COMPLETE", 0.9, True), _trial(1, "COMPLETE", 0.9, True),
     "the base config (trial 1) is the best: no trial beats it"),
    (_trial(1, "COMPLETE", 0.9, True), _trial(0, "COMPLETE", 0.9),
     "the base config (trial 1) is the best: no trial beats it (trial 0 ties it)"),
    (_trial(1, "COMPLETE", 0.9, True), _trial(2, "COMPLETE", 0.925),
     "the base config (trial 1): validation micro_f1 0.9000; the best beats it by +0.0250"),
    (_trial(3, "PRUNED", None, True, last_step=1), _trial(2, "COMPLETE", 0.925),
     "the base config (trial 3): pruned after epoch 1: the search beat it there"),
    (_trial(3, "RUNNING", None, True), _trial(2, "COMPLETE", 0.925), "the base config (trial 3): not trained yet"),
])
def test_the_summary_says_how_the_best_stands_against_the_base(base, best, line):
    from types import SimpleNamespace

    from mlcls.cli.tune import _against_base

    assert _against_base(SimpleNamespace(base=base, best=best, metric="micro_f1")) == line


def test_a_second_base_trial_queued_by_another_process_is_the_duplicate():
    from mlcls.tune.base_trial import duplicate_base, the_base_trial

    first, sampled, second = _trial(0, "COMPLETE", 0.9, True), _trial(1, "COMPLETE", 0.8), _trial(2, "RUNNING",
                                                                                                  base=True)
    trials = [first, sampled, second]
    assert not duplicate_base(trials, first) and not duplicate_base(trials, sampled) and duplicate_base(trials, second)
    assert the_base_trial(trials) is first
    retry = _trial(3, "WAITING", base=True)
    retry.system_attrs = {"failed_trial": 0, "retry_history": [0]}  # a retry of the first is the base trial still
    assert not duplicate_base([*trials, retry], retry)


def test_the_base_trial_is_never_pruned(tiny_base, tiny_space):
    """It is what the others are compared with: a pruner that gives up on every trial stops the sampled one after
    its first epoch and lets the base trial run to the end."""
    import optuna

    from mlcls.tune.search import tune

    config = load_config(tiny_base, ["train.epochs=2", f"train.cache_dir={tiny_base.parent / 'cache'}"])
    result = tune(config, tiny_space, 2, study="unpruned", pruner=optuna.pruners.ThresholdPruner(lower=2.0))
    assert [(t.state.name, bool(t.user_attrs.get("base_config"))) for t in result.trials] == [
        ("COMPLETE", True), ("PRUNED", False)]
    assert list(result.trials[0].intermediate_values) == [1, 2] and result.base.number == 0 == result.best.number


def test_tpe_models_the_trials_once_a_third_of_the_study_is_done(tiny_base, tiny_space, monkeypatch):
    """Optuna's default random start (10 trials) would make the 6 to 10 trials a CPU affords a random search."""
    import optuna

    from mlcls.tune import search
    from mlcls.tune.study import startup_trials

    assert [startup_trials(n) for n in (1, 6, 10, 20, 30, 100)] == [3, 3, 4, 7, 10, 10]
    samplers = []
    create = optuna.create_study
    monkeypatch.setattr(optuna, "create_study", lambda **kw: samplers.append(kw["sampler"]) or create(**kw))
    config = load_config(tiny_base, [f"train.cache_dir={tiny_base.parent / 'cache'}"])
    search.tune(config, tiny_space, 10, study="sampler", timeout=0)  # the study opened, no trial started
    [sampler] = samplers
    assert isinstance(sampler, optuna.samplers.TPESampler) and sampler._n_startup_trials == 4
