"""The loss modules and `build_loss` (the registry's names and parameters: loss_specs.py).

Every loss takes (logits, targets, mask), all (batch, labels):
- targets are confidences in [0, 1] (0/1 for hard labels);
- mask is 1 where the entry is annotated and 0 where the record said `null` ("not annotated"):
  masked entries contribute nothing, and the mean is taken over annotated entries only;
- a row with no positive label is an ordinary row of negatives.
The arithmetic runs in float32 even under bf16/fp16 autocast: log-sigmoid of a large logit in bf16
loses the small differences that rare labels live on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mlcls.data.labels import LabelStats
from mlcls.errors import ConfigError
from mlcls.loss_specs import LOSSES, check_loss_params


class MaskedLoss(nn.Module):
    """Mean of an element-wise loss over the annotated entries."""

    def elementwise(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        logits, targets, mask = logits.float(), targets.float(), mask.float()
        # Zero the targets of masked entries too: some losses (db) read a row's other labels, and an entry
        # that is "not annotated" must not count as a positive there either.
        per_entry = self.elementwise(logits, targets * mask) * mask
        # clamp: a batch whose entries are all "not annotated" contributes a zero loss, not NaN.
        return per_entry.sum() / mask.sum().clamp_min(1.0)


class BCELoss(MaskedLoss):
    """Binary cross-entropy on hard labels: a confidence >= 0.5 is a positive."""

    def elementwise(self, logits, targets):
        return F.binary_cross_entropy_with_logits(logits, (targets >= 0.5).to(logits.dtype), reduction="none")


class WeightedBCELoss(MaskedLoss):
    """BCE on hard labels with a weight per label (its positive and negative terms alike) and, optionally,
    a positive weight per label (positives against negatives, torch's `pos_weight`)."""

    def __init__(self, weights: torch.Tensor, pos_weight: torch.Tensor | None = None):
        super().__init__()
        self.register_buffer("weights", weights.float())
        self.register_buffer("pos_weight", None if pos_weight is None else pos_weight.float())

    def elementwise(self, logits, targets):
        hard = (targets >= 0.5).to(logits.dtype)
        bce = F.binary_cross_entropy_with_logits(logits, hard, pos_weight=self.pos_weight, reduction="none")
        return bce * self.weights


class ConfidenceBCELoss(MaskedLoss):
    """BCE against the confidences themselves: a label at 0.6 is pulled towards a score of 0.6."""

    def elementwise(self, logits, targets):
        return F.binary_cross_entropy_with_logits(logits, targets, reduction="none")


class FocalLoss(MaskedLoss):
    """Focal loss (Lin et al. 2017), the formula of torchvision.ops.sigmoid_focal_loss, on soft targets too:
    BCE * (1 - p_t)^gamma, times alpha_t when alpha >= 0; optionally a weight per label (class-balanced)."""

    def __init__(self, gamma: float, alpha: float = -1.0, weights: torch.Tensor | None = None):
        super().__init__()
        self.gamma, self.alpha = gamma, alpha
        self.register_buffer("weights", None if weights is None else weights.float())

    def elementwise(self, logits, targets):
        p = torch.sigmoid(logits)
        loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        if self.gamma:
            p_t = p * targets + (1 - p) * (1 - targets)
            loss = loss * (1 - p_t) ** self.gamma
        if self.alpha >= 0:
            loss = loss * (self.alpha * targets + (1 - self.alpha) * (1 - targets))
        return loss if self.weights is None else loss * self.weights


class AsymmetricLoss(MaskedLoss):
    """ASL (Ridnik et al. 2021): positives focused with gamma_pos; negatives with gamma_neg on a probability
    shifted down by `clip`, so easy negatives (p < clip) are discarded outright."""

    def __init__(self, gamma_pos: float, gamma_neg: float, clip: float, eps: float = 1e-8):
        super().__init__()
        self.gamma_pos, self.gamma_neg, self.clip, self.eps = gamma_pos, gamma_neg, clip, eps

    def elementwise(self, logits, targets):
        p = torch.sigmoid(logits)
        p_neg = (p - self.clip).clamp(min=0) if self.clip > 0 else p  # the shifted probability p_m
        pos = targets * (1 - p) ** self.gamma_pos * F.logsigmoid(logits)
        neg = (1 - targets) * p_neg**self.gamma_neg * torch.log((1 - p_neg).clamp(min=self.eps))
        return -(pos + neg)


class DistributionBalancedLoss(MaskedLoss):
    """Distribution-balanced loss (Wu et al. 2020), three parts, each of which can be switched off:

    - re-balancing weights: r = P_class / P_instance, the rate at which label j would be sampled by
      class-aware sampling over the rate at which the article is sampled through all its labels, mapped
      smoothly to alpha + sigmoid(beta * (r - mu)); or the class-balanced weights of Cui et al. (`cb`);
    - negative-tolerant regularisation: logits shifted by kappa * log prior odds / lambda, negatives'
      logits scaled by lambda and their loss by 1/lambda, so that the many easy negatives of a rare label
      stop pushing its score down (as in the authors' implementation, ResampleLoss);
    - a focal term (gamma) on the regularised logits.
    An article with no label has no instance-level rate; it gets r = 1 (sampled as its labels would be).
    """

    def __init__(self, stats: LabelStats, reweight: str, alpha: float, beta: float, mu: float, kappa: float,
                 lam: float, gamma: float, cb_beta: float = 0.999):
        super().__init__()
        counts = np.maximum(stats.positives, 1.0)
        self.reweight, self.alpha, self.beta, self.mu = reweight, alpha, beta, mu
        self.lam, self.gamma = lam, gamma
        self.register_buffer("freq_inv", torch.tensor(1.0 / counts, dtype=torch.float32))
        self.register_buffer("cb_weights", torch.tensor(effective_number_weights(stats, cb_beta), dtype=torch.float32))
        log_odds = np.log(stats.prior() / (1 - stats.prior()))
        # Not divided by lambda: Wu et al.'s formula and Huang et al.'s Reuters code both shift by kappa * log odds
        # (mlcls divided by lambda until this was checked against Roche/BalancedLossNLP, util_loss.py).
        self.register_buffer("shift", torch.tensor(kappa * log_odds, dtype=torch.float32))

    def weights(self, targets: torch.Tensor) -> torch.Tensor:
        if self.reweight == "cb":
            return self.cb_weights.expand_as(targets)
        if self.reweight == "none":
            return torch.ones_like(targets)
        instance_rate = (targets * self.freq_inv).sum(dim=1, keepdim=True)
        ratio = torch.where(instance_rate > 0, self.freq_inv / instance_rate.clamp_min(1e-12), 1.0)
        return self.alpha + torch.sigmoid(self.beta * (ratio - self.mu))

    def elementwise(self, logits, targets):
        z = logits + self.shift
        pos = targets * F.softplus(-z)  # -log sigmoid(z)
        neg = (1 - targets) * F.softplus(self.lam * z) / self.lam  # (1/lambda) log(1 + exp(lambda z))
        if self.gamma:
            pos = pos * (1 - torch.sigmoid(z)) ** self.gamma
            neg = neg * torch.sigmoid(self.lam * z) ** self.gamma
        return self.weights(targets) * (pos + neg)


def effective_number_weights(stats: LabelStats, beta: float) -> np.ndarray:
    """Cui et al. 2019: weight (1 - beta) / (1 - beta^n), n the label's training articles; mean 1."""
    counts = np.maximum(stats.positives, 1.0)
    raw = (1.0 - beta) / (1.0 - np.power(beta, counts))
    return raw / raw.mean()


def label_weights(stats: LabelStats, mode: str, explicit: dict[str, Any] | None, beta: float = 0.999) -> np.ndarray:
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
    if mode == "effective_number":
        return effective_number_weights(stats, beta)
    # +1 smoothing: a label with a single training article gets a large but finite weight.
    counts = stats.positives + 1.0
    # sqrt_inverse is the default because plain inverse frequency spreads weights over three orders of
    # magnitude on Reuters (earn: ~2900 articles, the rarest: 1), which makes training jumpy.
    raw = 1.0 / counts if mode == "inverse" else 1.0 / np.sqrt(counts)
    return raw / raw.mean()


def positive_weights(stats: LabelStats, mode: str) -> np.ndarray | None:
    """Negatives per positive for each label (torch's pos_weight), or its square root; None for 'none'."""
    if mode == "none":
        return None
    ratio = (stats.annotated - stats.positives) / np.maximum(stats.positives, 1.0)
    ratio = np.maximum(ratio, 1e-3)
    return ratio if mode == "ratio" else np.sqrt(ratio)


def _tensor(values: np.ndarray | None) -> torch.Tensor | None:
    return None if values is None else torch.tensor(values, dtype=torch.float32)


def _weighted(stats: LabelStats, params: dict[str, Any]) -> MaskedLoss:
    weights = label_weights(stats, params["mode"], params["weights"], params["beta"])
    return WeightedBCELoss(_tensor(weights), _tensor(positive_weights(stats, params["pos_weight"])))


def _db(reweight: str) -> Callable[[LabelStats, dict[str, Any]], MaskedLoss]:
    def factory(stats: LabelStats, p: dict[str, Any]) -> MaskedLoss:
        return DistributionBalancedLoss(
            stats, reweight, alpha=p.get("alpha", 0.0), beta=p.get("beta", 0.0), mu=p.get("mu", 0.0),
            kappa=p["kappa"], lam=p["lambda"], gamma=p["gamma"], cb_beta=p.get("cb_beta", 0.999))

    return factory


# name -> factory(label stats, resolved parameters); names, descriptions and defaults are in loss_specs.py.
FACTORIES: dict[str, Callable[[LabelStats, dict[str, Any]], MaskedLoss]] = {
    "bce": lambda stats, p: BCELoss(),
    "weighted": _weighted,
    "confidence": lambda stats, p: ConfidenceBCELoss(),
    "focal": lambda stats, p: FocalLoss(p["gamma"], p["alpha"]),
    "asl": lambda stats, p: AsymmetricLoss(p["gamma_pos"], p["gamma_neg"], p["clip"]),
    "cb": lambda stats, p: FocalLoss(p["gamma"], -1.0, _tensor(effective_number_weights(stats, p["beta"]))),
    "db": _db("rebalance"),
    "cb_ntr": _db("cb"),
    "ntr_focal": _db("none"),
}
assert set(FACTORIES) == set(LOSSES), "every loss in loss_specs.LOSSES needs a factory here"


def build_loss(name: str, params: dict[str, Any], stats: LabelStats) -> MaskedLoss:
    params = check_loss_params(name, params)  # first: it rejects an unknown name with the valid ones
    return FACTORIES[name](stats, params)
