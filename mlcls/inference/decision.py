"""Decision rules: scores -> label sets. Tuned on validation at the end of training, saved in the run.

Rules:
- fixed:     one given cut-off for every label;
- global:    one cut-off, the one that maximises validation micro-F1;
- per_label: each label's own cut-off, the one that maximises its validation F1, for labels with at
             least `min_positives` validation positives; the others fall back to the tuned global one
             (a threshold tuned on one or two examples is noise);
- top_k:     the k highest-scoring labels of every article;
- prior_quantile: each label fires on about as many articles as it occurs in training: its cut-off is the
             (1 - q) quantile of its validation scores, q = min(1, quantile_scale * training positive rate);
             needs no validation positives, so it serves rare labels that F1 tuning cannot;
- hybrid:    per_label's F1-optimal cut-off for labels with at least `min_positives` validation positives,
             the prior_quantile cut-off (instead of the global one) for the others.
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
RULES = ("per_label", "global", "fixed", "top_k", "prior_quantile", "hybrid")
# rule: auto chooses among these by their F1 on tuning rows they were not tuned on (held_out_f1).
AUTO_CANDIDATES = ("global", "per_label", "hybrid", "prior_quantile")
PER_LABEL_RULES = ("per_label", "prior_quantile", "hybrid")  # rules that keep a cut-off per label
# prior_quantile cut-offs are kept inside this range: a cut-off of 0 (a label as frequent as every article)
# would fire on every article, and one of 1 on none, whatever the model says.
QUANTILE_CUT_RANGE = (0.01, 0.99)


@dataclass
class DecisionRule:
    rule: str
    threshold: float  # the global cut-off: the fixed one, the tuned one, or the per-label fallback
    per_label: dict[str, float] = field(default_factory=dict)  # per-label rules: label -> cut-off
    top_k: int = 1
    min_labels: int = 0
    tuned_on: str | None = None  # "validation", or None when nothing was tuned
    # per_label / prior_quantile: labels that use `threshold`; hybrid: labels that use the prior-quantile cut-off
    fallback_labels: list[str] = field(default_factory=list)
    # rule auto: each candidate's held-out mean of micro- and macro-F1 (the rule above is the best of them)
    auto_scores: dict[str, float] | None = None
    quantile_scale: float = 1.0  # prior_quantile / hybrid: multiplier on the training positive rate

    def cutoffs(self, labels: list[str]) -> np.ndarray:
        return np.array([self.per_label.get(name, self.threshold) for name in labels], dtype=np.float32)

    def apply(self, probs: np.ndarray, labels: list[str]) -> np.ndarray:
        if self.rule == "top_k":
            k = min(self.top_k, probs.shape[1])
            chosen = np.zeros(probs.shape, dtype=bool)
            top = np.argpartition(-probs, k - 1, axis=1)[:, :k]
            np.put_along_axis(chosen, top, True, axis=1)
        elif self.rule in PER_LABEL_RULES:
            chosen = probs >= self.cutoffs(labels)
        else:
            chosen = probs >= self.threshold
        if self.min_labels > 0:
            empty = ~chosen.any(axis=1)
            chosen[empty, np.argmax(probs[empty], axis=1)] = True
        return chosen

    def describe(self) -> str:
        if self.auto_scores:
            tried = ", ".join(f"{name} {100 * score:.1f}" for name, score in self.auto_scores.items())
            return f"auto: {self._describe()} (held-out mean F1: {tried})"
        return self._describe()

    def _describe(self) -> str:
        extra = " + at least one label" if self.min_labels else ""
        if self.rule == "top_k":
            return f"top-{self.top_k}{extra}"
        if self.rule == "per_label":
            tuned = len(self.per_label) - len(self.fallback_labels)
            return f"per-label ({tuned} tuned, {len(self.fallback_labels)} at the global {self.threshold:.2f}){extra}"
        if self.rule == "prior_quantile":
            unscored = len(self.fallback_labels)
            fallback = f", {unscored} at the global {self.threshold:.2f}" if unscored else ""
            quantile = len(self.per_label) - len(self.fallback_labels)
            return f"prior-quantile x{float(self.quantile_scale)} ({quantile} labels{fallback}){extra}"
        if self.rule == "hybrid":
            tuned = len(self.per_label) - len(self.fallback_labels)
            scale = f" x{float(self.quantile_scale)}" if self.quantile_scale != 1.0 else ""
            return f"hybrid ({tuned} F1-tuned, {len(self.fallback_labels)} prior-quantile{scale}){extra}"
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


def prior_quantile_cutoffs(probs: np.ndarray, annotated: np.ndarray, priors: np.ndarray,
                           scale: float = 1.0) -> np.ndarray:
    """Per label, the (1 - q) quantile of its scores on its annotated rows, q = min(1, scale * prior), clipped
    into QUANTILE_CUT_RANGE; NaN for a label with no annotated row (no scores to take a quantile of).
    Plain numpy: scikit-learn has no rule that matches predicted rates to label frequencies."""
    q = np.minimum(1.0, scale * priors)
    cuts = np.full(probs.shape[1], np.nan)
    for j in range(probs.shape[1]):
        scores = probs[annotated[:, j], j]
        if scores.size:
            cuts[j] = np.quantile(scores.astype(np.float64), 1.0 - q[j], method="linear")
    return np.clip(cuts, *QUANTILE_CUT_RANGE)  # NaN stays NaN


def _check_priors(priors: np.ndarray | None, scale: float, labels: list[str], rule: str) -> np.ndarray:
    if priors is None:
        raise MlclsError(f"the {rule} rule needs the training label frequencies (priors), and none were given")
    priors = np.asarray(priors, dtype=np.float64)
    if priors.shape != (len(labels),):
        raise MlclsError(f"the {rule} rule needs one training frequency per label: got shape {priors.shape} "
                         f"for {len(labels)} labels")
    if not np.all((priors >= 0) & (priors <= 1)):
        raise MlclsError(f"the {rule} rule needs training label frequencies between 0 and 1")
    if not scale > 0:  # `not >` also catches NaN
        raise MlclsError(f"the {rule} rule needs a quantile scale above 0, got {scale}")
    return priors


def tune(probs: np.ndarray, targets: np.ndarray, mask: np.ndarray, labels: list[str], rule: str = "per_label",
         default: float = 0.5, min_positives: int = 3, top_k: int = 1, min_labels: int = 0,
         priors: np.ndarray | None = None, quantile_scale: float = 1.0) -> DecisionRule:
    """The decision rule of `rule`, tuned on validation scores (never on test). `priors`: each label's positive
    rate in training (LabelStats.prior()), needed by prior_quantile and hybrid."""
    if rule not in RULES:  # the rule name is saved with the run, and load() refuses unknown ones
        raise MlclsError(f"unknown decision rule {rule!r} (one of: {', '.join(RULES)})")
    if rule in ("prior_quantile", "hybrid"):  # checked first: a missing input should fail before any work
        priors = _check_priors(priors, quantile_scale, labels, rule)
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
    if rule in ("prior_quantile", "hybrid"):
        quantile_cuts = prior_quantile_cutoffs(probs, annotated, priors, quantile_scale)
    cutoffs, fallback = {}, []
    positives = gold.sum(axis=0)
    for j, name in enumerate(labels):
        if rule != "prior_quantile" and positives[j] >= min_positives:
            cutoffs[name] = float(GRID[_best(per_label_f1[:, j], global_cut)])
            continue
        if rule == "per_label":
            cutoffs[name] = global_cut
            fallback.append(name)
            continue
        # A label never annotated in the tuning scores has no quantile: it takes the global cut-off. In hybrid
        # it still counts among the fallback labels (it was not F1-tuned); in prior_quantile it is the fallback.
        cut = quantile_cuts[j]
        cutoffs[name] = global_cut if np.isnan(cut) else float(cut)
        if rule == "hybrid" or np.isnan(cut):
            fallback.append(name)
    return DecisionRule(rule, global_cut, cutoffs, min_labels=min_labels, tuned_on="validation",
                        fallback_labels=fallback, quantile_scale=quantile_scale if rule != "per_label" else 1.0)


def tune_rule(probs: np.ndarray, targets: np.ndarray, mask: np.ndarray, labels: list[str], rule: str = "per_label",
              default: float = 0.5, min_positives: int = 3, top_k: int = 1, min_labels: int = 0,
              priors: np.ndarray | None = None, quantile_scale: float = 1.0, seed: int = 0) -> DecisionRule:
    """`tune`, and for rule "auto" the candidate (AUTO_CANDIDATES) with the best held-out mean of micro- and
    macro-F1, tuned on all rows. Why held out: scored on the rows it was tuned on, a rule with a cut-off per
    label always looks best (each cut-off fits its few positives), and prior_quantile, which fits nearly
    nothing, always looks worst; on new articles that order can turn round (the rare topics)."""
    if rule != "auto":
        return tune(probs, targets, mask, labels, rule, default, min_positives, top_k, min_labels, priors,
                    quantile_scale)
    scores = {}
    for candidate in AUTO_CANDIDATES:
        def make(p, t, m, candidate=candidate):
            return tune(p, t, m, labels, candidate, default, min_positives, top_k, min_labels, priors, quantile_scale)

        f1 = held_out_f1(probs, targets, mask, labels, make, seed=seed)
        scores[candidate] = round((f1["micro_f1"] + f1["macro_f1"]) / 2, 6)
    best = max(AUTO_CANDIDATES, key=lambda c: scores[c])  # ties: the earlier, simpler candidate
    chosen = tune(probs, targets, mask, labels, best, default, min_positives, top_k, min_labels, priors,
                  quantile_scale)
    chosen.auto_scores = scores
    return chosen


def held_out_f1(probs: np.ndarray, targets: np.ndarray, mask: np.ndarray, labels: list[str],
                make_rule, folds: int = 5, seed: int = 0) -> dict[str, float]:
    """Micro- and macro-F1 of a rule on rows it was not tuned on: the rows split in `folds` stratified parts,
    the rule tuned on the others and applied to each part in turn, the decisions pooled."""
    from mlcls.data.stratify import iterative_stratification
    from mlcls.evaluation.metrics import compute_metrics

    gold = gold_matrix(targets, mask)
    part = iterative_stratification(gold, [1.0 / folds] * folds, seed)
    predicted = np.zeros(probs.shape, dtype=bool)
    for k in range(folds):
        held = part == k
        if not held.any():
            continue
        rule = make_rule(probs[~held], targets[~held], mask[~held])
        predicted[held] = rule.apply(probs[held], labels)
    metrics = compute_metrics(targets, mask, predicted, labels)
    return {"micro_f1": metrics["micro_f1"], "macro_f1": metrics["macro_f1"]}


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
