"""Cross-fitting (train.folds): K fold models, out-of-fold scores, the rule tuned on them, an ensemble run."""

from __future__ import annotations

import json

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from mlcls.cli import app
from mlcls.config import load_config
from mlcls.errors import ConfigError
from mlcls.inference.loading import load_run
from mlcls.inference.scoring import score_records
from mlcls.training.data import TrainingInterrupted
from mlcls.training.entry import train
from mlcls.training.interrupt import StopSignal
from mlcls.training.split import fold_of_each_record, iterative_stratification
from tests.conftest import TINY_RECORDS, sigterm_to_self, tiny_config, write_jsonl

runner = CliRunner()
quiet = Console(stderr=True, quiet=True)


def _config(tmp_path, encoder, name, *overrides):
    data = write_jsonl(tmp_path / "tiny.jsonl", TINY_RECORDS)
    return load_config(tiny_config(tmp_path, encoder, data),
                       ["data.validation=null", "train.folds=3", "train.epochs=3", "train.batch_size=4",
                        f"train.cache_dir={tmp_path / 'cache'}", *overrides], {"output.name": name}), data


class StopInFold(StopSignal):
    """Ctrl-C after step `at_step` of fold `fold` (each fold counts its steps from 1)."""

    def __init__(self, fold: int, at_step: int):
        super().__init__()
        self.fold, self.at_step, self.current, self.last = fold, at_step, 1, 0

    def should_stop(self, step: int) -> bool:
        if step < self.last:
            self.current += 1
        self.last = step
        return self.current == self.fold and step >= self.at_step


def test_iterative_stratification_spreads_each_label_over_the_parts():
    rng = np.random.default_rng(0)
    matrix = (rng.random((300, 6)) < [0.5, 0.2, 0.05, 0.02, 0.01, 0.3]).astype(np.int8)
    part = iterative_stratification(matrix, [0.25] * 4, seed=1)
    assert np.bincount(part, minlength=4).tolist() == [75, 75, 75, 75]
    for j in range(matrix.shape[1]):
        per_part = np.bincount(part[matrix[:, j] == 1], minlength=4)
        assert per_part.max() - per_part.min() <= 1, (j, per_part)  # as even as the counts allow


def test_cross_fitted_run_tunes_on_out_of_fold_scores_and_predicts_with_the_mean(tmp_path, tiny_encoder):
    config, data = _config(tmp_path, tiny_encoder, "cf")
    result = train(config, quiet)
    run = result.run_dir
    assert [p.name for p in sorted((run / "folds").iterdir())] == ["fold-1", "fold-2", "fold-3"]
    assert not (run / "head.safetensors").exists() and not (run / "folds" / "latest").exists()
    rule = json.loads((run / "thresholds.json").read_text())
    assert rule["tuned_on"] == "out-of-fold"
    # Every training record has exactly one out-of-fold score: from the fold model that did not see it.
    with np.load(run / "tuning_scores.npz", allow_pickle=False) as saved:
        assert saved["probs"].shape == (len(TINY_RECORDS), 3)
        assert sorted(saved["ids"].tolist()) == sorted(r["id"] for r in TINY_RECORDS)
        oof = dict(zip(saved["ids"].tolist(), saved["probs"], strict=True))
    from mlcls.data.records import FieldSpec, read_records

    records = list(read_records(data, FieldSpec(text_fields=("text",))))
    fold = fold_of_each_record(records, 3, config.train.seed)
    members = [load_run(run / "folds" / f"fold-{k}") for k in (1, 2, 3)]
    for k, member in enumerate(members):
        held = [r for r, f in zip(records, fold, strict=True) if f == k]
        scores = np.concatenate([s for _, s in score_records(member, held, 4)])
        np.testing.assert_allclose(scores, np.stack([oof[r.id] for r in held]), atol=1e-5)
    # The run scores with the members' mean probability.
    ensemble = np.concatenate([s for _, s in score_records(load_run(run), records, 4)])
    mean = np.mean([np.concatenate([s for _, s in score_records(m, records, 4)]) for m in members], axis=0)
    np.testing.assert_allclose(ensemble, mean, atol=1e-5)
    # eval and predict take it like any run.
    ev = runner.invoke(app, ["eval", str(run), "--data", str(data), "--json", str(tmp_path / "ev.json")])
    assert ev.exit_code == 0, ev.output
    pred = runner.invoke(app, ["predict", str(data), "--model", str(run), "-o", str(tmp_path / "p.jsonl")])
    assert pred.exit_code == 0, pred.output
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == len(TINY_RECORDS)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["folds"] == 3 and metrics["validation_kind"] == "out-of-fold"
    assert metrics["validation_records"] == len(TINY_RECORDS)


def test_cross_fitting_resumes_fold_by_fold(tmp_path, tiny_encoder):
    config, _ = _config(tmp_path, tiny_encoder, "cf")
    with pytest.raises(TrainingInterrupted, match="finished folds are kept; continue with: mlcls train --resume"):
        train(config, quiet, stop=StopInFold(2, at_step=3))  # fold 1 done, fold 2 stopped mid-way
    staging = tmp_path / "runs" / ".cf.incomplete"
    assert (staging / "folds" / "fold-1" / "metrics.json").is_file()
    result = runner.invoke(app, ["train", "--resume", str(tmp_path / "runs" / "cf")])
    assert result.exit_code == 0, result.output
    assert "fold-1: finished earlier, kept" in result.stderr
    assert (tmp_path / "runs" / "cf" / "thresholds.json").is_file()
    # the figure is out-of-fold, from fold models that each kept an epoch of their own
    epochs = json.loads((tmp_path / "runs" / "cf" / "metrics.json").read_text())["fold_best_epochs"]
    assert (f"validation (out-of-fold, the folds' epochs {', '.join(map(str, epochs))}; the decision rule tuned on "
            "it): micro-F1") in result.stdout


def test_a_resume_on_changed_data_is_refused_not_mixed_with_the_finished_folds(tmp_path, tiny_encoder):
    """Finished folds are kept on resume; the pool is drawn again from the file. Edited between the two (the same
    number of records), the kept folds' out-of-fold scores would have been set against other articles' labels."""
    from mlcls.errors import MlclsError

    config, data = _config(tmp_path, tiny_encoder, "drift")
    with pytest.raises(TrainingInterrupted):
        train(config, quiet, stop=StopInFold(2, at_step=1))
    staging = tmp_path / "runs" / ".drift.incomplete"
    assert json.loads((staging / "folds" / "pool.json").read_text())["records"] == len(TINY_RECORDS)
    edited = [{**row, "labels": ["oil"]} if row["id"] == "a1" else row for row in TINY_RECORDS]
    write_jsonl(data, edited)
    with pytest.raises(MlclsError, match="the training data changed since its folds were trained"):
        train(load_config(staging / "config.yaml"), quiet, resume=staging)
    write_jsonl(data, TINY_RECORDS)  # put back: the resume goes on from fold 2
    result = train(load_config(staging / "config.yaml"), quiet, resume=staging)
    assert (result.run_dir / "thresholds.json").is_file() and not (result.run_dir / "folds" / "pool.json").exists()


@pytest.mark.parametrize(("after_fold", "refit", "message"), [(1, False, "after fold 1/3"),
                                                             (3, True, "before the refit")])
def test_a_sigterm_between_folds_begins_no_other_training(tmp_path, tiny_encoder, monkeypatch, after_fold, refit,
                                                          message):
    """The signal arrives after a fold's training has ended (its own handler is gone): cross-fitting's handler
    takes it, and the next fold (or the refit) does not begin."""
    import signal

    import mlcls.training.crossfit as crossfit

    config, _ = _config(tmp_path, tiny_encoder, "cft", f"train.refit={str(refit).lower()}")
    fold_training = crossfit.train_fold

    def fold_then_sigterm(*args, **kwargs):
        result = fold_training(*args, **kwargs)
        if args[3] == after_fold - 1:
            sigterm_to_self()  # after the fold's own handler is gone: cross-fitting's must hold SIGTERM
        return result

    monkeypatch.setattr(crossfit, "train_fold", fold_then_sigterm)
    with pytest.raises(TrainingInterrupted, match=f"stopped by SIGTERM {message}; finished folds are kept; "
                                                  "continue with: mlcls train --resume") as stopped:
        train(config, quiet)
    assert stopped.value.exit_code == 143
    staging = tmp_path / "runs" / ".cft.incomplete"
    assert (staging / "folds" / f"fold-{after_fold}" / "metrics.json").is_file()
    assert not (staging / "folds" / f"fold-{after_fold + 1}").exists() and not (staging / "refit").exists()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    monkeypatch.setattr(crossfit, "train_fold", fold_training)
    result = runner.invoke(app, ["train", "--resume", str(tmp_path / "runs" / "cft")])
    assert result.exit_code == 0, result.output
    assert "fold-1: finished earlier, kept" in result.stderr


def test_refit_predicts_with_one_model_trained_on_everything(tmp_path, tiny_encoder):
    config, _ = _config(tmp_path, tiny_encoder, "refit", "train.refit=true")
    result = train(config, quiet)
    assert (result.run_dir / "head.safetensors").is_file() and (result.run_dir / "encoder").is_dir()
    assert not (result.run_dir / "refit").exists()
    assert result.metrics["refit_epochs"] == result.metrics["best_epoch"]
    run = load_run(result.run_dir)
    assert type(run.model).__name__ == "MultiLabelClassifier"


def test_folds_with_a_validation_file_is_refused(tmp_path, tiny_encoder):
    config, data = _config(tmp_path, tiny_encoder, "x", )
    config.data.validation = str(data)
    with pytest.raises(ConfigError, match="validation to null"):
        train(config, quiet)


def test_cross_fitted_fusion_uses_out_of_fold_lexical_scores(tmp_path, tiny_encoder):
    config, _ = _config(tmp_path, tiny_encoder, "cf-lex", "model.lexical=tfidf", "train.epochs=1")
    result = train(config, quiet)
    run = result.run_dir
    assert (run / "lexical").is_dir() and not any((run / "folds").glob("*/lexical"))
    assert "lexical_weight" in result.metrics
    with np.load(run / "tuning_scores.npz", allow_pickle=False) as saved:
        assert saved["lexical_probs"].shape == saved["encoder_probs"].shape == (len(TINY_RECORDS), 3)


def test_a_cross_fitted_runs_metrics_say_its_cost_per_article(tmp_path, tiny_encoder):
    """metrics.json of a single run records windows per article (long texts) and article visits per epoch
    (oversampling); a cross-fitted run's left them out. Each fold's now, and the run's windows per article (the
    folds' mean; with train.refit, both of the refit's, which trains on all of train)."""
    config, data = _config(tmp_path, tiny_encoder, "cost", "train.epochs=1", "model.long_text=chunks",
                           "model.max_length=8", "model.chunk_overlap=1", "train.repeat_threshold=0.9")
    write_jsonl(data, [{**row, "text": " ".join([row["text"]] * 3)} for row in TINY_RECORDS])  # 2+ windows each
    metrics = train(config, quiet).metrics
    folds = metrics["fold_metrics"]
    assert all(fold["windows_per_article"] > 1 and fold["article_visits_per_epoch"] >= 8 for fold in folds), folds
    assert metrics["windows_per_article"] == round(sum(f["windows_per_article"] for f in folds) / 3, 3)
    assert "article_visits_per_epoch" not in metrics  # a fold's are of 2/3 of train: no figure of the whole run
