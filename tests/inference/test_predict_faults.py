"""`mlcls predict -o` under faults of the machine: a full disk (simulated by tests/conftest.py's
`disk_fills_after`, or /dev/full itself), a folder that refuses writes. Each ends in a one-line error naming
OUT.partial and the cause, and leaves no file."""

from __future__ import annotations

import errno
import os

import pytest

import mlcls.atomic as atomic
from mlcls.atomic import WriteError
from mlcls.errors import MlclsError
from tests.conftest import disk_fills_after, needs_dev_full, one_line


@pytest.fixture()
def run_and_input(trained, tmp_path):
    from mlcls.inference.loading import load_run
    from tests.conftest import TINY_RECORDS, write_jsonl

    folder, _, _ = trained
    data = write_jsonl(tmp_path / "in.jsonl", [{"id": f"r{i}", "text": r["text"]} for i, r in
                                               enumerate(TINY_RECORDS * 3)])
    return load_run(folder / "runs" / "tiny"), data


@needs_dev_full
def test_predict_output_on_a_full_disk_leaves_no_file(run_and_input, tmp_path, monkeypatch):
    # The reported fault: the cleanup's close() raised ENOSPC again before the unlink, leaving OUT.partial.
    from mlcls.data.records import read_records
    from mlcls.inference.predict import predict_to_file

    run, data = run_and_input
    out = tmp_path / "out.jsonl"
    disk_fills_after(monkeypatch, 150)  # a line or two, then nothing
    with pytest.raises(WriteError) as info:
        predict_to_file(run, read_records(data, require_labels=False), out, 4, chunk_records=5)
    assert one_line(info.value) == (f"{out}.partial: cannot write the predictions (no space left on device); "
                                    "no file was left")
    assert list(tmp_path.glob("out.jsonl*")) == []


@needs_dev_full
def test_predict_output_on_a_real_full_device(run_and_input, tmp_path):
    # No simulation at all: OUT.partial is /dev/full. The cleanup removes it (here: the link) all the same.
    from mlcls.data.records import read_records
    from mlcls.inference.predict import predict_to_file

    run, data = run_and_input
    out = tmp_path / "out.jsonl"
    (tmp_path / "out.jsonl.partial").symlink_to("/dev/full")
    with pytest.raises(MlclsError, match="no space left on device"):
        predict_to_file(run, read_records(data, require_labels=False), out, 4, chunk_records=5)
    assert list(tmp_path.glob("out.jsonl*")) == []


def test_predict_into_a_folder_that_refuses_writes(run_and_input, tmp_path, monkeypatch):
    from mlcls.data.records import read_records
    from mlcls.inference.predict import predict_to_file

    run, data = run_and_input

    def refuse(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(atomic.os, "open", refuse)
    out = tmp_path / "out.jsonl"
    with pytest.raises(WriteError, match=rf"^{out}\.partial: cannot write \(permission denied\)$"):
        predict_to_file(run, read_records(data, require_labels=False), out, 4)


def test_cli_reports_a_full_disk_as_an_error_not_an_internal_error(run_and_input, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from mlcls.cli import app

    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full (Linux)")
    run, data = run_and_input
    disk_fills_after(monkeypatch, 0)
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(app, ["predict", str(data), "--model", str(run.path), "-o", str(out)])
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"error: {out}.partial: cannot write the predictions (no space left on device); "
                                     "no file was left")
    assert list(tmp_path.glob("out.jsonl*")) == []
