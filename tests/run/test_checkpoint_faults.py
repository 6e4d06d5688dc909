"""Checkpoints under faults of the machine: a full disk, a folder that refuses writes. The previous checkpoint
is kept, nothing half-written is left, and the error is one line that says how to continue."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from mlcls.errors import MlclsError
from tests.conftest import one_line


def _tensors(value: float):
    import torch

    return {"w": torch.full((4,), value)}


def test_a_checkpoint_that_cannot_be_written_keeps_the_previous_one(tmp_path, monkeypatch):
    import torch

    from mlcls.run.checkpoint import CheckpointWriteError, find_checkpoint, load_checkpoint, save_checkpoint

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

    import mlcls.run.checkpoint as checkpoint

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

    import mlcls.run.checkpoint as checkpoint

    def broken(obj, path, *args, **kwargs):
        raise RuntimeError("cannot pickle this")

    monkeypatch.setattr(torch, "save", broken)
    monkeypatch.setattr(checkpoint, "_no_room", lambda folder: False)
    with pytest.raises(RuntimeError, match="cannot pickle this"):
        checkpoint.save_checkpoint(tmp_path, {}, _tensors(1.0), None, {})
    assert list(tmp_path.iterdir()) == []


def test_a_checkpoint_folder_that_refuses_writes(tmp_path, monkeypatch):
    import mlcls.run.checkpoint as checkpoint

    real_mkdir = Path.mkdir

    def refuse(self, *args, **kwargs):
        if self.name == "checkpoint.tmp":
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(checkpoint.CheckpointWriteError, match=r"permission denied while writing the checkpoint"):
        checkpoint.save_checkpoint(tmp_path / "run", {}, _tensors(1.0), None, {})
