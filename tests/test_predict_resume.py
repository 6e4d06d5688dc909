"""An interrupted prediction run keeps whole lines, and --resume completes it to exactly the uninterrupted output."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from mlcls.cli import app
from mlcls.data.records import read_records
from mlcls.errors import MlclsError
from mlcls.inference.loading import load_run
from mlcls.inference.predict import PredictionInterrupted, predict_to_file
from tests.conftest import TINY_RECORDS, write_jsonl

runner = CliRunner()


def interrupt_after(records, n):
    for i, record in enumerate(records):
        if i == n:
            raise KeyboardInterrupt
        yield record


@pytest.fixture()
def setup(trained, tmp_path):
    folder, _, _ = trained
    run = load_run(folder / "runs" / "tiny")
    data = write_jsonl(tmp_path / "in.jsonl", [{"id": f"r{i}", "text": r["text"]} for i, r in
                                               enumerate(TINY_RECORDS * 3)])
    reference = tmp_path / "reference.jsonl"
    predict_to_file(run, read_records(data, require_labels=False), reference, 4)
    return run, data, reference, tmp_path


def test_interrupted_then_resumed_equals_uninterrupted(setup):
    run, data, reference, tmp_path = setup
    out = tmp_path / "out.jsonl"
    with pytest.raises(PredictionInterrupted, match=r"interrupted: 10 predictions kept in .*out\.jsonl\.partial"):
        predict_to_file(run, interrupt_after(read_records(data, require_labels=False), 11), out, 4, chunk_records=5)
    partial = tmp_path / "out.jsonl.partial"
    assert not out.exists() and len(partial.read_text().splitlines()) == 10
    # a kill in the middle of a line leaves a torn last line: resume cuts it off
    with open(partial, "a") as handle:
        handle.write('{"id": "r10", "lab')
    written = predict_to_file(run, read_records(data, require_labels=False), out, 4, resume=True, chunk_records=5)
    assert written == 26 and not partial.exists()
    assert out.read_bytes() == reference.read_bytes()


def test_resume_refuses_a_partial_output_of_other_input(setup):
    run, data, _, tmp_path = setup
    out = tmp_path / "out.jsonl"
    partial = tmp_path / "out.jsonl.partial"
    partial.write_text(json.dumps({"id": "zzz", "labels": [], "scores": {}}) + "\n")
    with pytest.raises(MlclsError, match=r"out\.jsonl\.partial:1: has id 'zzz' where the input has id 'r0'"):
        predict_to_file(run, read_records(data, require_labels=False), out, 4, resume=True)
    assert partial.exists()  # the user's progress is not thrown away
    with pytest.raises(MlclsError, match="nothing to resume"):
        predict_to_file(run, read_records(data, require_labels=False), tmp_path / "other.jsonl", 4, resume=True)


def test_a_failing_fresh_run_leaves_no_file(setup):
    run, _, _, tmp_path = setup
    bad = write_jsonl(tmp_path / "bad.jsonl", ['{"text": "oil"}', '{"text": 1}'])
    out = tmp_path / "out.jsonl"
    with pytest.raises(MlclsError):
        predict_to_file(run, read_records(bad, require_labels=False), out, 4, chunk_records=1)
    assert list(tmp_path.glob("out.jsonl*")) == []


def test_cli_resume_needs_an_output_file(setup):
    run, data, _, _ = setup
    result = runner.invoke(app, ["predict", str(data), "--model", str(run.path), "--resume"])
    assert result.exit_code == 1 and "--resume needs --output" in result.stderr
