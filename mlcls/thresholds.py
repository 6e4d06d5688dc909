"""Decision rules: scores -> label sets. Tuned on validation at the end of training, saved in the run."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mlcls.metrics import gold_matrix, micro_f1_counts

GRID = np.round(np.arange(0.02, 0.981, 0.01), 2)


@dataclass
class Thresholds:
    rule: str  # "global": one cut-off for every label
    value: float
    tuned_on: str | None = None  # "validation", or None when it is the configured default
    validation_micro_f1: float | None = None

    def apply(self, probs: np.ndarray) -> np.ndarray:
        return probs >= self.value

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path) -> Thresholds:
        return cls(**json.loads(path.read_text()))


def tune_global(probs: np.ndarray, targets: np.ndarray, mask: np.ndarray) -> Thresholds:
    """The single cut-off that maximises validation micro-F1 (ties: the one nearest 0.5)."""
    gold = gold_matrix(targets, mask).astype(bool)
    annotated = mask > 0
    scores = np.array([micro_f1_counts(gold, (probs >= t) & annotated) for t in GRID])
    best = np.flatnonzero(scores == scores.max())
    pick = best[np.argmin(np.abs(GRID[best] - 0.5))]
    return Thresholds("global", float(GRID[pick]), "validation", float(scores[pick]))
