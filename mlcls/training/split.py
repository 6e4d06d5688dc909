"""The validation hold-out: the articles that thresholds are tuned on and the kept epoch is chosen by."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from mlcls.config import Config
from mlcls.data.ids import place, reading_notes, shared_ids
from mlcls.data.records import FieldSpec, ReadPolicy, Record, read_records
from mlcls.data.stratify import iterative_stratification


def training_split(config: Config, policy: ReadPolicy | None = None,
                   note: Callable[[str], None] | None = None) -> tuple[list[Record], list[Record]]:
    """(training records, validation records) exactly as `mlcls train` makes them from `config`: the
    validation file, or the seeded hold-out of data.val_fraction of the training file. `note` hears what
    was skipped in each file, file by file (the two files may be one), ids repeated within a file, and ids of
    validation records that a training record has too."""
    fields = FieldSpec.from_config(config.data)
    policy = policy or ReadPolicy(config.data.on_error)

    def read(path: str, notes: bool = True) -> list[Record]:
        policy.stats.pop(str(path), None)
        records = list(read_records(path, fields, policy=policy))
        for line in reading_notes(policy, path, records) if note and notes else []:
            note(line)
        return records

    train_path, validation_path = config.data.train, config.data.validation
    train = read(train_path)
    unit = policy.stats[str(train_path)].unit
    if validation_path:
        one_file = same_file(train_path, validation_path)
        validation = read(validation_path, notes=not one_file)  # one file named twice: said once
        if note and one_file:  # every validation article is a training one: nothing held out
            note(f"data.validation is data.train ({validation_path}): the decision rule and the kept epoch are "
                 "chosen on articles the model trains on, so the validation figures are too high (data.validation: "
                 "null holds out data.val_fraction of it instead)")
        if note and not one_file:
            shared = shared_ids(train, validation, f"records of {validation_path}", f"a record of {train_path}",
                                lambda r: place(validation_path, r.line, policy.stats[str(validation_path)].unit),
                                lambda r: place(train_path, r.line, unit))
            if shared:
                note(shared)
        return train, validation
    kept, held = hold_out(train, config.data.val_fraction, config.train.seed, config.data.split == "stratified")
    if note:
        def where(record: Record) -> str:
            return place(train_path, record.line, unit)

        shared = shared_ids(kept, held, f"records held out of {train_path} for validation",
                            "a record left in training", where, where)
        if shared:
            note(shared)
    return kept, held


def same_file(a: str, b: str) -> bool:
    """Whether two config paths name one file (`data/x.jsonl` and `./data/../data/x.jsonl`, or a link to it)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them is missing: the reader says so
        return a == b


def label_matrix(records: list[Record]) -> tuple[np.ndarray, list[str]]:
    """(records, labels) 0/1: a record's positive labels (confidence >= 0.5); what stratification balances."""
    names = sorted({name for r in records for name, conf in (r.labels or {}).items() if conf is not None})
    index = {name: j for j, name in enumerate(names)}
    matrix = np.zeros((len(records), len(names)), dtype=np.int8)
    for i, r in enumerate(records):
        for name, conf in (r.labels or {}).items():
            if conf is not None and conf >= 0.5:
                matrix[i, index[name]] = 1
    return matrix, names


def stratified_order(records: list[Record], n_val: int, seed: int) -> list[int]:
    """Indices of about `n_val` validation records chosen by iterative stratification: each label gets about
    its share of validation articles, so a label with at least two articles has one there where possible."""
    matrix, _ = label_matrix(records)
    fraction = n_val / len(records)
    part = iterative_stratification(matrix, [1.0 - fraction, fraction], seed)
    return np.flatnonzero(part == 1).tolist()


def fold_of_each_record(records: list[Record], folds: int, seed: int) -> np.ndarray:
    """Fold number (0 .. folds-1) of every record, stratified over the labels (cross-fitting)."""
    matrix, _ = label_matrix(records)
    return iterative_stratification(matrix, [1.0 / folds] * folds, seed)


def hold_out(records: list[Record], fraction: float, seed: int,
             stratified: bool = False) -> tuple[list[Record], list[Record]]:
    """Split a validation set off the training records (seeded; stratified over the labels, or random).
    Thresholds are tuned on it and the kept epoch is chosen by it."""
    if fraction <= 0 or len(records) < 2:
        return records, []
    n_val = min(len(records) - 1, max(1, round(len(records) * fraction)))
    if stratified:
        val_idx = set(stratified_order(records, n_val, seed))
    else:
        val_idx = set(np.random.default_rng(seed).permutation(len(records))[:n_val].tolist())
    # A label whose every article landed in validation would vanish from the vocabulary, or stay in it with no
    # positive to learn from (named in train only as not annotated, or below 0.5), and the model could never
    # predict it (on Reuters, several topics have a single training article): such articles go back to training.
    kept = [r for i, r in enumerate(records) if i not in val_idx]
    named = {name for r in kept for name in (r.labels or {})}
    carried = {name for r in kept for name in _carried(r)}
    for i in sorted(val_idx):
        labels = records[i].labels or {}
        if any(name not in named for name in labels) or any(name not in carried for name in _carried(records[i])):
            val_idx.discard(i)
            named.update(labels)
            carried.update(_carried(records[i]))
    return ([r for i, r in enumerate(records) if i not in val_idx],
            [r for i, r in enumerate(records) if i in val_idx])


def _carried(record: Record) -> list[str]:
    """The labels an article carries: annotated at a confidence of 0.5 or more (a positive, as metrics count it)."""
    return [name for name, confidence in (record.labels or {}).items() if confidence is not None and confidence >= 0.5]
