"""Training checkpoints that exist whole or not at all (their files: layout.py).

A checkpoint is written into checkpoint.tmp/, then the old one is moved aside and the new one renamed into
place; a kill at any moment leaves either the previous checkpoint or the new one. `find_checkpoint` also
accepts checkpoint.old/, which is what a kill between the two renames leaves. A write that fails (a full
disk) removes checkpoint.tmp/ and raises a one-line CheckpointWriteError; the previous checkpoint stays.
trainer.pt holds tensors and numbers only: it is loaded with torch.load(weights_only=True), which refuses
arbitrary pickles."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlcls.atomic import WriteError, describe_os_error, is_disk_full, open_permissions
from mlcls.errors import RunDirError, resume_command
from mlcls.run.layout import BEST_WEIGHTS, CHECKPOINT, STATE, TRAINER_STATE, WEIGHTS, final_dir, is_staging


@dataclass
class Checkpoint:
    path: Path
    state: dict[str, Any]
    model: dict[str, Any]  # tensors
    best: dict[str, Any] | None  # tensors; None: the best weights are `model`
    trainer: dict[str, Any]


class CheckpointWriteError(WriteError):
    """The file system refused a checkpoint (full disk, quota, permission); the previous one is untouched."""


def save_checkpoint(run_dir: Path, state: dict[str, Any], model: dict[str, Any], best: dict[str, Any] | None,
                    trainer: dict[str, Any]) -> Path:
    """Write a checkpoint into checkpoint.tmp/, then swap it in. A failure while writing removes checkpoint.tmp/
    and leaves the previous checkpoint as it was; a file-system fault is a one-line CheckpointWriteError."""
    import torch
    from safetensors.torch import save_file

    final, tmp, old = (run_dir / CHECKPOINT, run_dir / f"{CHECKPOINT}.tmp", run_dir / f"{CHECKPOINT}.old")
    try:
        if tmp.exists():
            shutil.rmtree(tmp)  # a write that was killed
        tmp.mkdir(parents=True)
        save_file(_plain(model), str(tmp / WEIGHTS))
        if best is not None:
            save_file(_plain(best), str(tmp / BEST_WEIGHTS))
        torch.save(trainer, tmp / TRAINER_STATE)
        (tmp / STATE).write_text(json.dumps(state))
        open_permissions(tmp)  # save_file's 0600: a shared machine's colleague could not resume it
        for name in (WEIGHTS, BEST_WEIGHTS, TRAINER_STATE, STATE):
            if (tmp / name).exists():
                _fsync(tmp / name)
    except Exception as exc:  # Ctrl-C or an exit leaves checkpoint.tmp as a kill would (the next write clears it)
        # torch and safetensors word a full disk their own way (RuntimeError, SafetensorError): ask the disk.
        full = is_disk_full(exc) or _no_room(run_dir)
        shutil.rmtree(tmp, ignore_errors=True)  # an empty or half-written checkpoint.tmp is of no use to anyone
        if full or isinstance(exc, OSError):
            raise _write_failed(run_dir, exc, full) from None
        raise
    try:
        if final.exists():
            if old.exists():
                shutil.rmtree(old)
            final.rename(old)
        tmp.rename(final)
    except OSError as exc:  # whichever rename failed, find_checkpoint still finds checkpoint or checkpoint.old
        raise _write_failed(run_dir, exc, is_disk_full(exc)) from None
    shutil.rmtree(old, ignore_errors=True)  # a leftover is harmless: `checkpoint` is found first, and replaced next
    return final


def _no_room(folder: Path) -> bool:
    """Whether the file system holding `folder` has (next to) no space left for us."""
    try:
        stats = os.statvfs(folder)
    except (OSError, AttributeError):
        return False
    return stats.f_bavail * stats.f_frsize < 1 << 20


def _write_failed(run_dir: Path, exc: BaseException, full: bool) -> CheckpointWriteError:
    cause = "no space left on device" if full else describe_os_error(exc)
    kept = "the previous checkpoint is kept" if find_checkpoint(run_dir) else "no checkpoint was saved yet"
    if is_staging(run_dir) and find_checkpoint(run_dir):
        kept += f"; once fixed, continue with: {resume_command(final_dir(run_dir))}"
    return CheckpointWriteError(f"{run_dir}: {cause} while writing the checkpoint ({kept})")


def find_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint folder of an unfinished run (checkpoint/, or checkpoint.old/ left by a kill mid-write)."""
    for name in (CHECKPOINT, f"{CHECKPOINT}.old"):
        if (run_dir / name / STATE).is_file():
            return run_dir / name
    return None


def load_checkpoint(path: Path) -> Checkpoint:
    """A checkpoint's weights, trainer state and progress, read as `mlcls train --resume` reads them."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = json.loads((path / STATE).read_text())
        model = load_file(str(path / WEIGHTS))
        best = load_file(str(path / BEST_WEIGHTS)) if (path / BEST_WEIGHTS).exists() else None
        trainer = torch.load(path / TRAINER_STATE, map_location="cpu", weights_only=True)
    except (OSError, ValueError, SafetensorError, RuntimeError) as exc:
        raise RunDirError(f"{path}: corrupt checkpoint ({str(exc).splitlines()[0] if str(exc) else exc!r})") from None
    return Checkpoint(path, state, model, best, trainer)


def remove_checkpoints(run_dir: Path) -> None:
    for name in (CHECKPOINT, f"{CHECKPOINT}.tmp", f"{CHECKPOINT}.old"):
        if (run_dir / name).exists():
            shutil.rmtree(run_dir / name)


def _plain(tensors: dict[str, Any]) -> dict[str, Any]:
    # safetensors wants contiguous tensors that share no memory.
    return {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
