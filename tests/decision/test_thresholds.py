from __future__ import annotations

import numpy as np
import pytest

from mlcls.decision.metrics import compute_metrics
from mlcls.decision.rules import DecisionRule, with_overrides
from mlcls.decision.tuning import tune
from mlcls.errors import MlclsError
from mlcls.run.files import read_rule, write_rule

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
    write_rule(tmp_path, rule)
    assert read_rule(tmp_path) == rule
    assert with_overrides(rule, threshold=0.3).rule == "fixed"
    assert with_overrides(rule, top_k=2).top_k == 2
    assert with_overrides(rule, min_labels=1).per_label == rule.per_label
    with pytest.raises(MlclsError, match="two different rules"):
        with_overrides(rule, threshold=0.3, top_k=2)


def uniform_scores(rows: int = 1000, seed: int = 0):
    """Scores spread evenly over [0, 1] with no ties, so a label's firing count follows its cut-off exactly."""
    rng = np.random.default_rng(seed)
    probs = rng.random((rows, 3)).astype(np.float32)
    gold = (rng.random((rows, 3)) < 0.2).astype(np.float32)
    return probs, gold, np.ones_like(gold)


def test_prior_quantile_fires_each_label_on_its_training_rate():
    probs, gold, mask = uniform_scores()
    priors = np.array([0.02, 0.1, 0.3])
    # 200 unannotated rows scored 1.0: if they counted, every cut-off would be pulled up towards 1
    probs = np.vstack([probs, np.ones((200, 3), dtype=np.float32)])
    gold, mask = np.vstack([gold, np.zeros((200, 3))]), np.vstack([mask, np.zeros((200, 3))])
    annotated = mask[:, 0] > 0
    for scale in (1.0, 2.0):
        rule = tune(probs, gold, mask, LABELS, "prior_quantile", priors=priors, quantile_scale=scale)
        fired = rule.apply(probs[annotated], LABELS).sum(axis=0)
        expected = 1000 * scale * priors  # 20 / 100 / 300, doubled by scale=2
        assert np.all(np.abs(fired - expected) <= 10), (scale, fired, expected)
        assert rule.rule == "prior_quantile" and rule.quantile_scale == scale and rule.tuned_on == "validation"
        assert rule.fallback_labels == []
        # uniform scores: the (1 - q) quantile is about 1 - q
        np.testing.assert_allclose(rule.cutoffs(LABELS), 1 - scale * priors, atol=0.05)
        # the global cut-off is the one the global rule tunes, for overrides and labels without a cut-off
        assert rule.threshold == tune(probs, gold, mask, LABELS, "global").threshold
    assert rule.describe() == "prior-quantile x2.0 (3 labels)"


def test_prior_quantile_cutoffs_stay_inside_001_and_099():
    probs, gold, mask = uniform_scores()
    probs[:, 0] = 0.001  # a label as frequent as every article: the 0 quantile is 0.001, would fire everywhere
    probs[:, 1] = 1.0  # all scores at 1: the cut-off would be 1.0
    rule = tune(probs, gold, mask, LABELS, "prior_quantile", priors=np.array([0.9, 0.001, 0.5]), quantile_scale=2)
    assert rule.per_label["common"] == 0.01 and rule.per_label["rare"] == 0.99
    assert 0.0 < rule.per_label["odd"] < 0.05  # q = min(1, 2 * 0.5) = 1: the lowest score of the label
    assert not rule.apply(probs, LABELS)[:, 0].any()


def test_hybrid_tunes_f1_where_positives_allow_and_takes_the_prior_quantile_elsewhere():
    probs, gold, mask = constructed_case()
    gold[:, 1] = 0
    gold[5, 1] = 1  # 'rare' now has a single validation positive
    priors = np.array([0.4, 0.1, 0.3])
    per_label = tune(probs, gold, mask, LABELS, "per_label", min_positives=3)
    hybrid = tune(probs, gold, mask, LABELS, "hybrid", min_positives=3, priors=priors)
    assert hybrid.per_label["common"] == per_label.per_label["common"]
    assert hybrid.per_label["odd"] == per_label.per_label["odd"]
    assert hybrid.fallback_labels == ["rare"] and per_label.fallback_labels == ["rare"]
    # per_label gives 'rare' the global cut-off; hybrid gives it the one that fires on 10% of the 300 rows
    assert per_label.per_label["rare"] == per_label.threshold
    assert hybrid.per_label["rare"] != per_label.per_label["rare"]
    assert int((probs[:, 1] >= hybrid.per_label["rare"]).sum()) == 30
    assert int(hybrid.apply(probs, LABELS)[:, 1].sum()) == 30
    assert hybrid.threshold == per_label.threshold and hybrid.tuned_on == "validation"
    assert hybrid.describe() == "hybrid (2 F1-tuned, 1 prior-quantile)"
    # with min_positives=1 every label is F1-tuned: hybrid is per_label
    assert tune(probs, gold, mask, LABELS, "hybrid", 0.5, 1, priors=priors).per_label == \
        tune(probs, gold, mask, LABELS, "per_label", 0.5, 1).per_label


def test_prior_rules_round_trip_and_old_files_without_quantile_scale_load(tmp_path):
    probs, gold, mask = constructed_case()
    priors = np.array([0.4, 0.1, 0.3])
    for name in ("prior_quantile", "hybrid"):
        rule = tune(probs, gold, mask, LABELS, name, min_positives=50, priors=priors, quantile_scale=1.5)
        folder = tmp_path / name
        folder.mkdir()
        write_rule(folder, rule)
        loaded = read_rule(folder)
        assert loaded == rule and loaded.rule == name and loaded.quantile_scale == 1.5
        np.testing.assert_array_equal(loaded.apply(probs, LABELS), rule.apply(probs, LABELS))
        assert with_overrides(loaded, min_labels=1).quantile_scale == 1.5
    # a thresholds.json written before quantile_scale existed
    (tmp_path / "thresholds.json").write_text('{"rule": "per_label", "threshold": 0.4, "per_label": {"common": 0.3}, '
                                              '"top_k": 1, "min_labels": 0, "tuned_on": "validation", '
                                              '"fallback_labels": []}')
    loaded = read_rule(tmp_path)
    assert loaded.quantile_scale == 1.0 and loaded.per_label == {"common": 0.3}
    # labels without a saved cut-off use `threshold`, in the new per-label rules as in per_label
    rule = DecisionRule("prior_quantile", 0.4, {"common": 0.3})
    np.testing.assert_array_equal(rule.apply(np.array([[0.35, 0.35, 0.45]]), LABELS), [[1, 0, 1]])


def test_prior_rules_without_training_frequencies_are_an_error():
    probs, gold, mask = constructed_case()
    for name in ("prior_quantile", "hybrid"):
        with pytest.raises(MlclsError, match="needs the training label frequencies"):
            tune(probs, gold, mask, LABELS, name)
        with pytest.raises(MlclsError, match="one training frequency per label"):
            tune(probs, gold, mask, LABELS, name, priors=np.array([0.1, 0.2]))
    with pytest.raises(MlclsError, match="unknown decision rule"):
        tune(probs, gold, mask, LABELS, "per-label")


def rare_topics_case(seed: int = 0):
    """One common label and four rare ones. Each rare label is 8% of training (the priors below) but 2% of these
    tuning rows, where its positives are its top scores: firing at its full training rate (scale 1) buys four
    false positives per true one; a quarter of the rate (scale 0.25) fires on exactly its positives."""
    rng = np.random.default_rng(seed)
    n, rare = 400, 4
    gold = np.zeros((n, 1 + rare), dtype=np.float32)
    gold[:, 0] = rng.random(n) < 0.4
    probs = np.empty_like(gold)
    probs[:, 0] = np.where(gold[:, 0] > 0, rng.uniform(0.6, 1.0, n), rng.uniform(0.0, 0.4, n))
    for j in range(1, 1 + rare):
        gold[rng.choice(n, 8, replace=False), j] = 1
        probs[:, j] = np.where(gold[:, j] > 0, rng.uniform(0.5, 0.6, n), rng.uniform(0.0, 0.45, n))
    labels = ["common"] + [f"rare{j}" for j in range(1, 1 + rare)]
    priors = np.array([0.4] + [0.08] * rare)
    return probs, gold, np.ones_like(gold), labels, priors


def test_quantile_scale_auto_keeps_the_scale_with_the_best_held_out_f1():
    from mlcls.decision.tuning import SCALE_GRID, tune_rule

    probs, gold, mask, labels, priors = rare_topics_case()
    rule = tune_rule(probs, gold, mask, labels, "prior_quantile", priors=priors, quantile_scale="auto")
    assert rule.quantile_scale == 0.25
    assert list(rule.scale_scores) == [f"{s:g}" for s in SCALE_GRID]
    assert rule.scale_scores["0.25"] == max(rule.scale_scores.values()) > rule.scale_scores["1"]
    # the chosen rule is the one a fixed scale of 0.25 gives, tuned on every row
    fixed = tune_rule(probs, gold, mask, labels, "prior_quantile", priors=priors, quantile_scale=0.25)
    assert rule.per_label == fixed.per_label
    assert "prior-quantile x0.25, the best held-out of 0.25-2" in rule.describe()
    new_probs, new_gold, new_mask, _, _ = rare_topics_case(seed=1)  # and it holds on new rows
    at_one = tune_rule(probs, gold, mask, labels, "prior_quantile", priors=priors, quantile_scale=1.0)
    assert macro_of(new_probs, new_gold, new_mask, rule, labels) > macro_of(new_probs, new_gold, new_mask, at_one,
                                                                          labels)


def macro_of(probs, gold, mask, rule, labels):
    return compute_metrics(gold, mask, rule.apply(probs, labels), labels)["macro_f1"]


def test_quantile_scale_auto_under_rule_auto(monkeypatch):
    from mlcls.decision.tuning import tune_rule

    probs, gold, mask, labels, priors = rare_topics_case()
    searched = tune_rule(probs, gold, mask, labels, "auto", priors=priors, quantile_scale="auto")
    at_one = tune_rule(probs, gold, mask, labels, "auto", priors=priors, quantile_scale=1.0)
    assert set(searched.auto_scores) == {"global", "per_label", "hybrid", "prior_quantile"}
    # under rule auto, prior_quantile competes at its best scale (0.25 here), no longer at 1
    assert searched.auto_scores["prior_quantile"] > at_one.auto_scores["prior_quantile"]
    assert searched.auto_scores["global"] == at_one.auto_scores["global"]
    # under rule auto the scale is searched inside each fold: a fresh search per fold, not one on all rows
    calls = []
    import mlcls.decision.tuning as tuning

    original = tuning.scale_search
    monkeypatch.setattr(tuning, "scale_search", lambda p, *a, **k: calls.append(len(p)) or original(p, *a, **k))
    tune_rule(probs, gold, mask, labels, "auto", priors=priors, quantile_scale="auto")
    # prior_quantile and hybrid, 5 folds each, on the 4/5 of the rows tuned on (global won: no search on all rows)
    assert calls == [320] * 10


def test_hybrid_scale_auto_searches_the_labels_left_to_the_quantile_and_round_trips(tmp_path):
    from mlcls.decision.tuning import tune_rule

    probs, gold, mask, labels, priors = rare_topics_case()
    # min_positives 10: the rare labels (8 positives each) are left to the quantile, at the scale that fits them
    hybrid = tune_rule(probs, gold, mask, labels, "hybrid", min_positives=10, priors=priors, quantile_scale="auto")
    assert hybrid.fallback_labels == labels[1:] and hybrid.quantile_scale == 0.25
    assert "hybrid (1 F1-tuned, 4 prior-quantile x0.25, the best held-out of 0.25-2)" in hybrid.describe()
    write_rule(tmp_path, hybrid)
    assert read_rule(tmp_path) == hybrid
    # with enough positives for every label there is no scale to choose: no search, no scale in the description
    f1_only = tune_rule(probs, gold, mask, labels, "hybrid", min_positives=3, priors=priors, quantile_scale="auto")
    assert f1_only.scale_scores is None and f1_only.describe() == "hybrid (5 F1-tuned, 0 prior-quantile)"
    with pytest.raises(MlclsError, match="training label frequencies"):
        tune_rule(probs, gold, mask, labels, "hybrid", quantile_scale="auto")


def test_scales_that_tie_go_to_the_one_nearest_1():
    from mlcls.decision.tuning import tune_rule

    probs, gold, mask, labels, priors = rare_topics_case()
    mask[:, 1:] = 0  # the rare labels have no annotated row: no quantile, every scale decides the same
    rule = tune_rule(probs, gold, mask, labels, "hybrid", min_positives=3, priors=priors, quantile_scale="auto")
    assert len(set(rule.scale_scores.values())) == 1 and rule.quantile_scale == 1.0


def test_a_rule_saved_without_a_scale_search_leaves_the_field_out(tmp_path):
    import json

    write_rule(tmp_path, tune(*constructed_case(), LABELS, "per_label"))
    assert "scale_scores" not in json.loads((tmp_path / "thresholds.json").read_text())
