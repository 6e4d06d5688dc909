"""An interrupted prediction run keeps whole lines, and --resume completes it to exactly the uninterrupted output."""

from __future__ import annotations

import json
import os
import re

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
    assert written == (26, 10) and written.total == 36 and not partial.exists()
    assert out.read_bytes() == reference.read_bytes()


def terminate_after(records, n):
    """SIGTERM to this process (a scheduler's time limit) once n records were read."""
    import signal

    for i, record in enumerate(records):
        if i == n:
            os.kill(os.getpid(), signal.SIGTERM)
        yield record


def test_sigterm_keeps_the_partial_output_as_ctrl_c_does(setup):
    import signal

    run, data, reference, tmp_path = setup
    out = tmp_path / "out.jsonl"
    with pytest.raises(PredictionInterrupted, match=r"stopped by SIGTERM: 10 predictions kept in .*out\.jsonl\.part"
                       ) as caught:
        predict_to_file(run, terminate_after(read_records(data, require_labels=False), 11), out, 4, chunk_records=5)
    assert caught.value.exit_code == 143
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # given back once the file is done with
    assert not out.exists() and len((tmp_path / "out.jsonl.partial").read_text().splitlines()) == 10
    predict_to_file(run, read_records(data, require_labels=False), out, 4, resume=True, chunk_records=5)
    assert out.read_bytes() == reference.read_bytes()


def test_sigterm_through_the_cli_says_how_to_go_on(setup, monkeypatch):
    import signal

    import mlcls.inference.predict as predict_module

    run, data, _, tmp_path = setup
    real = predict_module.score_records

    def scored_then_terminated(*args, **kwargs):  # SIGTERM once the first chunk is written: no sleep to guess at
        for i, chunk in enumerate(real(*args, **kwargs)):
            yield chunk
            if i == 0:
                os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(predict_module, "score_records", scored_then_terminated)
    out = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["predict", str(data), "--model", str(run.path), "-o", str(out)])
    assert result.exit_code == 143, result.output
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("stopped by SIGTERM: ") and line.endswith("rerun with --resume to continue")
    assert "Traceback" not in result.output and not out.exists() and (tmp_path / "out.jsonl.partial").exists()
    monkeypatch.undo()
    resumed = runner.invoke(app, ["predict", str(data), "--model", str(run.path), "-o", str(out), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    # the count is the file's, the lines kept from the stopped run included (it said 0 when they were all kept)
    said = re.search(r"(\d+) predictions written to \S+out\.jsonl, (\d+) of them written by an earlier run",
                     " ".join(resumed.stderr.split()))
    assert said is not None, resumed.stderr
    assert int(said[1]) == len(out.read_text().splitlines()) and 0 < int(said[2]) <= int(said[1])


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


def test_cli_resume_needs_a_jsonl_output_file_before_the_run_loads(setup, monkeypatch):
    import mlcls.inference.loading

    run, data, _, tmp_path = setup

    def not_now(*args, **kwargs):
        raise AssertionError("the run was loaded before the options were checked")

    monkeypatch.setattr(mlcls.inference.loading, "load_run", not_now)
    result = runner.invoke(app, ["predict", str(data), "--model", str(run.path), "--resume"])
    assert result.exit_code == 1 and "--resume needs --output" in result.stderr
    result = runner.invoke(app, ["predict", str(data), "--model", str(run.path), "--resume", "-o",
                                 str(tmp_path / "out.csv")])
    assert result.exit_code == 1 and "--resume works with JSONL output" in result.stderr


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_a_resumed_run_on_a_full_disk_keeps_whole_lines_then_resumes(setup, monkeypatch):
    from mlcls.atomic import WriteError
    from tests.conftest import disk_fills_after

    run, data, reference, tmp_path = setup
    out = tmp_path / "out.jsonl"
    partial = tmp_path / "out.jsonl.partial"
    with pytest.raises(PredictionInterrupted):
        predict_to_file(run, interrupt_after(read_records(data, require_labels=False), 6), out, 4, chunk_records=5)
    assert len(partial.read_text().splitlines()) == 5
    with monkeypatch.context() as patch:
        disk_fills_after(patch, 320)  # ~3 lines of the resumed run's (its checksum file fits), then the disk is full
        with pytest.raises(WriteError) as info:
            predict_to_file(run, read_records(data, require_labels=False), out, 4, resume=True, chunk_records=5)
    kept = partial.read_bytes()
    assert kept.endswith(b"\n") and all(json.loads(line)["id"] for line in kept.splitlines())  # no torn line
    lines = len(kept.splitlines())
    assert lines > 5  # the whole lines written before the disk filled are progress too
    assert str(info.value) == (f"{partial}: cannot write the predictions (no space left on device); {lines} "
                               f"predictions are kept in {partial}: rerun with --resume once the cause is fixed")
    assert not out.exists()
    predict_to_file(run, read_records(data, require_labels=False), out, 4, resume=True, chunk_records=5)
    assert out.read_bytes() == reference.read_bytes() and not partial.exists()


def test_predict_ignores_malformed_labels(setup):
    # The README: "labels in the input are ignored". A bad confidence used to stop predict.
    run, _, _, tmp_path = setup
    data = write_jsonl(tmp_path / "labelled.jsonl", [
        {"id": "a", "text": "cocoa beans harvest", "labels": {"economy": 1.5}},
        {"id": "b", "text": "crude oil barrel", "labels": "oil"},
    ])
    result = runner.invoke(app, ["predict", str(data), "--model", str(run.path)])
    assert result.exit_code == 0, result.stderr
    assert [json.loads(line)["id"] for line in result.stdout.splitlines()] == ["a", "b"]


def test_predict_from_csv_keeps_ids_as_written(setup):
    run, _, _, tmp_path = setup
    data = tmp_path / "in.csv"
    data.write_text("id,text,labels\n007,cocoa beans,3\n,crude oil,17\n0042,wheat grain,\n")
    out = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["predict", str(data), "--model", str(run.path), "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["007", "3", "0042"]
