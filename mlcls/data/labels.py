"""The label vocabulary, records <-> (targets, mask) matrices, and training label statistics.

No torch here: `mlcls eval` reads label statistics to group labels by frequency.
"""

from __future__ import annotations

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



@dataclass
class LabelStats:
    """Training-set label statistics that losses (and later, reports) need; saved with the run."""

    labels: list[str]
    positives: np.ndarray  # per label, count of positive annotated entries (soft targets count fractionally)
    annotated: np.ndarray  # per label, count of annotated entries
    num_records: int

    @classmethod
    def from_encoded(cls, labels: list[str], targets: np.ndarray, mask: np.ndarray) -> LabelStats:
        return cls(
            labels=list(labels),
            positives=(targets * mask).sum(axis=0).astype(np.float64),
            annotated=mask.sum(axis=0).astype(np.float64),
            num_records=int(targets.shape[0]),
        )

    def counts(self) -> dict[str, float]:
        """Positives per label name (what head / medium / tail groups are drawn from)."""
        return dict(zip(self.labels, self.positives.tolist(), strict=True))

    def prior(self) -> np.ndarray:
        """Per-label share of positives among annotated entries, kept away from 0 and 1."""
        p = (self.positives + 0.5) / (self.annotated + 1.0)
        return np.clip(p, 1e-4, 1 - 1e-4)

    def to_dict(self) -> dict[str, Any]:
        return {
            "num_records": self.num_records,
            "labels": {
                name: {"positives": float(p), "annotated": float(a)}
                for name, p, a in zip(self.labels, self.positives, self.annotated, strict=True)
            },
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> LabelStats:
        """to_dict's inverse (label_stats.json: mlcls/run/files.py reads and writes it)."""
        names = list(raw["labels"])
        return cls(
            labels=names,
            positives=np.array([raw["labels"][n]["positives"] for n in names]),
            annotated=np.array([raw["labels"][n]["annotated"] for n in names]),
            num_records=int(raw["num_records"]),
        )
