"""What the one-model recipe and cross-fitting share: the training data, read and validated once, and the
result of a training."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from rich.console import Console
from rich.markup import escape

from mlcls.config import Config
from mlcls.data.labels import Encoded, LabelSpace, LabelStats
from mlcls.data.records import ReadPolicy, Record
from mlcls.decision.tuning import untuned_rule
from mlcls.errors import DataError, Interrupted
from mlcls.training.split import training_split


@dataclass
class TrainResult:
    """What train() returns: the finished run's directory and its metrics (metrics.json's content)."""

    run_dir: Path
    metrics: dict[str, Any]  # validation metrics of the kept epoch, plus timings
    main_process: bool = True  # under `accelerate launch`, only the main process reports


class TrainingInterrupted(Interrupted):
    """Ctrl-C or SIGTERM: a checkpoint was saved; the message says how to continue."""


@dataclass
class TrainingData:
    """The records, read and validated, and their label matrices."""

    train: list[Record]
    validation: list[Record]
    labels: LabelSpace
    train_enc: Encoded
    val_enc: Encoded
    stats: LabelStats


    def subset(self, train_rows: np.ndarray, val_rows: np.ndarray) -> TrainingData:
        """A fold's data, from this pool's training records: the label space of the pool (the K models must agree
        on their labels; a label absent from a fold's training part keeps its head near the prior) and the
        statistics of its own training part."""
        train_records = [r for r, keep in zip(self.train, train_rows, strict=True) if keep]
        val_records = [r for r, keep in zip(self.train, val_rows, strict=True) if keep]
        train_enc, val_enc = self.labels.encode(train_records), self.labels.encode(val_records)
        stats = LabelStats.from_encoded(self.labels.labels, train_enc.targets, train_enc.mask)
        return TrainingData(train_records, val_records, self.labels, train_enc, val_enc, stats)


def read_training_data(config: Config, console: Console, rejects: IO[bytes] | None) -> TrainingData:
    """Read and validate the training (and validation) records; encode their labels."""
    policy = ReadPolicy(config.data.on_error, rejects)
    train_records, val_records = training_split(config, policy, lambda line: console.print(f"note: {line}",
                                                                                          markup=False))
    labels = LabelSpace.from_records(train_records)
    if len(labels) == 0:
        raise DataError(config.data.train, None, "no labels in the training data: nothing to learn")
    train_enc, val_enc = labels.encode(train_records), labels.encode(val_records)
    if val_enc.unknown_labels:
        console.print(f"[yellow]note:[/] validation labels not in the training vocabulary (ignored): "
                      f"{escape(_counts(val_enc.unknown_labels))}")  # a label may hold [brackets]
    # "no label" is an answer (an article without a topic); a record whose every entry is null gave none
    annotated = train_enc.mask.max(axis=1, initial=0) > 0
    no_label = int(((train_enc.targets.max(axis=1, initial=0) < 0.5) & annotated).sum())
    unannotated = int((~annotated).sum())
    console.print(
        f"{len(train_records)} training and {len(val_records)} validation records, {len(labels)} labels; "
        f"{no_label} training records have no label"
        + (f", {unannotated} no annotated label (every entry null)" if unannotated else "")
    )
    if not val_records and config.train.folds == 1:  # cross-fitting tunes the rule on its out-of-fold scores
        console.print("[yellow]note:[/] no validation data: nothing to tune the decision rule on, so the run keeps "
                      f"the untuned rule ({untuned_rule(config).describe()}) and its last epoch")
        if config.train.patience:
            console.print("[yellow]note:[/] train.patience is ignored: there is no validation data to watch")
        if config.model.lexical == "tfidf":  # its blend weight is chosen on validation scores, as the rule is
            console.print("[yellow]note:[/] model.lexical: tfidf is left out: its blend weight is chosen on "
                          "validation data (or out-of-fold scores with train.folds), and there is none")
    test = config.data.test
    if test and "://" not in test and not Path(test).is_file():  # said now, not after the training, by eval
        console.print(f"note: data.test {test} is not a file: `mlcls eval` of this run will need --data",
                      markup=False)
    stats = LabelStats.from_encoded(labels.labels, train_enc.targets, train_enc.mask)
    return TrainingData(train_records, val_records, labels, train_enc, val_enc, stats)


def _counts(counter: Counter) -> str:
    return ", ".join(f"{name} ({n})" for name, n in counter.most_common(10)) + (
        f" and {len(counter) - 10} more" if len(counter) > 10 else "")
