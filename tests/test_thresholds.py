from __future__ import annotations

import numpy as np
import pytest

from mlcls.errors import MlclsError
from mlcls.evaluation.metrics import compute_metrics
from mlcls.inference.decision import DecisionRule, tune, with_overrides

LABELS = ["common", "rare", "odd"]


def constructed_case(seed: int = 0):
    """Three labels whose scores are calibrated differently: 'common' separates at 0.5, 'rare' at ~0.2
    (its scores are all low), 'odd' at ~0.8 (all high) — one global cut-off cannot serve all three."""
    rng = np.random.default_rng(seed)
    n = 300
    gold = (rng.random((n, 3)) < [0.4, 0.1, 0.3]).astype(np.float32)
    probs = np.empty_like(gold)
    probs[:, 0] = np.where(gold[:, 0] > 0, rng.uniform(0.55, 0.95, n), rng.uniform(0.05, 0.45, n))
    probs[:, 1] = np.where(gold[:, 1] > 0, rng.uniform(0.22, 0.40, n), rng.uniform(0.0, 0.18, n))
    probs[:, 2] = np.where(gold[:, 2] > 0, rng.uniform(0.85, 1.0, n), rng.uniform(0.55, 0.78, n))
    return probs, gold, np.ones_like(gold)


def macro(probs, gold, mask, rule):
    return compute_metrics(gold, mask, rule.apply(probs, LABELS), LABELS)["macro_f1"]


def test_per_label_tuning_beats_the_fixed_half_and_the_global_cut():
    probs, gold, mask = constructed_case()
    per_label = tune(probs, gold, mask, LABELS, "per_label")
    fixed = tune(probs, gold, mask, LABELS, "fixed")
    global_ = tune(probs, gold, mask, LABELS, "global")
    assert macro(probs, gold, mask, per_label) == 1.0
    assert macro(probs, gold, mask, per_label) > macro(probs, gold, mask, fixed)
    assert macro(probs, gold, mask, per_label) > macro(probs, gold, mask, global_)
    assert 0.18 <= per_label.per_label["rare"] <= 0.22 and 0.78 <= per_label.per_label["odd"] <= 0.85
    assert per_label.fallback_labels == [] and per_label.tuned_on == "validation"
    # on new data drawn the same way, the tuned rule still holds up
    probs2, gold2, mask2 = constructed_case(seed=1)
    assert macro(probs2, gold2, mask2, per_label) > macro(probs2, gold2, mask2, fixed)


def test_per_label_never_lowers_validation_macro_f1_against_fixed_half():
    for seed in range(10):
        probs, gold, mask = constructed_case(seed)
        probs = np.clip(probs + np.random.default_rng(seed).normal(0, 0.15, probs.shape), 0, 1)  # overlap
        per_label = tune(probs, gold, mask, LABELS, "per_label", min_positives=1)
        fixed = DecisionRule("fixed", 0.5)
        assert macro(probs, gold, mask, per_label) >= macro(probs, gold, mask, fixed)


def test_labels_with_too_few_validation_positives_fall_back_to_the_global_cut():
    probs, gold, mask = constructed_case()
    gold[:, 1] = 0
    gold[:2, 1] = 1  # 'rare' now has 2 validation positives
    rule = tune(probs, gold, mask, LABELS, "per_label", min_positives=3)
    assert rule.fallback_labels == ["rare"]
    assert rule.per_label["rare"] == rule.threshold
    assert "1 at the global" in rule.describe()
    assert tune(probs, gold, mask, LABELS, "per_label", min_positives=2).fallback_labels == []


def test_top_k_and_at_least_one_rules():
    probs = np.array([[0.9, 0.8, 0.1], [0.2, 0.3, 0.4], [0.05, 0.01, 0.02]])
    top2 = DecisionRule("top_k", 0.5, top_k=2)
    np.testing.assert_array_equal(top2.apply(probs, LABELS), [[1, 1, 0], [0, 1, 1], [1, 0, 1]])
    fixed = DecisionRule("fixed", 0.5)
    np.testing.assert_array_equal(fixed.apply(probs, LABELS), [[1, 1, 0], [0, 0, 0], [0, 0, 0]])
    at_least_one = DecisionRule("fixed", 0.5, min_labels=1)
    np.testing.assert_array_equal(at_least_one.apply(probs, LABELS), [[1, 1, 0], [0, 0, 1], [1, 0, 0]])


def test_overrides_and_round_trip(tmp_path):
    probs, gold, mask = constructed_case()
    rule = tune(probs, gold, mask, LABELS, "per_label")
    rule.save(tmp_path / "t.json")
    assert DecisionRule.load(tmp_path / "t.json") == rule
    assert with_overrides(rule, threshold=0.3).rule == "fixed"
    assert with_overrides(rule, top_k=2).top_k == 2
    assert with_overrides(rule, min_labels=1).per_label == rule.per_label
    with pytest.raises(MlclsError, match="two different rules"):
        with_overrides(rule, threshold=0.3, top_k=2)
