"""`--resume` checks more than ids: OUTPUT.partial.sha256 holds a running sha256 over the id and text of every
record whose prediction is in OUTPUT.partial, and input whose first records changed is refused in one line."""

from __future__ import annotations

import json
import os

import pytest
from typer.testing import CliRunner

from mlcls.cli import app
from mlcls.data.records import read_records
from mlcls.errors import MlclsError
from mlcls.inference.loading import load_run
from mlcls.inference.predict import PredictionInterrupted, predict_to_file
from tests.conftest import TINY_RECORDS, one_line, write_jsonl
from tests.inference.test_predict_resume import interrupt_after

runner = CliRunner()
ROWS = [{"id": f"r{i}", "text": r["text"]} for i, r in enumerate(TINY_RECORDS * 3)]


@pytest.fixture()
def interrupted(trained, tmp_path):
    """A run stopped after 10 of 36 predictions (chunks of 5), its input, the reference output."""
    folder, _, _ = trained
    run = load_run(folder / "runs" / "tiny")
    data = write_jsonl(tmp_path / "in.jsonl", ROWS)
    reference = tmp_path / "reference.jsonl"
    predict_to_file(run, read_records(data, require_labels=False), reference, 4)
    out = tmp_path / "out.jsonl"
    with pytest.raises(PredictionInterrupted):
        predict_to_file(run, interrupt_after(read_records(data, require_labels=False), 11), out, 4, chunk_records=5)
    return run, data, reference, out


def _resume(run, data, out):
    return predict_to_file(run, read_records(data, require_labels=False), out, 4, resume=True, chunk_records=5).new


def test_the_checksum_is_kept_beside_the_partial_output_and_removed_at_the_end(interrupted):
    run, data, reference, out = interrupted
    sidecar = out.with_name("out.jsonl.partial.sha256")
    assert json.loads(sidecar.read_text())["records"] == 10
    assert _resume(run, data, out) == 26
    assert out.read_bytes() == reference.read_bytes() and not sidecar.exists()


def test_resume_refuses_input_whose_text_changed_under_the_same_id(interrupted):
    run, data, _, out = interrupted
    partial = out.with_name("out.jsonl.partial")
    before = partial.read_bytes()
    changed = [dict(row, text="crude oil barrel") if row["id"] == "r3" else row for row in ROWS]
    write_jsonl(data, changed)
    with pytest.raises(MlclsError) as info:
        _resume(run, data, out)
    assert one_line(info.value) == (f"{partial}: the input's first 10 records are not the ones these predictions "
                                    "were made from (same ids, but a text changed); run again without --resume")
    assert partial.read_bytes() == before and not out.exists()  # nothing written, nothing thrown away
    # a text changed after the records already predicted is no reason to refuse
    write_jsonl(data, [dict(row, text="museum festival") if row["id"] == "r20" else row for row in ROWS])
    assert _resume(run, data, out) == 26


def test_resume_refuses_a_missing_or_garbled_checksum(interrupted):
    run, data, _, out = interrupted
    partial, sidecar = out.with_name("out.jsonl.partial"), out.with_name("out.jsonl.partial.sha256")
    sidecar.write_text("{not json")
    with pytest.raises(MlclsError, match=r"out\.jsonl\.partial\.sha256: not a checksum of .*without --resume$"):
        _resume(run, data, out)
    sidecar.unlink()
    with pytest.raises(MlclsError, match=r"out\.jsonl\.partial: no checksum beside it \(out\.jsonl\.partial\.sha256\)"):
        _resume(run, data, out)
    assert len(partial.read_text().splitlines()) == 10


def test_lines_written_after_the_last_checksum_are_predicted_again(interrupted):
    # A kill between writing a chunk's lines and updating the checksum leaves lines it does not vouch for
    # (here made by hand, with predictions that are wrong on purpose): resume cuts them and predicts again.
    run, data, reference, out = interrupted
    partial = out.with_name("out.jsonl.partial")
    with open(partial, "a") as handle:
        for i in (10, 11):
            handle.write(json.dumps({"id": f"r{i}", "labels": ["stale"], "scores": {}}) + "\n")
    assert _resume(run, data, out) == 26
    assert out.read_bytes() == reference.read_bytes()


def test_a_fresh_run_replaces_a_stale_checksum(interrupted):
    run, data, reference, out = interrupted
    sidecar = out.with_name("out.jsonl.partial.sha256")
    stale = sidecar.read_text()
    with pytest.raises(PredictionInterrupted, match="7 predictions kept"):
        predict_to_file(run, interrupt_after(read_records(data, require_labels=False), 7), out, 4, chunk_records=1)
    assert sidecar.read_text() != stale and json.loads(sidecar.read_text())["records"] == 7
    assert _resume(run, data, out) == 29 and out.read_bytes() == reference.read_bytes()


def test_cli_resume_of_changed_input_is_one_line(interrupted):
    run, data, _, out = interrupted
    write_jsonl(data, [dict(row, text=row["text"] + " oil") for row in ROWS])
    result = runner.invoke(app, ["predict", str(data), "--model", str(run.path), "-o", str(out), "--resume"])
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert "a text changed); run again without --resume" in result.stderr and "Traceback" not in result.output


@pytest.mark.parametrize(("change", "said"), [
    ({"scores": "all"}, "was written with --scores 'predicted', this command has 'all'"),
    ({"rule": "threshold"}, "was written with another decision rule (--threshold, --top-k, --min-labels) than"),
    ({"fmt": "csv"}, None),  # --resume takes JSONL only: refused before the recipe is read
])
def test_resume_refuses_predictions_made_otherwise(interrupted, change, said):
    """Another --scores, rule (--threshold, --top-k, --min-labels) or model would append predictions made
    otherwise than the lines kept: the file would mix the two, where it must equal an uninterrupted run's."""
    from mlcls.decision.rules import with_overrides

    run, data, _, out = interrupted
    partial = out.with_name("out.jsonl.partial")
    before = partial.read_bytes()
    options = {"scores": change.get("scores", "predicted"), "fmt": change.get("fmt", "jsonl"),
               "rule": with_overrides(run.thresholds, 0.01, None, None) if "rule" in change else None}
    with pytest.raises(MlclsError) as info:
        predict_to_file(run, read_records(data, require_labels=False), out, 4, options["rule"], options["scores"],
                        options["fmt"], resume=True, chunk_records=5)
    if said is not None:
        assert said in one_line(info.value) and "resume with the interrupted command's model" in str(info.value)
    assert partial.read_bytes() == before and not out.exists()


def test_resume_refuses_a_run_trained_again_under_the_same_path(interrupted):
    run, data, _, out = interrupted
    head = run.path / "head.safetensors"
    stat = head.stat()
    try:
        os.utime(head, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # what training the run again does to it
        with pytest.raises(MlclsError, match=r"was written with another version of the run's files \(trained"):
            _resume(run, data, out)
    finally:
        os.utime(head, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # the shared run as it was
