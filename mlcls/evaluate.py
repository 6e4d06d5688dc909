"""`mlcls eval`: a run's decisions on a labelled file, scored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mlcls.data import FieldSpec, read_records
from mlcls.errors import MlclsError
from mlcls.losses import LabelStats
from mlcls.metrics import compute_metrics, gold_matrix, micro_f1_counts
from mlcls.predict import score_records
from mlcls.rundir import LoadedRun


def evaluate(
    run: LoadedRun, data: str | Path | None, batch_size: int, threshold: float | None = None
) -> dict[str, Any]:
    path = data if data is not None else run.config.data.test
    if path is None:
        raise MlclsError("no evaluation data: the run's config names no data.test; pass --data FILE")
    records = list(read_records(path, FieldSpec.from_config(run.config.data)))
    encoded = run.labels.encode(records)
    probs = np.concatenate([scores for _, scores in score_records(run, records, batch_size)])
    predicted = probs >= threshold if threshold is not None else run.thresholds.apply(probs)

    report = compute_metrics(encoded.targets, encoded.mask, predicted, run.labels.labels)
    report["run"] = str(run.path)
    report["data"] = str(path)
    report["threshold"] = threshold if threshold is not None else run.thresholds.value
    report["unknown_labels"] = dict(encoded.unknown_labels.most_common())
    report["baseline_micro_f1"] = most_frequent_label_baseline(run, encoded.targets, encoded.mask)
    return report


def most_frequent_label_baseline(run: LoadedRun, targets: np.ndarray, mask: np.ndarray) -> float | None:
    """Micro-F1 of tagging every article with the training set's most frequent label."""
    stats_path = run.path / "label_stats.json"
    if not stats_path.exists():
        return None
    stats = LabelStats.load(stats_path)
    pred = np.zeros_like(targets, dtype=bool)
    pred[:, int(np.argmax(stats.positives))] = True
    return micro_f1_counts(gold_matrix(targets, mask).astype(bool), pred & (mask > 0))
