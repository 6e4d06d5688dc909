"""Cross-fitting (train.folds = K): K trainings on stratified folds of all of train, each validated on its
own held-out fold, so that every training article gets one out-of-fold score.

Why: a 10% hold-out holds too few articles of the rare labels to tune anything on them (on Reuters, 52 of
90 topics have fewer than 3 validation articles). Out-of-fold scores cover all of train, so the decision
rule of the run is tuned on 10x as many articles; the kept epoch of each fold is still chosen on its own
fold. The run then predicts with the mean probability of the K fold models (an ensemble; K times the cost
of one model at prediction), or, with train.refit, with one model retrained on all of train for the
median of the folds' kept epochs.

runs/<name>/
  config.yaml, labels.json, label_stats.json   as for one model (labels: of all of train)
  thresholds.json, tuning_scores.npz           the rule, tuned on the out-of-fold scores; those scores
  metrics.json, train_log.jsonl                out-of-fold metrics; each fold's summary and epochs
  folds/fold-1 .. fold-K/                      each fold's own run (encoder/, head.safetensors, ...)
  encoder/, head.safetensors                   only with refit: the model retrained on all of train (native
                                               head: encoder/ alone), and its tracking/ logs

Folds are resumable one by one: a finished fold is kept, an interrupted one continues from its checkpoint.
"""

from __future__ import annotations

import copy
import json
import shutil
import statistics
import time
from pathlib import Path
from typing import IO

import numpy as np
from rich.console import Console

from mlcls.config import Config, absolute_data_paths
from mlcls.errors import ConfigError
from mlcls.evaluation.metrics import compute_metrics
from mlcls.inference.model_card import write_model_card
from mlcls.inference.rundir import (
    begin_named_run,
    begin_run,
    finish_run,
    lock_run,
    release_run,
    staging_dir,
    write_json,
)
from mlcls.training.checkpoint import find_checkpoint
from mlcls.training.devices import launched_processes
from mlcls.training.interrupt import StopSignal
from mlcls.training.loop import (
    TrainingData,
    TrainingInterrupted,
    TrainResult,
    choose_thresholds,
    default_run_name,
    read_training_data,
    train,
)
from mlcls.training.provenance import write_provenance
from mlcls.training.split import fold_of_each_record

FOLDS = "folds"


def train_folds(config: Config, console: Console, rejects: IO[bytes] | None, resume: Path | None,
                stop: StopSignal) -> TrainResult:
    """K fold trainings -> out-of-fold scores -> the run's rule (-> a refit on all of train) -> the run."""
    started = time.perf_counter()
    if config.data.validation:
        raise ConfigError("train.folds > 1 validates on folds of data.train: set data.validation to null")
    if launched_processes() > 1:
        raise ConfigError("train.folds > 1 runs its folds one after another in one process: launch it without "
                          "accelerate launch / torchrun")
    k = config.train.folds
    pool = read_training_data(_no_hold_out(config), console, rejects)
    if len(pool.train) < k:
        raise ConfigError(f"train.folds is {k}, but there are only {len(pool.train)} training records")
    staging, final = _begin(config, resume)
    try:
        fold = fold_of_each_record(pool.train, k, config.train.seed)
        console.print(f"cross-fitting: {k} folds of {len(pool.train)} records (stratified), "
                      f"{np.bincount(fold, minlength=k).tolist()} held out in turn", markup=False)
        try:
            results = [train_fold(config, pool, fold, i, staging, console, stop) for i in range(k)]
            probs = out_of_fold_scores(pool, fold, results)
            refit = refit_model(config, pool, results, staging, console, stop) if config.train.refit else None
        except TrainingInterrupted as exc:  # a fold's message names the fold; the whole run is what resumes
            raise TrainingInterrupted(f"{str(exc).split('; continue with')[0]}; finished folds are kept; continue "
                                      f"with: mlcls train --resume {final}") from None
        return _finish(config, pool, fold, probs, results, refit, staging, final, started)
    finally:
        release_run(staging)


def train_fold(config: Config, pool: TrainingData, fold: np.ndarray, i: int, staging: Path, console: Console,
               stop: StopSignal) -> TrainResult:
    """Fold i+1: trained on the other folds, validated (kept epoch, early stopping) on this one."""
    name = f"fold-{i + 1}"
    folder = staging / FOLDS / name
    if (folder / "metrics.json").is_file():
        console.print(f"{name}: finished earlier, kept", markup=False)
        return TrainResult(folder, json.loads((folder / "metrics.json").read_text()))
    held = fold == i
    data = _subset(pool, ~held, held)
    fold_config = _fold_config(config, staging / FOLDS, name)
    console.print(f"{name}/{config.train.folds}: {int((~held).sum())} training, {int(held.sum())} held-out records",
                  markup=False)
    resume = staging_dir(folder) if find_checkpoint(staging_dir(folder)) is not None else None
    return train(fold_config, console, resume=resume, stop=stop, data=data)


def out_of_fold_scores(pool: TrainingData, fold: np.ndarray, results: list[TrainResult]) -> np.ndarray:
    """Every training record's score from the fold model that did not train on it (its tuning_scores.npz)."""
    probs = np.zeros(pool.train_enc.targets.shape, dtype=np.float32)
    for i, result in enumerate(results):
        with np.load(result.run_dir / "tuning_scores.npz", allow_pickle=False) as saved:
            probs[fold == i] = saved["probs"]
    return probs


def refit_model(config: Config, pool: TrainingData, results: list[TrainResult], staging: Path, console: Console,
                stop: StopSignal) -> TrainResult:
    """One model on all of train, for the median of the folds' kept epochs (no validation left to choose by)."""
    folder = staging / "refit"
    if (folder / "metrics.json").is_file():
        return TrainResult(folder, json.loads((folder / "metrics.json").read_text()))
    epochs = max(1, round(statistics.median(r.metrics["best_epoch"] for r in results)))
    refit_config = _fold_config(config, staging, "refit")
    refit_config.train.epochs = epochs
    refit_config.train.patience = 0
    console.print(f"refit: one model on all {len(pool.train)} records for {epochs} epochs (the folds' median)",
                  markup=False)
    resume = staging_dir(folder) if find_checkpoint(staging_dir(folder)) is not None else None
    return train(refit_config, console, resume=resume, stop=stop, data=_subset(pool, np.ones(len(pool.train), bool),
                                                                               np.zeros(len(pool.train), bool)))


# -------------------------------------------------------------------- helpers


def _finish(config: Config, pool: TrainingData, fold: np.ndarray, probs: np.ndarray, results: list[TrainResult],
            refit: TrainResult | None, staging: Path, final: Path, started: float) -> TrainResult:
    """The run's rule on the out-of-fold scores, its files, and the rename into place."""
    from mlcls.training.loop import save_tuning_scores

    labels, enc = pool.labels.labels, pool.train_enc
    extra, fusion = {}, {}
    if config.model.lexical == "tfidf":
        rule, probs, extra, fusion = _lexical_fusion(config, pool, fold, probs, staging)
    else:
        rule = choose_thresholds(config, probs, enc.targets, enc.mask, labels, pool.stats.prior())
    rule.tuned_on = "out-of-fold"
    metrics = compute_metrics(enc.targets, enc.mask, rule.apply(probs, labels), labels)
    pool.labels.save(staging / "labels.json")
    pool.stats.save(staging / "label_stats.json")
    rule.save(staging / "thresholds.json")
    save_tuning_scores(staging, probs, enc, [r.id for r in pool.train], **extra)
    if refit is not None:
        # the refit model, and its tracker logs (train.report_to) as the run's own tracking/
        for part in ("encoder", "head.safetensors", "tracking"):
            if not (refit.run_dir / part).exists():  # model.head transformers: no head.safetensors
                continue
            shutil.move(str(refit.run_dir / part), str(staging / part))
        shutil.rmtree(refit.run_dir)
        (staging / "latest").unlink(missing_ok=True)  # the refit's training pointed it at refit/, gone now
    (staging / FOLDS / "latest").unlink(missing_ok=True)  # each fold's training pointed it at itself
    log = []
    for i, result in enumerate(results, start=1):
        lines = (result.run_dir / "train_log.jsonl").read_text().splitlines()
        log += [{"fold": i, **json.loads(line)} for line in lines]
    (staging / "train_log.jsonl").write_text("".join(json.dumps(e) + "\n" for e in log))
    summary = {
        "folds": len(results),
        "refit_epochs": refit.metrics["epochs_trained"] if refit else None,
        "validation": {k: v for k, v in metrics.items() if k != "per_label"},  # out-of-fold: all of train
        "validation_kind": "out-of-fold",
        "decision_rule": rule.describe(),
        "best_epoch": round(statistics.median(r.metrics["best_epoch"] for r in results)),
        "fold_best_epochs": [r.metrics["best_epoch"] for r in results],
        "train_records": len(pool.train),
        "validation_records": len(pool.train),
        "train_seconds": round(sum(r.metrics["train_seconds"] for r in results)
                               + (refit.metrics["train_seconds"] if refit else 0.0), 2),
        "device": results[0].metrics["device"],
        "precision": results[0].metrics["precision"],
        "processes": results[0].metrics["processes"],
        "epochs_trained": max(r.metrics["epochs_trained"] for r in results),
        "wall_seconds": round(time.perf_counter() - started, 2),
        **fusion,
        "fold_metrics": [{k: r.metrics[k] for k in ("best_epoch", "epochs_trained", "train_seconds")}
                         | {"validation_micro_f1": r.metrics["validation"].get("micro_f1"),
                            "validation_macro_f1": r.metrics["validation"].get("macro_f1")} for r in results],
    }
    write_json(staging / "metrics.json", summary)
    write_provenance(staging, config)
    write_model_card(staging)
    done = finish_run(staging)
    return TrainResult(done.resolve(), summary)


def _lexical_fusion(config: Config, pool: TrainingData, fold: np.ndarray, encoder_probs: np.ndarray, staging: Path):
    """The lexical model's out-of-fold scores on the same folds, its weight and the rule chosen on the blended
    out-of-fold scores, and the model refitted on all of train for prediction."""
    from mlcls.model.lexical import fit_lexical, out_of_fold_lexical
    from mlcls.training.fusion import describe_fusion, fuse

    texts, enc = [r.text for r in pool.train], pool.train_enc
    lexical_probs = out_of_fold_lexical(texts, enc.targets, enc.mask, fold)
    model = fit_lexical(texts, enc.targets, enc.mask)
    rule, blended, tried = fuse(config, model, encoder_probs, lexical_probs, enc, pool.labels.labels,
                                pool.stats.prior())
    model.save(staging)
    return rule, blended, {"encoder_probs": encoder_probs, "lexical_probs": lexical_probs}, describe_fusion(
        model.weight, tried)


def _begin(config: Config, resume: Path | None) -> tuple[Path, Path]:
    runs_root = Path(config.output.dir)
    if resume is not None:
        lock_run(resume)
        return resume, runs_root / (config.output.name or "")
    if config.output.name is None:
        config.output.name = begin_named_run(runs_root, default_run_name(config.loss.name))
    else:
        begin_run(runs_root, config.output.name)
    staging = staging_dir(runs_root / config.output.name)
    absolute_data_paths(config).save(staging / "config.yaml")  # the run finds its data from any folder
    return staging, runs_root / config.output.name


def _no_hold_out(config: Config) -> Config:
    """The config with nothing held out: every training record is in some fold's held-out part."""
    pooled = copy.deepcopy(config)
    pooled.data.val_fraction = 0.0
    return pooled


def _fold_config(config: Config, runs_dir: Path, name: str) -> Config:
    """A fold's own config: one model (folds 1), written under the cross-fitted run's staging folder."""
    fold = copy.deepcopy(config)
    fold.train.folds, fold.train.refit = 1, False
    fold.model.lexical = "none"  # the cross-fitted run fits its own lexical model on the same folds
    fold.output.dir, fold.output.name = str(runs_dir), name
    return fold


def _subset(pool: TrainingData, train_rows: np.ndarray, val_rows: np.ndarray) -> TrainingData:
    """A fold's data, with the label space of all of train (the K models must agree on their labels; a label
    absent from a fold's training part keeps its head near the prior) and the statistics of its own part."""
    from mlcls.data.labels import LabelStats

    train_records = [r for r, keep in zip(pool.train, train_rows, strict=True) if keep]
    val_records = [r for r, keep in zip(pool.train, val_rows, strict=True) if keep]
    train_enc, val_enc = pool.labels.encode(train_records), pool.labels.encode(val_records)
    stats = LabelStats.from_encoded(pool.labels.labels, train_enc.targets, train_enc.mask)
    return TrainingData(train_records, val_records, pool.labels, train_enc, val_enc, stats)

