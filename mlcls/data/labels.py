"""The label vocabulary, records <-> (targets, mask) matrices, and training label statistics.

No torch here: `mlcls eval` reads label statistics to group labels by frequency.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlcls.data.records import Record


@dataclass
class Encoded:
    """Targets in [0, 1] and the annotation mask, both (records, labels) float32."""

    targets: np.ndarray
    mask: np.ndarray
    unknown_labels: Counter = field(default_factory=Counter)  # label -> records naming it, not in vocab


class LabelSpace:
    """The label vocabulary (sorted, from the training data) and the record <-> matrix conversions."""

    def __init__(self, labels: Iterable[str]):
        self.labels: list[str] = list(labels)
        self.index = {label: i for i, label in enumerate(self.labels)}
        if len(self.index) != len(self.labels):
            raise ValueError("duplicate labels in the label space")

    def __len__(self) -> int:
        return len(self.labels)

    @classmethod
    def from_records(cls, records: Iterable[Record]) -> LabelSpace:
        names: set[str] = set()
        for record in records:
            names.update(record.labels or {})
        return cls(sorted(names))

    def encode(self, records: list[Record]) -> Encoded:
        targets = np.zeros((len(records), len(self)), dtype=np.float32)
        mask = np.ones((len(records), len(self)), dtype=np.float32)
        unknown: Counter = Counter()
        for row, record in enumerate(records):
            for name, conf in (record.labels or {}).items():
                col = self.index.get(name)
                if col is None:
                    unknown[name] += 1
                elif conf is None:
                    mask[row, col] = 0.0
                else:
                    targets[row, col] = conf
        return Encoded(targets, mask, unknown)

    def decode(self, row: np.ndarray) -> list[str]:
        return [self.labels[i] for i in np.flatnonzero(row)]

    def to_dict(self) -> dict[str, Any]:
        return {"labels": self.labels}

    @classmethod
    def from_dict(cls, raw: Any) -> LabelSpace:
        """to_dict's inverse (labels.json): a non-empty list of distinct names; ValueError names the field."""
        if not isinstance(raw, dict):
            raise ValueError(f"expected a JSON object {{\"labels\": [names]}}, got {shown(raw)}")
        labels = raw.get("labels")
        if not isinstance(labels, list) or not labels:
            raise ValueError(f"field labels: expected a non-empty list of label names, got {shown(labels)}")
        seen: set[str] = set()
        for i, name in enumerate(labels):
            if not isinstance(name, str):
                raise ValueError(f"field labels[{i}]: expected a label name (a string), got {shown(name)}")
            if name in seen:
                raise ValueError(f"field labels[{i}]: {shown(name)} is listed twice")
            seen.add(name)
        return cls(labels)



def carried(targets: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Where an article carries a label: annotated at a confidence of 0.5 or more (how `mlcls data stats`, the
    metrics and LabelStats.articles count a soft label)."""
    return (targets >= 0.5) & (mask > 0)


@dataclass
class LabelStats:
    """Training-set label statistics that losses (and later, reports) need; saved with the run."""

    labels: list[str]
    positives: np.ndarray  # per label, count of positive annotated entries (soft targets count fractionally)
    annotated: np.ndarray  # per label, count of annotated entries
    num_records: int
    # per label, the articles that carry it: annotated at a confidence of 0.5 or more, as `mlcls data stats` and the
    # metrics count a soft label (None: a run saved before this count, whose positives stand in)
    articles: np.ndarray | None = None

    @classmethod
    def from_encoded(cls, labels: list[str], targets: np.ndarray, mask: np.ndarray) -> LabelStats:
        return cls(
            labels=list(labels),
            positives=(targets * mask).sum(axis=0).astype(np.float64),
            annotated=mask.sum(axis=0).astype(np.float64),
            num_records=int(targets.shape[0]),
            articles=carried(targets, mask).sum(axis=0).astype(np.float64),
        )

    def article_counts(self) -> np.ndarray:
        """Training articles per label (a soft label from 0.5 up): what head / medium / tail groups and the
        most-frequent-label baseline are drawn from. The losses and priors use `positives`, confidences summed."""
        return self.articles if self.articles is not None else self.positives

    def counts(self) -> dict[str, float]:
        """Training articles per label name (article_counts)."""
        return dict(zip(self.labels, self.article_counts().tolist(), strict=True))

    def prior(self) -> np.ndarray:
        """Per-label share of positives among annotated entries, kept away from 0 and 1."""
        p = (self.positives + 0.5) / (self.annotated + 1.0)
        return np.clip(p, 1e-4, 1 - 1e-4)

    def to_dict(self) -> dict[str, Any]:
        return {
            "num_records": self.num_records,
            "labels": {
                name: {"positives": float(p), "annotated": float(a), "articles": float(n)}
                for name, p, a, n in zip(self.labels, self.positives, self.annotated, self.article_counts(),
                                         strict=True)
            },
        }

    @classmethod
    def from_dict(cls, raw: Any) -> LabelStats:
        """to_dict's inverse (label_stats.json: mlcls/run/files.py reads and writes it). ValueError names the field
        that is missing or of the wrong type (files.py names the file)."""
        if not isinstance(raw, dict):
            raise ValueError(f"expected a JSON object, got {shown(raw)}")
        num_records = raw.get("num_records")
        if not is_int(num_records) or num_records < 0:
            raise ValueError(f"field num_records: expected an integer >= 0, got {shown(num_records)}")
        per_label = raw.get("labels")
        if not isinstance(per_label, dict):
            raise ValueError(f"field labels: expected an object of label -> counts, got {shown(per_label)}")
        counts: dict[str, list[float]] = {"positives": [], "annotated": []}
        articles: list[float | None] = []
        for name, entry in per_label.items():
            where = f"field labels.{field_name(name)}"
            if not isinstance(entry, dict):
                raise ValueError(f"{where}: expected an object with positives and annotated, got {shown(entry)}")
            for key, values in counts.items():
                value = entry.get(key)
                if not is_number(value) or value < 0:
                    raise ValueError(f"{where}.{key}: expected a number >= 0, got {shown(value)}")
                values.append(float(value))
            value = entry.get("articles")  # absent from runs saved before it was counted
            if value is not None and (not is_number(value) or value < 0):
                raise ValueError(f"{where}.articles: expected a number >= 0, got {shown(value)}")
            articles.append(value)
        known = bool(articles) and all(value is not None for value in articles)
        return cls(labels=list(per_label), positives=np.array(counts["positives"], dtype=np.float64),
                   annotated=np.array(counts["annotated"], dtype=np.float64), num_records=num_records,
                   articles=np.array(articles, dtype=np.float64) if known else None)


# ------------------------------------------------------------------------------------------ checking JSON fields
# What the readers of a run's small files (LabelStats.from_dict, DecisionRule.from_dict, mlcls/run/files.py) use
# to say which field of a hand-edited file is wrong, in one line.


def is_number(value: Any) -> bool:
    """A finite JSON number (true and false are not numbers, though Python counts them as ints; NaN, Infinity and
    an integer too large for a float are no counts or cut-offs either)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def shown(value: Any, width: int = 60) -> str:
    """A value as JSON spells it, on one line and cut to about `width` characters: `got "3"`, `got null`."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):  # not JSON, or an integer too long to print
        text = f"a {type(value).__name__}"
    for char in ("\x85", "\u2028", "\u2029"):  # line breaks to str.splitlines that JSON leaves as they are
        text = text.replace(char, f"\\u{ord(char):04x}")
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")  # a lone surrogate would not print
    return text if len(text) <= width else f"{text[: width - 3]}..."


def field_name(key: str) -> str:
    """A key (a label's name) as part of a field's name in a message: as it is, or quoted when it would not read
    as one word on one line."""
    return key if key and key.isprintable() and " " not in key and len(key) <= 40 else shown(key, 40)


def label_repr(name: str) -> str:
    """A label's name in a message: Python's repr ('oil'), which escapes line breaks, cut to about 40 characters."""
    text = repr(name)
    return text if len(text) <= 40 else f"{text[:37]}..."
