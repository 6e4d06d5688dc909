"""The validation hold-out: the articles that thresholds are tuned on and the kept epoch is chosen by."""

from __future__ import annotations

import numpy as np

from mlcls.data.records import Record


def hold_out(records: list[Record], fraction: float, seed: int) -> tuple[list[Record], list[Record]]:
    """Split a validation set off the training records (random, seeded). Thresholds are tuned on it."""
    if fraction <= 0 or len(records) < 2:
        return records, []
    n_val = min(len(records) - 1, max(1, round(len(records) * fraction)))
    order = np.random.default_rng(seed).permutation(len(records))
    val_idx = set(order[:n_val].tolist())
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
