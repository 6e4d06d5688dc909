"""Scores of label sets against gold labels: scikit-learn, with the not-annotated mask respected.

Masking trick: a masked entry is set to 0 in both gold and prediction, so it can only be a true
negative. Precision, recall and every F1 depend on TP/FP/FN alone, so scikit-learn's numbers are then
exactly the numbers over annotated entries. Only the Hamming loss counts true negatives; it is
computed here over annotated entries.

A soft gold confidence counts as a positive from 0.5 up.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlcls.data.labels import carried
from mlcls.data.stats import frequency_group


def gold_matrix(targets: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return carried(targets, mask).astype(np.int8)


def compute_metrics(targets: np.ndarray, mask: np.ndarray, predicted: np.ndarray, labels: list[str]) -> dict[str, Any]:
    """The set-based metrics of `predicted` against `targets` (a soft gold label counts from 0.5; `mask` 0: not
    annotated, left out): micro / macro / samples F1, precision, recall, Hamming loss, subset accuracy, per label."""
    # Imported here, not at module level: `predict` reaches this module (through thresholds) and never
    # scores anything, and scikit-learn costs it ~2.5 s of start-up.
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    annotated = mask > 0
    gold = gold_matrix(targets, mask)
    pred = (predicted.astype(bool) & annotated).astype(np.int8)
    annotated, gold, pred = _label_matrices(annotated, gold, pred)

    micro_p, micro_r, micro_f1, _ = precision_recall_fscore_support(gold, pred, average="micro", zero_division=0)
    per_p, per_r, per_f1, support = precision_recall_fscore_support(gold, pred, average=None, zero_division=0)
    # Macro over labels that occur in the gold data: a label with no gold article has no defined F1,
    # and counting it as 0 (or as 1) would say more about the test split than about the model.
    with_support = np.flatnonzero(support > 0)
    if len(with_support):
        macro_p, macro_r, macro_f1, _ = precision_recall_fscore_support(
            gold, pred, average="macro", labels=with_support, zero_division=0
        )
    else:
        macro_p = macro_r = macro_f1 = 0.0
    # zero_division=1: an article with no gold topic and no predicted topic is a correct answer (F1 1),
    # one of them empty and the other not scores 0. An article with no annotated entry at all (every label
    # null) has no answer to be right or wrong about: it counts in neither per-article figure.
    rows = annotated.any(axis=1)
    samples_f1 = f1_score(gold[rows], pred[rows], average="samples", zero_division=1.0) if rows.any() else 0.0
    errors = ((gold != pred) & annotated).sum()
    hamming = float(errors / max(1, annotated.sum()))

    true_pos = (gold & pred).sum(axis=0)
    per_label = [
        {
            "label": name,
            "support": int(support[i]),
            "predicted": int(pred[:, i].sum()),
            "true_positives": int(true_pos[i]),
            "precision": float(per_p[i]),
            "recall": float(per_r[i]),
            "f1": float(per_f1[i]),
        }
        for i, name in enumerate(labels)
    ]
    return {
        "records": int(gold.shape[0]),
        "records_without_gold_labels": int((gold.sum(axis=1) == 0).sum()),
        "labels_with_support": int(len(with_support)),
        "micro_precision": float(micro_p),
        "micro_recall": float(micro_r),
        "micro_f1": float(micro_f1),
        "macro_precision": float(macro_p),
        "macro_recall": float(macro_r),
        "macro_f1": float(macro_f1),
        "samples_f1": float(samples_f1),
        "hamming_loss": hamming,
        "subset_accuracy": float(accuracy_score(gold[rows], pred[rows])) if rows.any() else 0.0,
        "per_label": per_label,
    }


def _label_matrices(*matrices: np.ndarray) -> tuple[np.ndarray, ...]:
    """The matrices as scikit-learn reads label sets. One label: it reads a single column as binary targets (its
    micro-F1 would count the agreed negatives, and "per label" would be the classes 0 and 1). A column that no
    article has and none is predicted keeps it a label-indicator matrix and changes no figure: it adds no TP, FP
    or FN, no label with support, and leaves every article's label set as it was."""
    if matrices[0].shape[1] != 1:
        return matrices
    return tuple(np.hstack([m, np.zeros_like(m[:, :1])]) for m in matrices)


def micro_f1_counts(gold: np.ndarray, pred: np.ndarray) -> float:
    """Micro-F1 from counts, for hot loops (threshold search) where calling scikit-learn 90 times is slow."""
    tp = np.logical_and(gold, pred).sum()
    fp = np.logical_and(~gold, pred).sum()
    fn = np.logical_and(gold, ~pred).sum()
    return float(f1_from_counts(tp, fp, fn))


def f1_from_counts(tp, fp, fn):
    """2TP / (2TP + FP + FN), 0 where nothing was predicted or expected; scalars or arrays alike."""
    return 2 * tp / np.maximum(1, 2 * tp + fp + fn)


def frequency_group_scores(per_label: list[dict[str, Any]], train_positives: dict[str, float]) -> dict[str, Any]:
    """Micro- and macro-F1 within the head / medium / tail labels, grouped by training frequency.

    Macro is over the group's labels with gold support in the evaluated data (as for the overall macro).
    A group with nothing to score (no labels, or no gold and no predicted positives) has null F1, not 0.0:
    an empty tail is no evidence of a bad tail.
    """
    groups: dict[str, dict[str, Any]] = {}
    for name in ("head", "medium", "tail"):
        rows = [r for r in per_label if frequency_group(train_positives.get(r["label"], 0.0)) == name]
        tp = sum(r["true_positives"] for r in rows)
        fp = sum(r["predicted"] - r["true_positives"] for r in rows)
        fn = sum(r["support"] - r["true_positives"] for r in rows)
        supported = [r["f1"] for r in rows if r["support"] > 0]
        groups[name] = {
            "labels": len(rows),
            "micro_f1": float(f1_from_counts(tp, fp, fn)) if tp + fp + fn > 0 else None,
            "macro_f1": float(np.mean(supported)) if supported else None,
        }
    return groups
