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

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from mlcls.data.labels import is_int, is_number, label_repr, shown
from mlcls.errors import MlclsError

RULES = ("per_label", "global", "fixed", "top_k", "prior_quantile", "hybrid")
PER_LABEL_RULES = ("per_label", "prior_quantile", "hybrid")  # rules that keep a cut-off per label


@dataclass
class DecisionRule:
    """How scores become label sets (thresholds.json): the rule's kind, its global cut-off, per-label cut-offs
    where tuned, and top_k / min_labels. `apply(scores, labels)` gives the boolean decisions."""

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
    # quantile_scale auto: each scale tried and its held-out mean of micro- and macro-F1 (the scale above won)
    scale_scores: dict[str, float] | None = None

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
            return (f"prior-quantile x{float(self.quantile_scale)}{self._scale_search()} ({quantile} labels"
                    f"{fallback}){extra}")
        if self.rule == "hybrid":
            tuned = len(self.per_label) - len(self.fallback_labels)
            searched = self.scale_scores and self.fallback_labels
            scale = f" x{float(self.quantile_scale)}" if self.quantile_scale != 1.0 or searched else ""
            return (f"hybrid ({tuned} F1-tuned, {len(self.fallback_labels)} prior-quantile{scale}"
                    f"{self._scale_search() if searched else ''}){extra}")
        return f"{self.rule} {self.threshold:.2f}{extra}"

    def _scale_search(self) -> str:
        if not self.scale_scores:
            return ""
        tried = [float(scale) for scale in self.scale_scores]  # from_dict checked that each is a number
        return f", the best held-out of {min(tried):g}-{max(tried):g}"

    def to_dict(self) -> dict[str, Any]:
        saved = asdict(self)
        if saved["scale_scores"] is None:  # left out: an mlcls from before quantile_scale auto reads the file
            del saved["scale_scores"]
        return saved

    @classmethod
    def from_dict(cls, raw: Any) -> DecisionRule:
        """The rule a thresholds.json holds, each field type-checked; ValueError names the field and what is wrong
        with it, in one line (run/files.py names the file). Fields left out take their defaults, but for `rule`
        and `threshold`."""
        if not isinstance(raw, dict):
            raise ValueError(f"expected a JSON object, got {shown(raw)}")
        for name in raw:
            if name not in _FIELDS:
                raise ValueError(f"unknown field {shown(name)} (the fields: {', '.join(_FIELDS)})")
        for name in ("rule", "threshold"):
            if name not in raw:
                raise ValueError(f"field {name}: missing")
        for name, value in raw.items():
            expected, fits = _FIELDS[name]
            if not fits(value):
                raise ValueError(f"field {name}: expected {expected}, got {shown(value)}")
        for name, cut in raw.get("per_label", {}).items():
            if not _is_cutoff(cut):
                raise ValueError(f"field per_label: the cut-off of {label_repr(name)} is {shown(cut)}, not a number in "
                                 "[0, 1]")
        return cls(**raw)


def _is_cutoff(value: Any) -> bool:
    return is_number(value) and 0.0 <= value <= 1.0


def _is_scale_scores(value: Any) -> bool:
    return value is None or _is_scores(value) and all(_is_scale(name) for name in value)


def _is_scale(text: str) -> bool:
    try:
        return float(text) > 0  # "nan" and "inf" parse, and nan > 0 is False
    except ValueError:
        return False


def _is_names(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(name, str) for name in value)


def _is_scores(value: Any) -> bool:
    return value is None or isinstance(value, dict) and all(is_number(score) for score in value.values())


# thresholds.json's fields: what each holds, and its check (per_label's cut-offs are checked one by one).
_FIELDS = {
    "rule": (f"one of {', '.join(RULES)}", lambda v: isinstance(v, str) and v in RULES),
    "threshold": ("a number in [0, 1]", _is_cutoff),
    "per_label": ("an object of label -> cut-off", lambda v: isinstance(v, dict)),
    "top_k": ("an integer >= 1", lambda v: is_int(v) and v >= 1),
    "min_labels": ("0 or 1 (1: an article left with no label gets its highest-scoring one)",
                   lambda v: is_int(v) and v in (0, 1)),
    "tuned_on": ("a string or null", lambda v: v is None or isinstance(v, str)),
    "fallback_labels": ("a list of label names", _is_names),
    "auto_scores": ("null or an object of rule -> score", _is_scores),
    "quantile_scale": ("a number > 0", lambda v: is_number(v) and v > 0),
    "scale_scores": ("null or an object of scale (a number > 0) -> score", _is_scale_scores),
}


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
