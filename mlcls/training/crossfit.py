"""Cross-fitting (train.folds = K): K trainings on stratified folds of all of train, each validated on its
own held-out fold, so that every training article gets one out-of-fold score.

Why: a 10% hold-out holds too few articles of the rare labels to tune anything on them (on Reuters, 52 of
90 topics have fewer than 3 validation articles). Out-of-fold scores cover all of train, so the decision
rule of the run is tuned on 10x as many articles; the kept epoch of each fold is still chosen on its own
fold. The run then predicts with the mean probability of the K fold models (an ensemble; K times the cost
of one model at prediction), or, with train.refit, with one model retrained on all of train for the
median of the folds' kept epochs.

The run's folds/ and refit/ are described with the rest of the layout in mlcls/run/layout.py.

Folds are resumable one by one: a finished fold is kept, an interrupted one continues from its checkpoint.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import shutil
import statistics
import time
from pathlib import Path
from typing import IO, Any

import numpy as np
from rich.console import Console

from mlcls.config import Config
from mlcls.decision.metrics import compute_metrics
from mlcls.decision.tuning import choose_thresholds
from mlcls.errors import ConfigError, MlclsError, resume_command
from mlcls.model.lexical import fit_lexical, out_of_fold_lexical
from mlcls.run.checkpoint import find_checkpoint
from mlcls.run.files import (
    is_trained,
    peek_metrics,
    read_train_log,
    read_tuning_probs,
    write_json,
    write_label_stats,
    write_labels,
    write_metrics,
    write_rule,
    write_train_log,
    write_tuning_scores,
)
from mlcls.run.layout import ENCODER, FOLDS, HEAD, LATEST, POOL, REFIT, TRACKING, fold_dir, staging_dir
from mlcls.run.lifecycle import discard_unstarted, finish_run, release_run
from mlcls.run.model_card import write_model_card
from mlcls.run.provenance import write_provenance
from mlcls.training.claim import claim_run
from mlcls.training.data import TrainingData, TrainingInterrupted, TrainResult, read_training_data
from mlcls.training.devices import launched_processes
from mlcls.training.fusion import fuse_lexical
from mlcls.training.hooks import OnEpoch
from mlcls.training.init_from import read_start, start_data
from mlcls.training.interrupt import StopSignal
from mlcls.training.recipe import train_one
from mlcls.training.split import fold_of_each_record


def train_folds(config: Config, console: Console, rejects: IO[bytes] | None, resume: Path | None,
                stop: StopSignal, on_epoch: OnEpoch | None = None) -> TrainResult:
    """K fold trainings -> out-of-fold scores -> the run's rule (-> a refit on all of train) -> the run."""
    started = time.perf_counter()
    if config.data.validation:
        raise ConfigError("train.folds > 1 validates on folds of data.train: set data.validation to null")
    if launched_processes() > 1:
        raise ConfigError("train.folds > 1 runs its folds one after another in one process: launch it without "
                          "accelerate launch / torchrun")
    k = config.train.folds
    start = read_start(config)  # model.init_from: checked once, before the K trainings that each start from it
    pool = start_data(start, read_training_data(_no_hold_out(config), console, rejects), console)
    if len(pool.train) < k:
        raise ConfigError(f"train.folds is {k}, but there are only {len(pool.train)} training records")
    staging, final = claim_run(config, resume)
    try:
        fold = fold_of_each_record(pool.train, k, config.train.seed)
        check_pool(staging, pool, fold)
        console.print(f"cross-fitting: {k} folds of {len(pool.train)} records (stratified), "
                      f"{np.bincount(fold, minlength=k).tolist()} held out in turn", markup=False)
        try:
            # Ctrl-C or SIGTERM between two folds' loops (a fold's scoring and writing) sets the flag too, read at
            # the next step or before the next fold: the K trainings stop at a point they resume from.
            with stop.on_signals():
                results = []
                for i in range(k):
                    stop.raise_if_requested(TrainingInterrupted, f"after fold {i}/{k}" if i else "before fold 1")
                    results.append(train_fold(config, pool, fold, i, staging, console, stop, on_epoch))
                probs = out_of_fold_scores(pool, fold, results)
                if config.train.refit:
                    stop.raise_if_requested(TrainingInterrupted, "before the refit")
                refit = refit_model(config, pool, results, staging, console, stop) if config.train.refit else None
        except TrainingInterrupted as exc:  # a fold's message names the fold; the whole run is what resumes
            raise TrainingInterrupted(f"{str(exc).split('; continue with')[0]}; finished folds are kept; continue "
                                      f"with: {resume_command(final)}", exc.exit_code) from None
        return _finish(config, pool, fold, probs, results, refit, staging, final, started)
    except TrainingInterrupted:
        raise
    except BaseException:  # a fold that could not be set up: with no fold begun, nothing to resume
        if resume is None:
            discard_unstarted(staging)
        raise
    finally:
        release_run(staging)


def check_pool(staging: Path, pool: TrainingData, fold: np.ndarray) -> None:
    """Record the pool the folds are drawn from (a digest of its records' ids, texts and targets) and each record's
    fold; on resume, refuse other data: finished folds are kept as they are, and their out-of-fold scores would be
    mixed with rows of another file (or, with another number of records, not fit at all)."""
    digest = hashlib.sha256()
    for record in pool.train:
        digest.update(f"{record.id}\0{record.text}\0".encode("utf-8", "surrogatepass"))
    for array in (pool.train_enc.targets, pool.train_enc.mask, fold):
        digest.update(np.ascontiguousarray(array).tobytes())
    path = staging / FOLDS / POOL
    try:
        saved = json.loads(path.read_text()) if path.is_file() else None
    except ValueError:  # cut short by a kill while it was written: written again
        saved = None
    if saved is not None and saved.get("sha256") != digest.hexdigest():
        raise MlclsError(f"{staging}: the training data changed since its folds were trained (the same files and "
                         "settings are needed to resume)")
    if saved is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, {"sha256": digest.hexdigest(), "records": len(pool.train)})


def train_fold(config: Config, pool: TrainingData, fold: np.ndarray, i: int, staging: Path, console: Console,
               stop: StopSignal, on_epoch: OnEpoch | None = None) -> TrainResult:
    """Fold i+1: trained on the other folds, validated (kept epoch, early stopping) on this one."""
    folder = fold_dir(staging, i + 1)
    name = folder.name
    if is_trained(folder):
        console.print(f"{name}: finished earlier, kept", markup=False)
        return TrainResult(folder, peek_metrics(folder) or {})
    held = fold == i
    data = pool.subset(~held, held)
    fold_config = _fold_config(config, staging / FOLDS, name)
    console.print(f"{name}/{config.train.folds}: {int((~held).sum())} training, {int(held.sum())} held-out records",
                  markup=False)
    # The hook hears each fold's epochs in turn, marked with the fold (EpochEnd.step runs on across the folds); the
    # run's own figure, out-of-fold, exists only once every fold is done: it is the TrainResult's, not an epoch's.
    hook = None if on_epoch is None else (lambda end: on_epoch(dataclasses.replace(end, fold=i + 1,
                                                                                   folds=config.train.folds)))
    return train_one(fold_config, data, console, _resumable(folder), stop, hook)


def out_of_fold_scores(pool: TrainingData, fold: np.ndarray, results: list[TrainResult]) -> np.ndarray:
    """Every training record's score from the fold model that did not train on it (its tuning_scores.npz)."""
    probs = np.zeros(pool.train_enc.targets.shape, dtype=np.float32)
    for i, result in enumerate(results):
        probs[fold == i] = read_tuning_probs(result.run_dir)
    return probs


def refit_model(config: Config, pool: TrainingData, results: list[TrainResult], staging: Path, console: Console,
                stop: StopSignal) -> TrainResult:
    """One model on all of train, for the median of the folds' kept epochs (no validation left to choose by)."""
    folder = staging / REFIT
    if is_trained(folder):
        return TrainResult(folder, peek_metrics(folder) or {})
    epochs = max(1, round(statistics.median(r.metrics["best_epoch"] for r in results)))
    refit_config = _fold_config(config, staging, REFIT)
    refit_config.train.epochs = epochs
    refit_config.train.patience = 0
    console.print(f"refit: one model on all {len(pool.train)} records for {epochs} epochs (the folds' median)",
                  markup=False)
    everything = pool.subset(np.ones(len(pool.train), bool), np.zeros(len(pool.train), bool))
    return train_one(refit_config, everything, console, _resumable(folder), stop)


# -------------------------------------------------------------------- helpers


def _finish(config: Config, pool: TrainingData, fold: np.ndarray, probs: np.ndarray, results: list[TrainResult],
            refit: TrainResult | None, staging: Path, final: Path, started: float) -> TrainResult:
    """The run's rule on the out-of-fold scores, its files, and the rename into place."""
    labels, enc = pool.labels.labels, pool.train_enc
    parts, fusion = {}, {}
    if config.model.lexical == "tfidf":
        rule, probs, parts, fusion = _lexical_fusion(config, pool, fold, probs, staging)
    else:
        rule = choose_thresholds(config, probs, enc.targets, enc.mask, labels, pool.stats.prior())
    rule.tuned_on = "out-of-fold"
    metrics = compute_metrics(enc.targets, enc.mask, rule.apply(probs, labels), labels)
    write_labels(staging, pool.labels)
    write_label_stats(staging, pool.stats)
    write_rule(staging, rule)
    write_tuning_scores(staging, probs, enc, [r.id for r in pool.train], **parts)
    (staging / FOLDS / LATEST).unlink(missing_ok=True)  # each fold's training pointed it at itself
    write_train_log(staging, [{"fold": i, **entry} for i, result in enumerate(results, start=1)
                              for entry in read_train_log(result.run_dir)])
    summary = _summary(rule, metrics, results, refit, len(pool.train), started) | fusion
    summary["fold_metrics"] = summary.pop("fold_metrics")  # last, as before: the long part of the file
    write_metrics(staging, summary)
    write_provenance(staging, config)
    write_model_card(staging)
    if refit is not None:  # last before the rename: a failure before it leaves refit/ whole, for --resume to keep
        _adopt_refit(refit, staging)
    (staging / FOLDS / POOL).unlink(missing_ok=True)  # what a resume checks, until the run is whole
    done = finish_run(staging)
    return TrainResult(done.resolve(), summary)


def _adopt_refit(refit: TrainResult, staging: Path) -> None:
    """The refit model, and its tracker logs (train.report_to) as the run's own tracking/, moved to the top."""
    for part in (ENCODER, HEAD, TRACKING):
        if (refit.run_dir / part).exists():  # model.head transformers: no head.safetensors
            shutil.move(str(refit.run_dir / part), str(staging / part))
    shutil.rmtree(refit.run_dir)
    (staging / LATEST).unlink(missing_ok=True)  # the refit's training pointed it at refit/, gone now


def _summary(rule, metrics: dict[str, Any], results: list[TrainResult], refit: TrainResult | None, records: int,
             started: float) -> dict[str, Any]:
    """metrics.json of a cross-fitted run: out-of-fold figures, and each fold's own."""
    fold_epochs = [r.metrics["best_epoch"] for r in results]
    first = results[0].metrics
    return {
        "folds": len(results),
        "refit_epochs": refit.metrics["epochs_trained"] if refit else None,
        "validation": {k: v for k, v in metrics.items() if k != "per_label"},  # out-of-fold: all of train
        "validation_kind": "out-of-fold",
        "decision_rule": rule.describe(),
        "best_epoch": round(statistics.median(fold_epochs)),
        "fold_best_epochs": fold_epochs,
        "train_records": records,
        "validation_records": records,
        "train_seconds": round(sum(r.metrics["train_seconds"] for r in results)
                               + (refit.metrics["train_seconds"] if refit else 0.0), 2),
        **{key: first[key] for key in ("device", "precision", "processes")},
        "epochs_trained": max(r.metrics["epochs_trained"] for r in results),
        "wall_seconds": round(time.perf_counter() - started, 2),
        **_cost_per_article(results, refit),
        "fold_metrics": [{k: r.metrics[k] for k in ("best_epoch", "epochs_trained", "train_seconds", *COSTS)
                          if k in r.metrics}
                         | {"validation_micro_f1": r.metrics["validation"].get("micro_f1"),
                            "validation_macro_f1": r.metrics["validation"].get("macro_f1")} for r in results],
    }


# what a single run's metrics.json records of its cost per article (long texts' windows, oversampled visits)
COSTS = ("windows_per_article", "article_visits_per_epoch")


def _cost_per_article(results: list[TrainResult], refit: TrainResult | None) -> dict[str, Any]:
    """COSTS for the cross-fitted run: the refit's (it trains on all of train, as a single run would), else the
    folds' mean windows per article; a fold's visits an epoch are of (K-1)/K of train: in fold_metrics only."""
    if refit is not None:
        source = refit.metrics
    else:
        windows = [r.metrics["windows_per_article"] for r in results if "windows_per_article" in r.metrics]
        source = {"windows_per_article": statistics.fmean(windows)} if windows else {}
    return {key: round(source[key], 3) if key == "windows_per_article" else source[key]
            for key in COSTS if key in source}


def _lexical_fusion(config: Config, pool: TrainingData, fold: np.ndarray, encoder_probs: np.ndarray, staging: Path):
    """The lexical model's out-of-fold scores on the same folds, its weight and the rule chosen on the blended
    out-of-fold scores (fusion.py), and the model refitted on all of train for prediction."""
    texts, enc = [r.text for r in pool.train], pool.train_enc
    lexical_probs = out_of_fold_lexical(texts, enc.targets, enc.mask, fold, config.model.lexical_c)
    model = fit_lexical(texts, enc.targets, enc.mask, config.model.lexical_c)
    fusion = fuse_lexical(config, model, encoder_probs, lexical_probs, enc, pool.labels.labels, pool.stats.prior(),
                          staging)
    return fusion.rule, fusion.probs, fusion.parts, fusion.summary


def _resumable(folder: Path) -> Path | None:
    """The staging folder of a fold's (or the refit's) interrupted training, when it left a checkpoint."""
    return staging_dir(folder) if find_checkpoint(staging_dir(folder)) is not None else None


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
