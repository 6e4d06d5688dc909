from __future__ import annotations

import json

from typer.testing import CliRunner

from mlcls.cli import app
from mlcls.data.records import Record
from mlcls.data.stats import dataset_stats, frequency_group
from tests.conftest import TINY_RECORDS, write_jsonl

runner = CliRunner()


def records(label_lists):
    return [Record(str(i), "t", labels, i + 1) for i, labels in enumerate(label_lists)]


def test_counts_groups_and_lengths():
    data = records([{}, {"a": 1.0}, {"a": 1.0, "b": 1.0}, {"a": 1.0, "b": 0.4, "c": None},
                    {"a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0}])
    stats = dataset_stats(data, token_lengths=[10, 20, 30, 40, 200], max_length=32, head_min=3, tail_max=1)
    assert stats["records"] == 5
    assert stats["labels_per_record"] == {"0": 1, "1": 2, "2": 1, "3+": 1}  # b at 0.4 is not a positive
    assert stats["label_frequencies"] == {"a": 4, "b": 2, "c": 1, "d": 1}
    assert stats["groups"]["head"]["members"] == ["a"]
    assert stats["groups"]["medium"]["members"] == ["b"]
    assert stats["groups"]["tail"]["members"] == ["c", "d"]
    assert stats["not_annotated_entries"] == 1 and stats["soft_entries"] == 1
    assert stats["tokens"]["p50"] == 30 and stats["tokens"]["max"] == 200
    assert stats["tokens"]["share_truncated"] == 2 / 5


def test_default_groups_follow_the_reuters_convention():
    assert [frequency_group(n) for n in (35, 34, 8, 7, 1)] == ["head", "medium", "medium", "tail", "tail"]


def test_cli_stats_with_json(tmp_path, tiny_encoder):
    path = write_jsonl(tmp_path / "d.jsonl", TINY_RECORDS)
    out = tmp_path / "stats.json"
    result = runner.invoke(app, ["data", "stats", str(path), "--model", str(tiny_encoder), "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["records"] == 12 and report["labels_per_record"]["0"] == 3
    assert report["label_frequencies"] == {"grain": 5, "cocoa": 4, "oil": 4}
    assert report["tokens"]["max"] >= 5
    assert "label groups" in result.stdout and "text length in tokens" in result.stdout
    assert report["notes"] == [] and "note:" not in result.stderr
    # an id twice and a blank line: said, and every record still counted
    path.write_text(path.read_text() + "\n" + json.dumps({**TINY_RECORDS[0], "text": "cocoa again"}) + "\n")
    result = runner.invoke(app, ["data", "stats", str(path), "--model", str(tiny_encoder), "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["records"] == 13
    assert report["notes"] == [f"1 blank line in {path} was not a record",
                               f"1 record of {path} repeats an earlier record's id (first: {path}:14 has the id "
                               f"'a1' of {path}:1); each is kept as its own article"]
    assert f"note: 1 blank line in {path}" in result.stderr


def test_data_stats_with_an_encoder_that_does_not_load_is_one_line(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "oil prices", "labels": ["crude"]}])
    for model, said in ((str(tmp_path / "no-such-encoder"), "no such folder"), (str(tmp_path), "cannot load encoder")):
        result = runner.invoke(app, ["data", "stats", str(path), "--model", model])
        assert result.exit_code == 1, result.output
        assert result.stderr.strip().count("\n") == 0 and said in result.stderr and "internal" not in result.stderr
