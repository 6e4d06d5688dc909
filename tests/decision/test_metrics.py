from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from mlcls.decision.metrics import compute_metrics

LABELS = ["a", "b", "c"]


def test_hand_computed_example():
    gold = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [0, 0, 1]], dtype=np.float32)
    pred = np.array([[1, 0, 0], [1, 0, 1], [0, 0, 0], [0, 0, 0]], dtype=bool)
    m = compute_metrics(gold, np.ones_like(gold), pred, LABELS)
    # TP=2 (a, a), FP=1 (c on row 2), FN=2 (b row 2, c row 4)
    assert m["micro_precision"] == pytest.approx(2 / 3)
    assert m["micro_recall"] == pytest.approx(2 / 4)
    assert m["micro_f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 2))
    # per label F1: a = 1, b = 0, c = 0 -> macro 1/3
    assert [r["f1"] for r in m["per_label"]] == pytest.approx([1.0, 0.0, 0.0])
    assert m["macro_f1"] == pytest.approx(1 / 3)
    # samples: row1 1, row2 2*1/(2+1+1)=0.5, row3 (no gold, no prediction) 1, row4 0
    assert m["samples_f1"] == pytest.approx((1 + 0.5 + 1 + 0) / 4)
    assert m["hamming_loss"] == pytest.approx(3 / 12)
    assert m["subset_accuracy"] == pytest.approx(2 / 4)
    assert m["records_without_gold_labels"] == 1
    assert [r["support"] for r in m["per_label"]] == [2, 1, 1]


def test_agrees_with_sklearn_when_nothing_is_masked():
    rng = np.random.default_rng(0)
    gold = (rng.random((50, 6)) < 0.3).astype(np.float32)
    pred = rng.random((50, 6)) < 0.3
    m = compute_metrics(gold, np.ones_like(gold), pred, list("abcdef"))
    assert m["micro_f1"] == pytest.approx(f1_score(gold, pred, average="micro"))
    assert m["macro_f1"] == pytest.approx(f1_score(gold, pred, average="macro", zero_division=0))


def test_masked_entries_are_not_scored():
    gold = np.array([[1, 0, 0], [0, 1, 0]], dtype=np.float32)
    mask = np.array([[1, 1, 0], [1, 1, 1]], dtype=np.float32)
    right = np.array([[1, 0, 0], [0, 1, 0]], dtype=bool)
    wrong_where_masked = np.array([[1, 0, 1], [0, 1, 0]], dtype=bool)
    a = compute_metrics(gold, mask, right, LABELS)
    b = compute_metrics(gold, mask, wrong_where_masked, LABELS)
    for key in ("micro_f1", "macro_f1", "samples_f1", "hamming_loss", "subset_accuracy"):
        assert a[key] == b[key]
    assert b["hamming_loss"] == 0.0


def test_an_article_with_no_annotated_entry_counts_in_no_per_article_figure():
    gold = np.array([[1, 0, 0], [0, 0, 0]], dtype=np.float32)
    pred = np.array([[0, 1, 0], [0, 0, 0]], dtype=bool)
    nothing_known = np.array([[1, 1, 1], [0, 0, 0]], dtype=np.float32)  # row 2: every label null
    m = compute_metrics(gold, nothing_known, pred, LABELS)
    # row 1 alone: wrong, so 0; before, row 2 (no answer to judge) counted as a right "none"
    assert m["samples_f1"] == 0.0 and m["subset_accuracy"] == 0.0
    assert m["records"] == 2
    empty = compute_metrics(gold, np.zeros_like(gold), pred, LABELS)
    assert empty["samples_f1"] == 0.0 and empty["subset_accuracy"] == 0.0


def test_soft_gold_counts_from_one_half_and_macro_skips_labels_without_support():
    gold = np.array([[0.6, 0.4, 0.0]], dtype=np.float32)
    m = compute_metrics(gold, np.ones_like(gold), np.array([[True, False, False]]), LABELS)
    assert m["micro_f1"] == 1.0
    assert m["labels_with_support"] == 1 and m["macro_f1"] == 1.0


def test_frequency_group_scores():
    from mlcls.decision.metrics import frequency_group_scores

    gold = np.array([[1, 0, 1], [1, 1, 0], [0, 0, 1]], dtype=np.float32)
    pred = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 1]], dtype=bool)
    report = compute_metrics(gold, np.ones_like(gold), pred, LABELS)
    groups = frequency_group_scores(report["per_label"], {"a": 100, "b": 20, "c": 2})
    assert groups["head"] == {"labels": 1, "micro_f1": 1.0, "macro_f1": 1.0}
    # b: TP 1, FP 1 -> F1 2/3; c: TP 1, FN 1 -> F1 2/3
    assert groups["medium"]["micro_f1"] == pytest.approx(2 / 3)
    assert groups["tail"]["macro_f1"] == pytest.approx(2 / 3)


def test_an_empty_frequency_group_is_null_not_zero():
    from mlcls.decision.metrics import frequency_group_scores
    from mlcls.evaluation.report import compare_table

    gold = np.array([[1, 0, 1], [1, 1, 0]], dtype=np.float32)
    report = compute_metrics(gold, np.ones_like(gold), gold.astype(bool), LABELS)
    groups = frequency_group_scores(report["per_label"], {"a": 100, "b": 100, "c": 100})  # no tail label
    assert groups["tail"] == {"labels": 0, "micro_f1": None, "macro_f1": None}
    assert groups["head"]["macro_f1"] == 1.0
    report["frequency_groups"] = groups
    rows = {row: cells for row, *cells in _rows(compare_table(["r"], [report]))}
    assert "tail macro-F1" not in rows and rows["head macro-F1"] == ["1.0000"]


def _rows(table):
    columns = [list(c.cells) for c in table.columns]
    return list(zip(*columns, strict=True))


def test_names_that_look_like_markup_are_shown_as_written():
    """Labels, runs and files are the user's: "[draft]" used to vanish from the tables and "[/x]" stopped `mlcls
    eval` with a MarkupError after all the scoring."""
    from rich.console import Console

    from mlcls.evaluation.report import compare_table, per_label_table, stats_tables, summary_table

    labels = ["[draft]", "[/x]", "[bold]y"]
    gold = np.array([[1, 0, 1], [1, 1, 0]], dtype=np.float32)
    report = compute_metrics(gold, np.ones_like(gold), gold.astype(bool), labels)
    report["decision_rule"] = "threshold 0.5"
    console = Console(record=True, width=200, color_system=None)
    console.print(per_label_table(report))
    console.print(summary_table(report, "data/[test].jsonl with exp[v2]"))
    console.print(compare_table(["exp[v2]", "[/b]"], [report, report]))
    stats = {"file": "[/f].jsonl", "records": 2, "labels_per_record": {2: 2}, "mean_labels_per_record": 2.0,
             "distinct_labels": 3, "not_annotated_entries": 0, "soft_entries": 0,
             "group_rule": {"head_min": 10, "tail_max": 2}, "groups": {}, "label_frequencies": {"[/x]": 1}}
    for table in stats_tables(stats):
        console.print(table)
    text = console.export_text()
    for shown in (*labels, "data/[test].jsonl with exp[v2]", "exp[v2]", "[/b]", "[/f].jsonl"):
        assert shown in text, shown


def test_one_label_is_scored_as_a_label_not_as_binary_classes():
    """scikit-learn reads a single column as binary targets: micro-F1 was the accuracy (the agreed negatives
    counted), and the per-label row was the class 0's. One label's figures are that label's F1."""
    gold = np.array([[1], [0], [1], [0]], dtype=np.float32)
    predicted = np.array([[1], [0], [0], [0]], dtype=bool)
    report = compute_metrics(gold, np.ones_like(gold), predicted, ["cocoa"])
    assert report["micro_f1"] == pytest.approx(2 / 3) and report["macro_f1"] == pytest.approx(2 / 3)
    [row] = report["per_label"]
    assert (row["label"], row["support"], row["predicted"], row["precision"], row["recall"]) == ("cocoa", 2, 1, 1.0,
                                                                                                   0.5)
    assert report["labels_with_support"] == 1 and report["hamming_loss"] == pytest.approx(1 / 4)
    assert report["samples_f1"] == pytest.approx((1 + 1 + 0 + 1) / 4)  # empty & empty is right (F1 1)
    assert report["subset_accuracy"] == pytest.approx(3 / 4)
