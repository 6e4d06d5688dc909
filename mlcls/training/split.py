"""The validation hold-out: the articles that thresholds are tuned on and the kept epoch is chosen by."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mlcls.config import Config
from mlcls.data.records import FieldSpec, ReadPolicy, Record, read_records


def training_split(config: Config, policy: ReadPolicy | None = None,
                   note: Callable[[str], None] | None = None) -> tuple[list[Record], list[Record]]:
    """(training records, validation records) exactly as `mlcls train` makes them from `config`: the
    validation file, or the seeded hold-out of data.val_fraction of the training file. `note` hears what
    was skipped in each file, file by file (the two files may be one)."""
    fields = FieldSpec.from_config(config.data)
    policy = policy or ReadPolicy(config.data.on_error)

    def read(path: str) -> list[Record]:
        policy.stats.pop(str(path), None)
        records = list(read_records(path, fields, policy=policy))
        for line in policy.report(path) if note else []:
            note(line)
        return records

    train = read(config.data.train)
    if config.data.validation:
        return train, read(config.data.validation)
    return hold_out(train, config.data.val_fraction, config.train.seed, config.data.split == "stratified")


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


def iterative_stratification(matrix: np.ndarray, proportions: list[float], seed: int) -> np.ndarray:
    """The part (0 .. len(proportions)-1) of every row, so that each label's positives are spread over the
    parts in the given proportions as far as the data allows (Sechidis et al. 2011, "On the stratification
    of multi-label data", Algorithm 1): the label with the fewest rows still unassigned goes first, each of
    its rows to the part that wants that label most (ties: the part that wants most rows, then chance).

    Written here rather than taken from the `iterative-stratification` package, which implements the same
    algorithm: that package installs a top-level `tests` module into site-packages, which shadows the
    `tests` package of any project installed beside it (it broke this project's own test suite)."""
    rng = np.random.default_rng(seed)
    n = len(matrix)
    positive = matrix.astype(bool)
    wanted_rows = np.array(proportions, dtype=np.float64) * n
    wanted = np.outer(proportions, positive.sum(axis=0)).astype(np.float64)  # (parts, labels)
    part = np.full(n, -1, dtype=np.int64)
    left = positive.copy()  # positives of rows not assigned yet

    def assign(row: int, by_label: int | None) -> None:
        score = np.stack([wanted[:, by_label] if by_label is not None else wanted_rows, wanted_rows,
                          rng.random(len(proportions))])
        best = np.lexsort(score[::-1])[-1]  # the largest by label, then by rows, then by chance
        part[row] = best
        wanted[best, positive[row]] -= 1
        wanted_rows[best] -= 1
        left[row] = False

    while left.any():
        counts = left.sum(axis=0).astype(np.float64)
        counts[counts == 0] = np.inf
        label = int(np.argmin(counts))
        for row in rng.permutation(np.flatnonzero(left[:, label])):
            assign(int(row), label)
    for row in rng.permutation(np.flatnonzero(part < 0)):  # rows with no label
        assign(int(row), None)
    return part


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
    # A label whose every article landed in validation would vanish from the vocabulary, and the model
    # could never predict it (on Reuters, several topics have a single training article): such articles
    # go back to training.
    in_train = {name for i, r in enumerate(records) if i not in val_idx for name in (r.labels or {})}
    for i in sorted(val_idx):
        if any(name not in in_train for name in (records[i].labels or {})):
            val_idx.discard(i)
            in_train.update(records[i].labels or {})
    return ([r for i, r in enumerate(records) if i not in val_idx],
            [r for i, r in enumerate(records) if i in val_idx])
