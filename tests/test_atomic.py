"""mlcls.atomic under faults of the machine: a full disk, a folder that refuses writes. Each ends in a one-line
error that names the file and the cause, and leaves nothing half-written (the full disk: tests/conftest.py's
`disk_fills_after`)."""

from __future__ import annotations

import errno
import re

import pytest

import mlcls.atomic as atomic
from mlcls.atomic import WriteError, atomic_open
from tests.conftest import disk_fills_after, needs_dev_full, one_line


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


def test_atomic_files_get_the_permissions_open_would_give(tmp_path):
    """mkstemp makes 0600 files: a run or a report shared with colleagues would be unreadable to them. A new
    file gets 0666 less the umask (0644 under the usual 022), a replaced one keeps its mode."""
    fresh = tmp_path / "report.json"
    with atomic_open(fresh) as handle:
        handle.write("{}")
    assert fresh.stat().st_mode & 0o777 == 0o666 & ~atomic._UMASK
    kept = tmp_path / "shared.json"
    kept.write_text("{}")
    kept.chmod(0o640)
    with atomic_open(kept) as handle:
        handle.write("[]")
    assert kept.stat().st_mode & 0o777 == 0o640 and kept.read_text() == "[]"


def test_every_file_of_a_run_and_its_export_is_readable_as_open_would_make_it(trained, tmp_path):
    """safetensors' save_file (and save_pretrained through it) makes 0600 files: the weights of a run shared on
    a machine were unreadable to the colleagues who could read its labels.json. A run's files, and an export's,
    all get 0666 less the umask."""
    from typer.testing import CliRunner

    from mlcls.cli import app

    pytest.importorskip("onnxruntime")  # the export extra
    pytest.importorskip("onnxscript")
    folder, _, _ = trained
    run = folder / "runs" / "tiny"
    expected = 0o666 & ~atomic._UMASK
    modes = {p.relative_to(run).as_posix(): p.stat().st_mode & 0o777 for p in run.rglob("*") if p.is_file()}
    assert "head.safetensors" in modes and "encoder/model.safetensors" in modes
    assert {name: mode for name, mode in modes.items() if mode != expected} == {}
    result = CliRunner().invoke(app, ["export", str(run), "--out", str(tmp_path / "exported")])
    assert result.exit_code == 0, result.output
    exported = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "exported").rglob("*") if p.is_file()}
    assert exported and {name: mode for name, mode in exported.items() if mode != expected} == {}


def test_a_file_on_the_way_to_an_output_is_named(tmp_path):
    """mkdir -p under a file says only 'file exists': the error names the file that is in the way."""
    from mlcls.atomic import WriteError

    blocker = tmp_path / "data.jsonl"
    blocker.write_text("{}\n")
    said = rf"cannot write \({re.escape(str(blocker))} is a file, not a folder"
    with pytest.raises(WriteError, match=said), atomic_open(blocker / "sub" / "report.json") as handle:
        handle.write("{}")
    assert blocker.read_text() == "{}\n"
