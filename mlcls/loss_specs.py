"""The loss registry's public face: each loss's name, description and parameters with their defaults.

No torch here: `mlcls losses` and config validation read this table without loading torch (the loss
modules themselves, and the factory that builds one, are in `losses.py`).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any

from mlcls.errors import ConfigError

WEIGHT_MODES = ("sqrt_inverse", "inverse", "effective_number")
POS_WEIGHT_MODES = ("none", "sqrt_ratio", "ratio")

# The defaults of focal, asl and db are the papers' (db: Huang et al. 2021's on Reuters-21578); cb and cb_ntr
# use the class-balanced beta of Huang et al.'s Reuters code (Roche/BalancedLossNLP, train.py: CB_beta 0.9,
# a focal gamma of 2 in their "CB"): 0.9 spreads weights ~10:1 between the rarest and the commonest topic,
# where 0.999 (Cui et al.'s image setting, mlcls's earlier default) spread them ~940:1. Two differences
# remain on purpose: weights are normalised to a mean of 1 (theirs: unnormalised, loss x10; only the scale of
# the loss differs, which Adam mostly absorbs), and ntr_focal divides the negatives' loss by lambda as the
# formula of Wu et al. says (their code skips that when no re-weighting is on).
NTR_DEFAULTS = {"kappa": 0.05, "lambda": 2.0, "gamma": 2.0}

# The parameters a loss is undefined outside of, (loss or "*" for any that takes it, parameter) -> (lowest,
# whether the lowest is allowed, highest, whether the highest is): a focusing power below 0 raises 0 to a
# negative power, lambda 0 divides by it, a class-balanced beta of 1 gives 0/0 weights: a NaN loss, trained
# on without a word. Values that are odd but defined (asl's clip <= 0 turns clipping off) are left alone,
# as runs saved with them must still load.
INF = float("inf")
PARAM_RANGES: dict[tuple[str, str], tuple[float, bool, float, bool]] = {
    ("*", "gamma"): (0.0, True, INF, False), ("*", "gamma_pos"): (0.0, True, INF, False),
    ("*", "gamma_neg"): (0.0, True, INF, False), ("*", "lambda"): (0.0, False, INF, False),
    ("cb", "beta"): (0.0, True, 1.0, False), ("*", "cb_beta"): (0.0, True, 1.0, False),
    ("weighted", "beta"): (0.0, True, 1.0, False),  # read only with mode effective_number: checked only then
}


@dataclass(frozen=True)
class LossSpec:
    name: str
    description: str
    params: dict[str, Any]  # name -> default
    choices: dict[str, tuple[str, ...]] | None = None  # params restricted to a set of strings


LOSSES: dict[str, LossSpec] = {
    spec.name: spec
    for spec in [
        LossSpec("bce", "binary cross-entropy on hard labels (confidences >= 0.5 count as positives)", {}),
        LossSpec(
            "weighted",
            "BCE with a weight per label (from training frequencies, mean 1, or given) and optional pos_weight",
            {"mode": "sqrt_inverse", "weights": None, "beta": 0.999, "pos_weight": "none"},
            choices={"mode": WEIGHT_MODES, "pos_weight": POS_WEIGHT_MODES},
        ),
        LossSpec("confidence", "BCE on confidence-scored soft targets (a label at 0.6 aims at 0.6)", {}),
        LossSpec("focal", "focal loss: BCE scaled by (1 - p_t)^gamma; alpha < 0 turns class weighting off",
                 {"gamma": 2.0, "alpha": -1.0}),
        LossSpec("asl", "asymmetric loss: separate focusing for positives and negatives, easy negatives clipped",
                 {"gamma_pos": 1.0, "gamma_neg": 4.0, "clip": 0.05}),
        LossSpec("cb", "class-balanced focal loss: weights from the effective number of articles (1 - beta^n)",
                 {"beta": 0.9, "gamma": 2.0}),
        LossSpec("db", "distribution-balanced loss: re-balancing weights + negative-tolerant regularisation "
                 "+ focal term", {"alpha": 0.1, "beta": 10.0, "mu": 0.9, **NTR_DEFAULTS}),
        LossSpec("cb_ntr", "class-balanced weights + negative-tolerant regularisation + focal term",
                 {"cb_beta": 0.9, **NTR_DEFAULTS}),
        LossSpec("ntr_focal", "negative-tolerant regularisation + focal term, no re-weighting", dict(NTR_DEFAULTS)),
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
        if isinstance(default, float) and isinstance(value, str):  # YAML 1.1 reads "5e-2" as a string, as
            with contextlib.suppress(ValueError):  # config/fields.py accepts it for every other number
                value = float(value)
        if isinstance(default, float) and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ConfigError(f"loss.{key}: expected a number, got {value!r}")
        if default is None and value is not None and not isinstance(value, dict):
            raise ConfigError(f"loss.{key}: expected a mapping label -> value, got {value!r}")
        if isinstance(default, float):
            value = float(value)
            unread = name == "weighted" and key == "beta" and {**spec.params, **params}["mode"] != "effective_number"
            if not unread:
                _check_range(name, key, value)
        resolved[key] = value
    return resolved


def _check_range(name: str, key: str, value: float) -> None:
    """ConfigError unless loss `name`'s parameter `key` is finite and within PARAM_RANGES."""
    if not math.isfinite(value):
        raise ConfigError(f"loss.{key}: expected a finite number, got {value!r}")
    bounds = PARAM_RANGES.get((name, key)) or PARAM_RANGES.get(("*", key))
    if bounds is None:
        return
    low, low_allowed, high, high_allowed = bounds
    if not (low <= value <= high) or (value == low and not low_allowed) or (value == high and not high_allowed):
        shown_low = f"{'>=' if low_allowed else 'above'} {low:g}"
        shown_high = "" if high == INF else f" and {'<=' if high_allowed else 'below'} {high:g}"
        raise ConfigError(f"loss.{key} of loss '{name}': must be {shown_low}{shown_high}, got {value:g}")
