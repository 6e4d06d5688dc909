"""Hand-edited run files: a field of the wrong type, a per-label rule that leaves a label out, min_labels other
than 0 or 1, an export manifest with a field of the wrong type. Each is one line naming the file and the field
(`thresholds.json: field top_k: expected an integer >= 1, got "3"`), never an internal error, and never taken
silently (before: a per_label rule gave a missing label the global cut-off, and min_labels 5 acted as 1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlcls.errors import RunDirError
from mlcls.run.validation import validate_run
from tests.conftest import one_line
from tests.run.conftest import _run_copy
from tests.run.hand_edits import edit_json as _edit
from tests.run.hand_edits import predict_error as _predict_error


def _refused(run: Path, name: str) -> str:
    """validate_run's one line about `run`/`name`, after the path."""
    with pytest.raises(RunDirError) as info:
        validate_run(run)
    message = one_line(info.value)
    assert message.startswith(f"{run / name}: "), message
    return message.removeprefix(f"{run / name}: ")


def _set(key, value):
    return lambda data: data.__setitem__(key, value)


@pytest.mark.parametrize(("change", "expected"), [
    (_set("top_k", "3"), 'field top_k: expected an integer >= 1, got "3"'),
    (_set("top_k", 0), "field top_k: expected an integer >= 1, got 0"),
    (_set("min_labels", "x"), 'field min_labels: expected 0 or 1 (1: an article left with no label gets its '
                              'highest-scoring one), got "x"'),
    (_set("per_label", {"cocoa": "0.35", "grain": 0.3, "oil": 0.3}),
     "field per_label: the cut-off of 'cocoa' is \"0.35\", not a number in [0, 1]"),
    (_set("per_label", ["cocoa"]), 'field per_label: expected an object of label -> cut-off, got ["cocoa"]'),
    (_set("fallback_labels", [1, 2]), "field fallback_labels: expected a list of label names, got [1, 2]"),
    (_set("quantile_scale", None), "field quantile_scale: expected a number > 0, got null"),
    (_set("threshold", True), "field threshold: expected a number in [0, 1], got true"),
    (_set("auto_scores", {"global": "high"}), 'field auto_scores: expected null or an object of rule -> score, '
                                              'got {"global": "high"}'),
    (_set("tuned_on", 3), "field tuned_on: expected a string or null, got 3"),
    (_set("scale_scores", {"best": 0.5}), 'field scale_scores: expected null or an object of scale (a number > 0) '
                                          '-> score, got {"best": 0.5}'),
    (_set("rule", None), "field rule: expected one of per_label, global, fixed, top_k, prior_quantile, hybrid, "
                         "got null"),
    (lambda data: data.pop("threshold"), "field threshold: missing"),
    (_set("extra", 1), 'unknown field "extra" (the fields: rule, threshold, per_label, top_k, min_labels, tuned_on, '
                       "fallback_labels, auto_scores, quantile_scale, scale_scores)"),
], ids=["top_k-string", "top_k-0", "min_labels-string", "per_label-string", "per_label-list", "fallback-numbers",
        "quantile_scale-null", "threshold-bool", "auto_scores-string", "tuned_on-number", "scale_scores-name",
        "rule-null", "threshold-missing", "unknown-field"])
def test_a_thresholds_field_of_the_wrong_type_is_named(trained, tmp_path, change, expected):
    run = _run_copy(trained, tmp_path)
    _edit(run, "thresholds.json", change)
    assert _refused(run, "thresholds.json") == expected


def test_a_rule_field_of_the_wrong_type_is_an_error_line_in_predict(trained, tmp_path):
    # Before: "top_k": "3" in a top_k rule was an internal error (TypeError) when the first article was scored.
    run = _run_copy(trained, tmp_path)
    _edit(run, "thresholds.json", lambda data: data.update(rule="top_k", top_k="3"))
    assert _predict_error(run) == f'error: {run / "thresholds.json"}: field top_k: expected an integer >= 1, got "3"'


def test_min_labels_other_than_0_or_1_is_refused(trained, tmp_path):
    # Before: min_labels 5 was taken, and acted as 1 (at least one label, not five).
    run = _run_copy(trained, tmp_path)
    _edit(run, "thresholds.json", _set("min_labels", 5))
    assert _refused(run, "thresholds.json").startswith("field min_labels: expected 0 or 1 ")
    assert "field min_labels: expected 0 or 1" in _predict_error(run)


def test_a_per_label_rule_missing_a_label_is_refused(trained, tmp_path):
    # Before: the missing label silently took the global cut-off. mlcls's own rules list every label
    # (decision.tuning.tune; test_rules_written_by_mlcls_list_every_label), so a gap is a hand edit.
    run = _run_copy(trained, tmp_path)
    _edit(run, "thresholds.json", lambda data: data["per_label"].pop("oil"))
    expected = ("field per_label: no cut-off for 1 label(s) of labels.json ('oil'); a per_label rule gives every "
                "label its own")
    assert _refused(run, "thresholds.json") == expected
    assert _predict_error(run) == f"error: {run / 'thresholds.json'}: {expected}"
    # A rule with one cut-off for all (global, fixed, top_k) keeps none per label.
    _edit(run, "thresholds.json", lambda data: data.update(rule="global", per_label={}))
    validate_run(run)


@pytest.mark.parametrize("rule", ["per_label", "hybrid", "prior_quantile"])
def test_rules_written_by_mlcls_list_every_label(rule):
    import numpy as np

    from mlcls.decision.tuning import tune

    rng = np.random.default_rng(0)
    labels = ["a", "b", "c", "never"]
    targets = (rng.random((40, 4)) < [0.5, 0.3, 0.05, 0.0]).astype(np.float32)
    mask = np.ones_like(targets)
    mask[:, 3] = 0  # a label never annotated in the tuning scores: it falls back, but keeps its cut-off
    probs = rng.random((40, 4)).astype(np.float32)
    tuned = tune(probs, targets, mask, labels, rule, priors=np.array([0.5, 0.3, 0.05, 0.01]))
    assert sorted(tuned.per_label) == labels


@pytest.mark.parametrize(("content", "expected"), [
    ({"labels": "cocoa"}, 'field labels: expected a non-empty list of label names, got "cocoa"'),
    ({"labels": []}, "field labels: expected a non-empty list of label names, got []"),
    ({"labels": ["cocoa", 2, "oil"]}, "field labels[1]: expected a label name (a string), got 2"),
    ({"labels": ["cocoa", "oil", "cocoa"]}, 'field labels[2]: "cocoa" is listed twice'),
    (["cocoa", "grain", "oil"], 'expected a JSON object {"labels": [names]}, got ["cocoa", "grain", "oil"]'),
])
def test_a_labels_field_of_the_wrong_type_is_named(trained, tmp_path, content, expected):
    run = _run_copy(trained, tmp_path)
    (run / "labels.json").write_text(json.dumps(content))
    assert _refused(run, "labels.json") == expected


@pytest.mark.parametrize(("change", "expected"), [
    (_set("num_records", "12"), 'field num_records: expected an integer >= 0, got "12"'),
    (_set("labels", ["cocoa"]), 'field labels: expected an object of label -> counts, got ["cocoa"]'),
    (lambda data: data["labels"].__setitem__("oil", 4), "field labels.oil: expected an object with positives and "
                                                        "annotated, got 4"),
    (lambda data: data["labels"]["oil"].__setitem__("positives", "4"),
     'field labels.oil.positives: expected a number >= 0, got "4"'),
    (lambda data: data["labels"]["oil"].pop("annotated"), "field labels.oil.annotated: expected a number >= 0, got "
                                                          "null"),
    (lambda data: data["labels"].__setitem__("wheat", data["labels"].pop("oil")),
     "field labels: counts other labels than labels.json (they differ in 'oil', 'wheat'): the files come from "
     "different runs"),
], ids=["num_records-string", "labels-list", "label-number", "positives-string", "annotated-missing", "other-labels"])
def test_a_label_stats_field_of_the_wrong_type_is_named(trained, tmp_path, change, expected):
    # Before: validate_run did not read label_stats.json, and `eval` dropped a malformed one silently.
    from mlcls.run.files import peek_label_stats

    run = _run_copy(trained, tmp_path)
    _edit(run, "label_stats.json", change)
    assert _refused(run, "label_stats.json") == expected
    assert peek_label_stats(run) is None or expected.endswith("different runs")  # lenient: the card still renders


def test_a_config_field_of_the_wrong_type_is_named(trained, tmp_path):
    import yaml

    run = _run_copy(trained, tmp_path)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["train"]["epochs"] = "3"
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    assert _refused(run, "config.yaml") == "train.epochs: expected an integer, got '3'"


# ------------------------------------------------------------------------------------------ export.json

ONNX_MANIFEST = {"format": "onnx", "file": "model.onnx", "quantize": None, "vocab_size": 33, "num_labels": 3,
                 "source_run": "/somewhere/runs/tiny", "check": {"max_abs_diff": 1e-7}}


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("quantize", "yes", 'field quantize: expected null or "int8", got "yes"'),
    ("vocab_size", "33", 'field vocab_size: expected an integer >= 1, got "33"'),
    ("vocab_size", 0, "field vocab_size: expected an integer >= 1, got 0"),
    ("source_run", ["runs/tiny"], 'field source_run: expected a path (a string on one line), got ["runs/tiny"]'),
    ("source_run", "runs/\ntiny", 'field source_run: expected a path (a string on one line), got "runs/\\ntiny"'),
])
def test_an_export_manifest_field_of_the_wrong_type_is_named(tmp_path, field, value, expected):
    from mlcls.run.files import export_format, peek_manifest, read_onnx_manifest

    path = tmp_path / "export.json"
    path.write_text(json.dumps({**ONNX_MANIFEST, field: value}))
    for read in (read_onnx_manifest, peek_manifest, export_format):
        with pytest.raises(RunDirError) as info:
            read(tmp_path)
        assert one_line(info.value) == f"{path}: {expected}"


def test_an_export_manifest_of_another_format_is_named(tmp_path):
    from mlcls.run.files import export_format, peek_manifest, read_onnx_manifest

    path = tmp_path / "export.json"
    path.write_text(json.dumps({**ONNX_MANIFEST, "format": 3}))
    with pytest.raises(RunDirError, match=r'field format: expected "onnx" or "hf", got 3$'):
        export_format(tmp_path)  # before: "3", which no caller expected
    with pytest.raises(RunDirError, match=r'not the manifest of an mlcls ONNX export \(field format: expected "onnx", '
                                          r'got 3\)$'):
        read_onnx_manifest(tmp_path)
    path.write_text(json.dumps({**ONNX_MANIFEST, "format": "hf", "quantize": None}))
    assert export_format(tmp_path) == "hf" and peek_manifest(tmp_path)["source_run"] == "/somewhere/runs/tiny"
    path.write_text(json.dumps({"format": "onnx"}))  # the fields besides format are checked where present
    assert read_onnx_manifest(tmp_path) == {"format": "onnx"}
