"""Decision rules: scores -> label sets. Tuned on validation at the end of training, saved in the run.

Rules:
- fixed:     one given cut-off for every label;
- global:    one cut-off, the one that maximises validation micro-F1;
- per_label: each label's own cut-off, the one that maximises its validation F1, for labels with at
             least `min_positives` validation positives; the others fall back to the tuned global one
             (a threshold tuned on one or two examples is noise);
- top_k:     the k highest-scoring labels of every article.
`min_labels: 1` adds "at least one label": an article left empty gets its highest-scoring label.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mlcls.errors import MlclsError, RunDirError
from mlcls.evaluation.metrics import f1_from_counts, gold_matrix

GRID = np.round(np.arange(0.02, 0.981, 0.01), 2)
RULES = ("per_label", "global", "fixed", "top_k")


@dataclass
class DecisionRule:
    rule: str
    threshold: float  # the global cut-off: the fixed one, the tuned one, or the per-label fallback
    per_label: dict[str, float] = field(default_factory=dict)  # per_label rule: label -> cut-off
    top_k: int = 1
    min_labels: int = 0
    tuned_on: str | None = None  # "validation", or None when nothing was tuned
    fallback_labels: list[str] = field(default_factory=list)  # per_label: labels that use `threshold`

    def cutoffs(self, labels: list[str]) -> np.ndarray:
        return np.array([self.per_label.get(name, self.threshold) for name in labels], dtype=np.float32)

    def apply(self, probs: np.ndarray, labels: list[str]) -> np.ndarray:
        if self.rule == "top_k":
            k = min(self.top_k, probs.shape[1])
            chosen = np.zeros(probs.shape, dtype=bool)
            top = np.argpartition(-probs, k - 1, axis=1)[:, :k]
            np.put_along_axis(chosen, top, True, axis=1)
        elif self.rule == "per_label":
            chosen = probs >= self.cutoffs(labels)
        else:
            chosen = probs >= self.threshold
        if self.min_labels > 0:
            empty = ~chosen.any(axis=1)
            chosen[empty, np.argmax(probs[empty], axis=1)] = True
        return chosen

    def describe(self) -> str:
        extra = " + at least one label" if self.min_labels else ""
        if self.rule == "top_k":
            return f"top-{self.top_k}{extra}"
        if self.rule == "per_label":
            tuned = len(self.per_label) - len(self.fallback_labels)
            return f"per-label ({tuned} tuned, {len(self.fallback_labels)} at the global {self.threshold:.2f}){extra}"
        return f"{self.rule} {self.threshold:.2f}{extra}"

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path) -> DecisionRule:
        try:
            rule = cls(**json.loads(path.read_text()))
        except (ValueError, TypeError) as exc:
            raise RunDirError(f"{path}: not a valid decision rule ({exc})") from None
        if rule.rule not in RULES:
            raise RunDirError(f"{path}: unknown rule {rule.rule!r}")
        return rule


def f1_per_threshold(probs: np.ndarray, gold: np.ndarray, annotated: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(micro-F1 per grid cut-off, F1 per cut-off and label), from counts: 97 cut-offs x every label at
    once, where calling scikit-learn per cut-off and label would take minutes on 90 labels."""
    tp = np.zeros((len(GRID), probs.shape[1]))
    fp, fn = np.zeros_like(tp), np.zeros_like(tp)
    for i, cut in enumerate(GRID):  # a loop, not a (cut-offs, records, labels) array: memory stays O(records)
        pred = (probs >= cut) & annotated
        tp[i], fp[i], fn[i] = (pred & gold).sum(0), (pred & ~gold).sum(0), (~pred & gold).sum(0)
    return f1_from_counts(tp.sum(1), fp.sum(1), fn.sum(1)), f1_from_counts(tp, fp, fn)


def _best(scores: np.ndarray, prefer: float) -> int:
    """Index of the best score; ties go to the cut-off nearest `prefer`."""
    best = np.flatnonzero(scores >= scores.max() - 1e-12)
    return int(best[np.argmin(np.abs(GRID[best] - prefer))])


def tune(probs: np.ndarray, targets: np.ndarray, mask: np.ndarray, labels: list[str], rule: str = "per_label",
         default: float = 0.5, min_positives: int = 3, top_k: int = 1, min_labels: int = 0) -> DecisionRule:
    """The decision rule of `rule`, tuned on validation scores (never on test)."""
    if rule == "fixed":
        return DecisionRule("fixed", default, min_labels=min_labels)
    if rule == "top_k":
        return DecisionRule("top_k", default, top_k=top_k, min_labels=min_labels)
    gold = gold_matrix(targets, mask).astype(bool)
    annotated = mask > 0
    micro, per_label_f1 = f1_per_threshold(probs, gold, annotated)
    global_cut = float(GRID[_best(micro, 0.5)])
    if rule == "global":
        return DecisionRule("global", global_cut, min_labels=min_labels, tuned_on="validation")
    cutoffs, fallback = {}, []
    positives = gold.sum(axis=0)
    for j, name in enumerate(labels):
        if positives[j] >= min_positives:
            cutoffs[name] = float(GRID[_best(per_label_f1[:, j], global_cut)])
        else:
            cutoffs[name] = global_cut
            fallback.append(name)
    return DecisionRule("per_label", global_cut, cutoffs, min_labels=min_labels, tuned_on="validation",
                        fallback_labels=fallback)


def with_overrides(rule: DecisionRule, threshold: float | None = None, top_k: int | None = None,
                   min_labels: int | None = None) -> DecisionRule:
    """The run's rule, changed by `eval`/`predict` options: --threshold (a fixed cut-off), --top-k, --min-labels."""
    if threshold is not None and top_k is not None:
        raise MlclsError("--threshold and --top-k are two different rules: give one of them")
    if threshold is not None:
        rule = DecisionRule("fixed", threshold, min_labels=rule.min_labels)
    elif top_k is not None:
        rule = DecisionRule("top_k", rule.threshold, top_k=top_k, min_labels=rule.min_labels)
    if min_labels is not None:
        rule = DecisionRule(**{**asdict(rule), "min_labels": min_labels})
    return rule
