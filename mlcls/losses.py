"""The loss registry: name -> (description, parameters with defaults, factory(label stats, params)).

Every loss takes (logits, targets, mask), all (batch, labels):
- targets are confidences in [0, 1] (0/1 for hard labels);
- mask is 1 where the entry is annotated and 0 where the record said `null` ("not annotated"):
  masked entries contribute nothing, and the mean is taken over annotated entries only;
- a row with no positive label is an ordinary row of negatives.
The arithmetic runs in float32 even under bf16/fp16 autocast: log-sigmoid of a large logit in bf16
loses the small differences that rare labels live on.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mlcls.errors import ConfigError


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

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: Path) -> LabelStats:
        raw = json.loads(path.read_text())
        names = list(raw["labels"])
        return cls(
            labels=names,
            positives=np.array([raw["labels"][n]["positives"] for n in names]),
            annotated=np.array([raw["labels"][n]["annotated"] for n in names]),
            num_records=int(raw["num_records"]),
        )


class MaskedLoss(nn.Module):
    """Mean of an element-wise loss over the annotated entries."""

    def elementwise(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        logits, targets, mask = logits.float(), targets.float(), mask.float()
        per_entry = self.elementwise(logits, targets) * mask
        # clamp: a batch whose entries are all "not annotated" contributes a zero loss, not NaN.
        return per_entry.sum() / mask.sum().clamp_min(1.0)


class BCELoss(MaskedLoss):
    """Binary cross-entropy on hard labels: a confidence >= 0.5 is a positive."""

    def elementwise(self, logits, targets):
        return F.binary_cross_entropy_with_logits(logits, (targets >= 0.5).float(), reduction="none")


class WeightedBCELoss(MaskedLoss):
    """BCE on hard labels with a weight per label (a label's positive and negative terms alike)."""

    def __init__(self, weights: torch.Tensor):
        super().__init__()
        self.register_buffer("weights", weights.float())

    def elementwise(self, logits, targets):
        hard = (targets >= 0.5).float()
        return F.binary_cross_entropy_with_logits(logits, hard, reduction="none") * self.weights


class ConfidenceBCELoss(MaskedLoss):
    """BCE against the confidences themselves: a label at 0.6 is pulled towards a score of 0.6."""

    def elementwise(self, logits, targets):
        return F.binary_cross_entropy_with_logits(logits, targets, reduction="none")


WEIGHT_MODES = ("sqrt_inverse", "inverse")


def label_weights(stats: LabelStats, mode: str, explicit: dict[str, Any] | None) -> np.ndarray:
    """Per-label weights, normalised to a mean of 1 so the loss keeps the scale of plain BCE."""
    if explicit is not None:
        unknown = sorted(set(explicit) - set(stats.labels))
        if unknown:
            raise ConfigError(f"loss.weights names labels the training data lacks: {', '.join(unknown[:10])}")
        weights = np.ones(len(stats.labels))
        for i, name in enumerate(stats.labels):
            if name in explicit:
                value = explicit[name]
                if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                    raise ConfigError(f"loss.weights.{name}: expected a number >= 0, got {value!r}")
                weights[i] = float(value)
        # Explicit weights are the user's numbers: used as given, not normalised.
        return weights
    # +1 smoothing: a label with a single training article gets a large but finite weight.
    counts = stats.positives + 1.0
    # sqrt_inverse is the default because plain inverse frequency spreads weights over three orders of
    # magnitude on Reuters (earn: ~2900 articles, the rarest: 1), which makes training jumpy.
    raw = 1.0 / counts if mode == "inverse" else 1.0 / np.sqrt(counts)
    return raw / raw.mean()


@dataclass(frozen=True)
class LossSpec:
    name: str
    description: str
    params: dict[str, Any]  # name -> default
    factory: Callable[[LabelStats, dict[str, Any]], MaskedLoss]
    choices: dict[str, tuple[str, ...]] | None = None  # params restricted to a set of strings


def _weighted(stats: LabelStats, params: dict[str, Any]) -> MaskedLoss:
    weights = label_weights(stats, params["mode"], params["weights"])
    return WeightedBCELoss(torch.tensor(weights, dtype=torch.float32))


LOSSES: dict[str, LossSpec] = {
    spec.name: spec
    for spec in [
        LossSpec("bce", "binary cross-entropy on hard labels (confidences >= 0.5 count as positives)",
                 {}, lambda stats, params: BCELoss()),
        LossSpec(
            "weighted",
            "BCE with a weight per label: from training frequencies (normalised to mean 1) or given",
            {"mode": "sqrt_inverse", "weights": None},
            _weighted,
            choices={"mode": WEIGHT_MODES},
        ),
        LossSpec("confidence", "BCE on confidence-scored soft targets (a label at 0.6 aims at 0.6)",
                 {}, lambda stats, params: ConfidenceBCELoss()),
    ]
}


def check_loss_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Validate a loss name and its parameters; return the parameters with defaults filled in."""
    spec = LOSSES.get(name)
    if spec is None:
        raise ConfigError(f"unknown loss '{name}' (valid: {', '.join(LOSSES)})")
    resolved = dict(spec.params)
    for key, value in params.items():
        if key not in spec.params:
            takes = ", ".join(spec.params) or "no parameters"
            raise ConfigError(f"loss '{name}' has no parameter '{key}' (it takes: {takes})")
        default = spec.params[key]
        choices = (spec.choices or {}).get(key)
        if choices and value not in choices:
            raise ConfigError(f"loss.{key}: {value!r} is not one of {', '.join(choices)}")
        if isinstance(default, float) and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ConfigError(f"loss.{key}: expected a number, got {value!r}")
        if default is None and value is not None and not isinstance(value, dict):
            raise ConfigError(f"loss.{key}: expected a mapping label -> value, got {value!r}")
        resolved[key] = float(value) if isinstance(default, float) else value
    return resolved


def build_loss(name: str, params: dict[str, Any], stats: LabelStats) -> MaskedLoss:
    params = check_loss_params(name, params)  # first: it rejects an unknown name with the valid ones
    return LOSSES[name].factory(stats, params)
