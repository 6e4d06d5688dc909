"""Any JSON value in any field of a run's small files (thresholds.json, labels.json, label_stats.json,
config.yaml) and of an export's manifest (export.json) gives either a run that validates and predicts, or a
one-line RunDirError / MlclsError that names the file and the field: never another exception.

Hypothesis puts the values into a copy of the tiny run. Every example calls validate_run and the readers
directly; the valid ones (a minority: most values are refused) run `mlcls predict` too, in process (a tenth of a
second each)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlcls.errors import MlclsError
from mlcls.run.files import peek_label_stats, read_config, read_label_stats, read_labels, read_rule
from mlcls.run.validation import validate_run
from tests.conftest import one_line
from tests.run.conftest import _run_copy
from tests.run.hand_edits import predict

DELETE = object()  # the field left out
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=8,
)
# Values near the valid ones too (the run's label and rule names, small counts, cut-offs), or most examples would
# stop at the first type check and never reach what comes after it.
NEAR = (st.integers(-1, 5) | st.floats(0, 1) | st.sampled_from(["cocoa", "grain", "oil", "per_label", "global",
                                                                  "fixed", "top_k", "prior_quantile", "hybrid"]))
VALUES = JSON | NEAR | st.lists(NEAR, max_size=4) | st.dictionaries(NEAR.filter(lambda v: isinstance(v, str)), NEAR,
                                                                      max_size=4) | st.just(DELETE)
FUZZ = settings(max_examples=40, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _fields(data, prefix=()) -> list[tuple]:
    """Every field of a parsed file, as a key path: nested objects' fields and lists' items too."""
    paths = []
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else []
    for key, value in items:
        paths.append((*prefix, key))
        paths += _fields(value, (*prefix, key))
    return paths


def _put(data, path: tuple, value):
    node = data
    for key in path[:-1]:
        node = node[key]
    if value is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value


class _Fuzzed:
    """A copy of the tiny run, one file of which each example rewrites (and restores)."""

    def __init__(self, trained, tmp_path: Path, name: str):
        self.run = _run_copy(trained, tmp_path)
        self.name = name
        self.original = (self.run / name).read_text()
        self.load = yaml.safe_load if name.endswith(".yaml") else json.loads
        self.dump = yaml.safe_dump if name.endswith(".yaml") else json.dumps
        self.fields = _fields(self.load(self.original))
        self.outcomes: Counter = Counter()

    def check(self, path: tuple, value) -> None:
        data = self.load(self.original)
        _put(data, path, value)
        (self.run / self.name).write_text(self.dump(data))
        try:
            self._check(path)
        finally:
            (self.run / self.name).write_text(self.original)

    def _check(self, path: tuple) -> None:
        try:
            validate_run(self.run)
        except MlclsError as exc:
            self._named(one_line(exc), path)
            self.outcomes["refused"] += 1
            return
        config, labels = read_config(self.run), read_labels(self.run).labels  # what predict reads, then uses
        rule = read_rule(self.run, labels)
        chosen = rule.apply(np.random.default_rng(0).random((5, len(labels))).astype(np.float32), labels)
        assert chosen.shape == (5, len(labels)) and rule.describe() and config.model.max_length >= 1
        stats = read_label_stats(self.run, labels)
        assert stats is None or np.all(np.isfinite(stats.prior()))
        assert (peek_label_stats(self.run) is None) == (stats is None)
        self.outcomes["valid"] += 1
        result = predict(self.run)  # scores, or refuses in one line (data.text_fields: "x" wants another input)
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 0 or result.exit_code == 1 and len(lines) == 1 and lines[0].startswith(
            "error: ") and "internal error" not in lines[0], result.output

    def _named(self, message: str, path: tuple) -> None:
        """A refusal names a file of the run; when it is the edited file, it names the field too (config.yaml: the
        key or its section, as `unknown loss 'x'` does), or the other file it disagrees with."""
        assert message.startswith(str(self.run)), message
        if message.startswith(f"{self.run / self.name}:") and "the files come from different runs" not in message:
            fields = [str(key) for key in path] if self.name.endswith(".yaml") else [path[0]]
            assert any(field in message for field in fields), (path, message)


def _fuzz(fuzzed: _Fuzzed, data) -> None:
    path = data.draw(st.sampled_from(fuzzed.fields), label="field")
    fuzzed.check(path, data.draw(VALUES, label="value"))


@pytest.mark.parametrize("name", ["thresholds.json", "labels.json", "label_stats.json"])
def test_any_json_in_any_field_of_a_run_file_is_valid_or_one_line_naming_it(trained, tmp_path, name):
    fuzzed = _Fuzzed(trained, tmp_path, name)

    @FUZZ
    @given(st.data())
    def run(data):
        _fuzz(fuzzed, data)

    run()
    assert fuzzed.outcomes["refused"] > 0


def test_any_value_in_any_key_of_a_run_config_is_valid_or_one_line_naming_it(trained, tmp_path):
    fuzzed = _Fuzzed(trained, tmp_path, "config.yaml")
    fuzzed.fields = [path for path in fuzzed.fields if len(path) == 2]  # section.key (not a list's items)

    @settings(FUZZ, max_examples=80)
    @given(st.data())
    def run(data):
        _fuzz(fuzzed, data)

    run()
    assert fuzzed.outcomes["refused"] > 0


MANIFEST = {"format": "onnx", "file": "model.onnx", "quantize": None, "inputs": ["input_ids", "attention_mask"],
            "vocab_size": 33, "num_labels": 3, "max_length": 32, "source_run": "/somewhere/runs/tiny",
            "created": "2024-01-01T00:00:00+00:00", "check": {"max_abs_diff": 1e-7, "rows": 12}}


@FUZZ
@given(field=st.sampled_from(list(MANIFEST)), value=VALUES)
def test_any_json_in_any_field_of_an_export_manifest_is_read_or_one_line_naming_it(tmp_path_factory, field, value):
    from mlcls.run.files import export_format, peek_manifest, read_onnx_manifest

    folder = tmp_path_factory.mktemp("export")
    manifest = dict(MANIFEST)
    _put(manifest, (field,), value)
    (folder / "export.json").write_text(json.dumps(manifest))
    for read in (read_onnx_manifest, peek_manifest, export_format):
        try:
            got = read(folder)
        except MlclsError as exc:
            message = one_line(exc)
            assert message.startswith(f"{folder / 'export.json'}: ") and field in message, message
            continue
        # What the code reads back is of its type (inference/onnx_run.py, inference/loading.py, the card).
        got = {"format": got} if read is export_format else got
        assert got["format"] in ("onnx", "hf") and got.get("quantize") in (None, "int8")
        assert "vocab_size" not in got or type(got["vocab_size"]) is int and got["vocab_size"] >= 1
        assert "source_run" not in got or isinstance(got["source_run"], str) and got["source_run"].isprintable()
