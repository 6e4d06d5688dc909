"""Tuning a decision rule on scores (validation, or out-of-fold): what training, lexical fusion and the
offline benchmarks share. The rules themselves are in rules.py."""

from __future__ import annotations

import numpy as np

from mlcls.config import Config
from mlcls.data.stratify import iterative_stratification
from mlcls.decision.metrics import compute_metrics, f1_from_counts, gold_matrix
from mlcls.decision.rules import RULES, DecisionRule
from mlcls.errors import MlclsError

GRID = np.round(np.arange(0.02, 0.981, 0.01), 2)
# rule: auto chooses among these by their F1 on tuning rows they were not tuned on (held_out_f1).
AUTO_CANDIDATES = ("global", "per_label", "hybrid", "prior_quantile")
# threshold.quantile_scale: auto tries these (each about 1.4x the one before) and keeps the one whose rule has
# the best held-out F1. On Reuters' CPU default (3 seeds' validation scores) the held-out mean of micro- and
# macro-F1 peaked at 0.35-0.5; on test the same runs moved by +0.19 micro / -0.36 macro-F1, within noise: 1-2
# validation articles per quantile topic are too few to choose on (docs/benchmarks.md, "Long texts").
SCALE_GRID = (0.25, 0.35, 0.5, 0.7, 1.0, 1.4, 2.0)
QUANTILE_RULES = ("prior_quantile", "hybrid")  # the rules that read quantile_scale
# prior_quantile cut-offs are kept inside this range: a cut-off of 0 (a label as frequent as every article)
# would fire on every article, and one of 1 on none, whatever the model says.
QUANTILE_CUT_RANGE = (0.01, 0.99)


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
    return tune_at_scales(probs, targets, mask, labels, rule, default, min_positives, top_k, min_labels, priors,
                          (quantile_scale,))[0]


def tune_at_scales(probs: np.ndarray, targets: np.ndarray, mask: np.ndarray, labels: list[str], rule: str,
                   default: float, min_positives: int, top_k: int, min_labels: int, priors: np.ndarray | None,
                   scales: tuple[float, ...]) -> list[DecisionRule]:
    """`tune`'s rule at each quantile scale of `scales` (a rule that reads no scale: the same rule each time).
    The F1 counts over the cut-off grid, the costly part, are computed once for them all."""
    if rule not in RULES:  # the rule name is saved with the run, and load() refuses unknown ones
        raise MlclsError(f"unknown decision rule {rule!r} (one of: {', '.join(RULES)})")
    if rule in QUANTILE_RULES:  # checked first: a missing input should fail before any work
        for scale in scales:
            priors = _check_priors(priors, scale, labels, rule)
    if rule == "fixed":
        return [DecisionRule("fixed", default, min_labels=min_labels) for _ in scales]
    if rule == "top_k":
        return [DecisionRule("top_k", default, top_k=top_k, min_labels=min_labels) for _ in scales]
    gold = gold_matrix(targets, mask).astype(bool)
    annotated = mask > 0
    micro, per_label_f1 = f1_per_threshold(probs, gold, annotated)
    global_cut = float(GRID[_best(micro, 0.5)])
    if rule == "global":
        return [DecisionRule("global", global_cut, min_labels=min_labels, tuned_on="validation") for _ in scales]
    positives = gold.sum(axis=0)
    f1_tuned = {j: float(GRID[_best(per_label_f1[:, j], global_cut)]) for j in range(len(labels))
                if rule != "prior_quantile" and positives[j] >= min_positives}
    rules = []
    for scale in scales:
        if rule in QUANTILE_RULES:
            quantile_cuts = prior_quantile_cutoffs(probs, annotated, priors, scale)
        cutoffs, fallback = {}, []
        for j, name in enumerate(labels):
            if j in f1_tuned:
                cutoffs[name] = f1_tuned[j]
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
        rules.append(DecisionRule(rule, global_cut, cutoffs, min_labels=min_labels, tuned_on="validation",
                                  fallback_labels=fallback, quantile_scale=scale if rule != "per_label" else 1.0))
    return rules


def tune_rule(probs: np.ndarray, targets: np.ndarray, mask: np.ndarray, labels: list[str], rule: str = "per_label",
              default: float = 0.5, min_positives: int = 3, top_k: int = 1, min_labels: int = 0,
              priors: np.ndarray | None = None, quantile_scale: float | str = 1.0, seed: int = 0) -> DecisionRule:
    """`tune`, and for rule "auto" the candidate (AUTO_CANDIDATES) with the best held-out mean of micro- and
    macro-F1, tuned on all rows. Why held out: scored on the rows it was tuned on, a rule with a cut-off per
    label always looks best (each cut-off fits its few positives), and prior_quantile, which fits nearly
    nothing, always looks worst; on new articles that order can turn round (the rare topics).
    quantile_scale "auto": prior_quantile and hybrid take the SCALE_GRID value with the best held-out mean F1
    (scale_search); under rule auto that search runs inside each fold, so their scores stay held out too."""

    def make(candidate: str):
        def rule_of(p, t, m):
            if candidate in QUANTILE_RULES and quantile_scale == "auto":
                return scale_search(p, t, m, labels, candidate, min_positives, min_labels, priors, seed)
            scale = 1.0 if quantile_scale == "auto" else quantile_scale
            return tune(p, t, m, labels, candidate, default, min_positives, top_k, min_labels, priors, scale)
        return rule_of

    if rule != "auto":
        return make(rule)(probs, targets, mask)
    if quantile_scale == "auto":  # a missing input fails before the search
        _check_priors(priors, 1.0, labels, "auto")
    scores = {}
    for candidate in AUTO_CANDIDATES:
        f1 = held_out_f1(probs, targets, mask, labels, make(candidate), seed=seed)
        scores[candidate] = _mean_f1(f1)
    best = max(AUTO_CANDIDATES, key=lambda c: scores[c])  # ties: the earlier, simpler candidate
    chosen = make(best)(probs, targets, mask)
    chosen.auto_scores = scores
    return chosen


def scale_search(probs: np.ndarray, targets: np.ndarray, mask: np.ndarray, labels: list[str], rule: str,
                 min_positives: int, min_labels: int, priors: np.ndarray | None, seed: int = 0) -> DecisionRule:
    """quantile_scale auto: the prior_quantile or hybrid rule at the SCALE_GRID scale with the best held-out mean
    of micro- and macro-F1 (ties: the scale nearest 1), tuned on all rows; `scale_scores` keeps each scale's
    score. A hybrid rule that leaves no label to the quantile has nothing to search: it is tuned at scale 1."""
    at_scales = tune_at_scales(probs, targets, mask, labels, rule, 0.5, min_positives, 1, min_labels, priors,
                               SCALE_GRID)
    if rule == "hybrid" and not at_scales[0].fallback_labels:
        return at_scales[SCALE_GRID.index(1.0)]

    def rules_of(p, t, m):
        return tune_at_scales(p, t, m, labels, rule, 0.5, min_positives, 1, min_labels, priors, SCALE_GRID)

    f1s = held_out_f1s(probs, targets, mask, labels, rules_of, seed=seed)
    tried = {scale: _mean_f1(f1) for scale, f1 in zip(SCALE_GRID, f1s, strict=True)}
    best = max(tried.values())
    scale = min((s for s in SCALE_GRID if tried[s] >= best - 1e-12), key=lambda s: abs(np.log(s)))
    chosen = at_scales[SCALE_GRID.index(scale)]
    chosen.scale_scores = {f"{s:g}": score for s, score in tried.items()}
    return chosen


def _mean_f1(f1: dict[str, float]) -> float:
    """What rule auto and quantile_scale auto rank by: the mean of micro- and macro-F1, rounded so that rules
    equal but for float noise tie (and the earlier, simpler one wins)."""
    return round((f1["micro_f1"] + f1["macro_f1"]) / 2, 6)


def held_out_f1(probs: np.ndarray, targets: np.ndarray, mask: np.ndarray, labels: list[str],
                make_rule, folds: int = 5, seed: int = 0) -> dict[str, float]:
    """Micro- and macro-F1 of a rule on rows it was not tuned on: the rows split in `folds` stratified parts,
    the rule tuned on the others and applied to each part in turn, the decisions pooled."""
    return held_out_f1s(probs, targets, mask, labels, lambda p, t, m: [make_rule(p, t, m)], folds, seed)[0]


def held_out_f1s(probs: np.ndarray, targets: np.ndarray, mask: np.ndarray, labels: list[str],
                 make_rules, folds: int = 5, seed: int = 0) -> list[dict[str, float]]:
    """held_out_f1 of several rules at once, tuned on the same folds: `make_rules` gives them as a list."""
    gold = gold_matrix(targets, mask)
    part = iterative_stratification(gold, [1.0 / folds] * folds, seed)
    predicted: list[np.ndarray] = []
    for k in range(folds):
        held = part == k
        if not held.any():
            continue
        rules = make_rules(probs[~held], targets[~held], mask[~held])
        predicted = predicted or [np.zeros(probs.shape, dtype=bool) for _ in rules]
        for decisions, rule in zip(predicted, rules, strict=True):
            decisions[held] = rule.apply(probs[held], labels)
    if not predicted:  # no rows to hold out: each rule decides nothing
        predicted = [np.zeros(probs.shape, dtype=bool) for _ in make_rules(probs, targets, mask)]
    scores = []
    for decisions in predicted:
        metrics = compute_metrics(targets, mask, decisions, labels)
        scores.append({"micro_f1": metrics["micro_f1"], "macro_f1": metrics["macro_f1"]})
    return scores


def choose_thresholds(config: Config, probs, targets, mask, labels: list[str], priors: np.ndarray) -> DecisionRule:
    """The configured rule tuned on these scores; `priors`: each label's training rate (prior_quantile, hybrid)."""
    t = config.threshold
    return tune_rule(probs, targets, mask, labels, t.rule, t.default, t.min_positives, t.top_k, t.min_labels,
                     priors=priors, quantile_scale=t.quantile_scale, seed=config.train.seed)


def untuned_rule(config: Config) -> DecisionRule:
    """With no validation data nothing can be tuned: top_k stays top_k, anything else is the fixed cut-off."""
    t = config.threshold
    rule = "top_k" if t.rule == "top_k" else "fixed"
    return DecisionRule(rule, t.default, top_k=t.top_k, min_labels=t.min_labels)
