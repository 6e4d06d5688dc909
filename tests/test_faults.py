"""Faults of the machine, not of the input: a full disk, a folder that refuses writes. Each ends in a one-line
error that names the file and the cause, and leaves nothing half-written.

A full disk is simulated without filling one: `disk_fills_after` lets a file opened by mlcls.atomic take
`room` bytes, then points its descriptor at /dev/full, so that the kernel itself answers ENOSPC to the
write, to the flush and to the close that follow, through Python's own buffered layers."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

import mlcls.atomic as atomic
from mlcls.atomic import WriteError, atomic_open
from mlcls.errors import MlclsError

needs_dev_full = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")


def disk_fills_after(monkeypatch, room: int) -> None:
    """Every file mlcls.atomic opens from now on takes `room` bytes, then the disk is full."""

    class FullDisk(atomic._RawFile):
        used = 0

        def write(self, data):
            if self.used >= room:
                full = os.open("/dev/full", os.O_WRONLY)
                os.dup2(full, self.fileno())
                os.close(full)
            else:
                data = bytes(data)[: room - self.used]  # a short write, as a disk filling up gives
            written = super().write(data)
            self.used += written or 0
            return written

    monkeypatch.setattr(atomic, "_RawFile", FullDisk)


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and "Errno" not in text and "Traceback" not in text
    return text


# --------------------------------------------------------------------------- atomic_open


@needs_dev_full
@pytest.mark.parametrize(("room", "size"), [(0, 10), (100, 100_000), (0, 100_000)])
def test_atomic_open_on_a_full_disk_names_the_file_and_leaves_the_old_one(tmp_path, monkeypatch, room, size):
    # (0, 10): the write is buffered and it is close() that fails; the others fail in write() or flush().
    target = tmp_path / "metrics.json"
    target.write_text("old")
    disk_fills_after(monkeypatch, room)
    with pytest.raises(WriteError) as info, atomic_open(target) as handle:
        handle.write("x" * size)
    assert one_line(info.value) == f"{target}: cannot write (no space left on device; nothing was written)"
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]  # the temporary file is gone


def test_atomic_open_in_a_folder_that_refuses_writes(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / ".x.tmp"))

    monkeypatch.setattr(atomic.tempfile, "mkstemp", refuse)
    with pytest.raises(WriteError) as info, atomic_open(tmp_path / "out.json") as handle:
        handle.write("x")
    assert one_line(info.value) == f"{tmp_path / 'out.json'}: cannot write (permission denied)"


def test_atomic_open_leaves_other_errors_alone(tmp_path):
    # An OSError of the caller's own (another file) is not blamed on the file being written.
    with pytest.raises(FileNotFoundError), atomic_open(tmp_path / "out.json", "wb") as handle:
        handle.write(b"x")
        (tmp_path / "missing").read_text()
    assert list(tmp_path.iterdir()) == []
    with atomic_open(tmp_path / "out.json", "wb") as handle:  # and the good path is unchanged
        handle.write(b"whole")
    assert (tmp_path / "out.json").read_bytes() == b"whole"


def test_describe_os_error():
    assert atomic.describe_os_error(OSError(errno.ENOSPC, "No space left on device")) == "no space left on device"
    assert atomic.describe_os_error(OSError(errno.EROFS, "Read-only file system")) == "read-only file system"
    assert atomic.describe_os_error(OSError(errno.EIO, "Input/output error")) == "input/output error"
    assert atomic.is_disk_full(RuntimeError("Error while serializing: IoError(Os { code: 28, kind: StorageFull })"))
    assert not atomic.is_disk_full(RuntimeError("shape mismatch"))


# --------------------------------------------------------------------------- checkpoints


def _tensors(value: float):
    import torch

    return {"w": torch.full((4,), value)}


def test_a_checkpoint_that_cannot_be_written_keeps_the_previous_one(tmp_path, monkeypatch):
    import torch

    from mlcls.training.checkpoint import CheckpointWriteError, find_checkpoint, load_checkpoint, save_checkpoint

    run_dir = tmp_path / ".mix.incomplete"
    save_checkpoint(run_dir, {"epoch": 1}, _tensors(1.0), None, {"step": torch.tensor(1)})

    def full_disk_save(obj, path, *args, **kwargs):
        Path(path).write_bytes(b"PK\x03\x04 half")  # what a full disk leaves: a torn file
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk_save)
    with pytest.raises(CheckpointWriteError) as info:
        save_checkpoint(run_dir, {"epoch": 2}, _tensors(2.0), None, {"step": torch.tensor(2)})
    assert one_line(info.value) == (
        f"{run_dir}: no space left on device while writing the checkpoint (the previous checkpoint is kept; "
        f"once fixed, continue with: mlcls train --resume {tmp_path / 'mix'})")
    assert isinstance(info.value, MlclsError)  # the CLI prints "error: ...", not "internal error"
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoint"]  # no checkpoint.tmp left behind
    kept = load_checkpoint(find_checkpoint(run_dir))
    assert kept.state == {"epoch": 1} and kept.model["w"].tolist() == [1.0] * 4


def test_a_first_checkpoint_on_a_full_disk_says_none_was_kept(tmp_path, monkeypatch):
    import torch

    import mlcls.training.checkpoint as checkpoint

    # torch words a full disk as a RuntimeError without an errno: the disk itself is asked.
    def torch_full_disk(obj, path, *args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file")

    monkeypatch.setattr(torch, "save", torch_full_disk)
    monkeypatch.setattr(checkpoint, "_no_room", lambda folder: True)
    with pytest.raises(checkpoint.CheckpointWriteError, match=r"no space left on device while writing the "
                       r"checkpoint \(no checkpoint was saved yet\)$"):
        checkpoint.save_checkpoint(tmp_path, {}, _tensors(1.0), None, {})
    assert list(tmp_path.iterdir()) == []


def test_a_checkpoint_bug_stays_a_bug_but_leaves_no_temporary_folder(tmp_path, monkeypatch):
    import torch

    import mlcls.training.checkpoint as checkpoint

    def broken(obj, path, *args, **kwargs):
        raise RuntimeError("cannot pickle this")

    monkeypatch.setattr(torch, "save", broken)
    monkeypatch.setattr(checkpoint, "_no_room", lambda folder: False)
    with pytest.raises(RuntimeError, match="cannot pickle this"):
        checkpoint.save_checkpoint(tmp_path, {}, _tensors(1.0), None, {})
    assert list(tmp_path.iterdir()) == []


def test_a_checkpoint_folder_that_refuses_writes(tmp_path, monkeypatch):
    import mlcls.training.checkpoint as checkpoint

    real_mkdir = Path.mkdir

    def refuse(self, *args, **kwargs):
        if self.name == "checkpoint.tmp":
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(checkpoint.CheckpointWriteError, match=r"permission denied while writing the checkpoint"):
        checkpoint.save_checkpoint(tmp_path / "run", {}, _tensors(1.0), None, {})


# --------------------------------------------------------------------------- predict -o


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


def test_cli_train_on_a_full_disk_says_so_in_one_line(tiny_encoder, tmp_path, monkeypatch):
    # Before: "internal error: OSError: [Errno 28] ..." and an empty checkpoint.tmp in the staging folder.
    import torch
    from typer.testing import CliRunner

    from mlcls.cli import app
    from tests.conftest import TINY_RECORDS, tiny_config, write_jsonl

    data = write_jsonl(tmp_path / "tiny.jsonl", TINY_RECORDS)
    config = tiny_config(tmp_path, tiny_encoder, data)

    def full_disk_save(obj, path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk_save)
    result = CliRunner().invoke(app, ["train", "-c", str(config), "--name", "full", "--epochs", "2"])
    assert result.exit_code == 1, result.output
    staging = tmp_path / "runs" / ".full.incomplete"
    assert "internal error" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (f"error: {staging}: no space left on device while writing "
                                                      "the checkpoint (no checkpoint was saved yet)")
    assert not (staging / "checkpoint.tmp").exists()
