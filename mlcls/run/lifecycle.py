"""A run's life cycle: claim its name (an flock), stage it, finish it (rename into place, point runs/latest at
it), and the one-line error when the file system refuses a file of a finishing run. Names: layout.py."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import IO

from mlcls.atomic import WriteError, describe_os_error, is_disk_full, release_lock, try_lock
from mlcls.errors import RunDirError, resume_command
from mlcls.run.checkpoint import find_checkpoint
from mlcls.run.layout import (
    CHECKPOINT,
    FOLDS,
    LATEST,
    METRICS,
    STATE,
    final_dir,
    is_staging,
    lock_file,
    staging_dir,
)


class RunNameTaken(RunDirError):
    """The run name belongs to a finished run or to a training that is running now."""


# Locks held by this process: run staging folder -> open lock file. flock is released by the kernel when
# the process dies, so a killed training never leaves a name locked.
_HELD: dict[Path, IO] = {}


def lock_run(staging: Path) -> None:
    """Claim `staging` for this process (exclusive across processes), or raise RunNameTaken.

    Two trainings given the same name would otherwise write into one staging folder and mix their
    config, weights and metrics. The lock is a file beside the folder (runs/.<name>.lock)."""
    staging = staging.absolute()
    if staging in _HELD:  # this process holds it already (a run resumed in the process that began it)
        return
    try:  # a read-only or forbidden runs folder is the user's to fix: one line, not an internal error
        staging.parent.mkdir(parents=True, exist_ok=True)
        handle = try_lock(lock_file(staging))
    except OSError as exc:
        raise RunDirError(f"{staging.parent}: cannot create a run there ({describe_os_error(exc)})") from None
    if handle is None:
        raise RunNameTaken(f"{final_dir(staging)}: another training is writing a run of this name now (choose another "
                           "--name, or wait for it)") from None
    _HELD[staging] = handle


def held_runs() -> set[Path]:
    return set(_HELD)


def release_run(staging: Path) -> None:
    handle = _HELD.pop(staging.absolute(), None)
    if handle is not None:
        release_lock(handle)


def begin_run(runs_root: Path, name: str) -> Path:
    """Claim the name `name` and create its empty staging folder; raise RunNameTaken if the name is taken."""
    final = runs_root / name
    if final.exists():
        raise RunNameTaken(f"{final}: a run with this name exists already (choose another --name)")
    staging = staging_dir(final)
    if staging.absolute() in _HELD:
        raise RunNameTaken(f"{final}: this process is writing a run of this name already")
    lock_run(staging)
    if final.exists():  # finished by another process between the first check and the lock
        release_run(staging)
        raise RunNameTaken(f"{final}: a run with this name exists already (choose another --name)")
    if find_checkpoint(staging) is not None or (staging / FOLDS).is_dir():
        release_run(staging)
        raise RunDirError(f"{staging}: an interrupted run of this name has a checkpoint; continue it with "
                          f"`{resume_command(final)}`, or delete that folder")
    try:
        if staging.exists():
            shutil.rmtree(staging)  # left by a run of the same name killed before its first checkpoint (unlocked)
        staging.mkdir(parents=True)
    except OSError as exc:
        release_run(staging)
        raise RunDirError(f"{staging}: cannot create the run's folder ({describe_os_error(exc)})") from None
    return staging


def discard_unstarted(staging: Path) -> None:
    """Remove a staging folder that holds nothing to resume: no checkpoint and no finished fold anywhere in it.
    For a training that failed while it was set up (an encoder that does not load, more top layers than the
    encoder has): left there, its name would read as an interrupted run's to `mlcls eval`, with nothing to
    continue. A folder the file system will not let go of stays (the next run of this name clears it)."""
    resumable = any(path.parent.name in (CHECKPOINT, f"{CHECKPOINT}.old") for path in staging.rglob(STATE))
    if not resumable and not any(staging.rglob(METRICS)):
        shutil.rmtree(staging, ignore_errors=True)


def begin_named_run(runs_root: Path, base: str) -> str:
    """Claim the first free name of base, base-2, base-3, ... (default names are timestamps: two trainings
    started in the same second must not share one); return it."""
    for n in range(1, 10_000):
        name = base if n == 1 else f"{base}-{n}"
        try:
            begin_run(runs_root, name)
            return name
        except RunNameTaken:
            continue
    raise RunDirError(f"{runs_root}: no free run name starting with {base}")


def finish_run(staging: Path) -> Path:
    """Rename the complete run into place and point runs/latest at it (atomically: a rename)."""
    final = final_dir(staging)
    try:
        staging.rename(final)
    except OSError as exc:
        raise RunDirError(f"{staging}: the run is complete but cannot be renamed to {final} "
                          f"({describe_os_error(exc)}); rename it yourself") from None
    release_run(staging)
    link = final.parent / LATEST
    tmp_link = final.parent / f".{LATEST}.{os.getpid()}.tmp"  # per process: two runs may finish at once
    try:
        if tmp_link.is_symlink() or tmp_link.exists():
            tmp_link.unlink()
        tmp_link.symlink_to(final.name)
        os.replace(tmp_link, link)
    except OSError as exc:
        raise RunDirError(f"{final}: the run is saved, but {link} cannot point at it "
                          f"({describe_os_error(exc)})") from None
    return final


def run_write_error(run_dir: Path, target: Path, what: str, exc: Exception) -> Exception:
    """A file of a finishing run that the file system refused (full disk, read-only, forbidden): one line that
    says what is kept, or `exc` itself when it is not the file system's (a bug stays a bug)."""
    if not (isinstance(exc, OSError) or is_disk_full(exc)):
        return exc
    cause = "no space left on device" if is_disk_full(exc) else describe_os_error(exc)
    kept = ""
    top = run_dir.parent.parent if run_dir.parent.name == FOLDS else run_dir  # a fold of a cross-fitted run
    if is_staging(top):
        final = final_dir(top)
        kept = (f"; the unfinished run stays in {top} with its checkpoint: make room (or allow writes) and "
                f"continue with `{resume_command(final)}`" if find_checkpoint(run_dir) is not None
                else f"; the unfinished run stays in {top}")
    return WriteError(f"{target}: cannot write{f' {what}' if what else ''} ({cause}){kept}")


def training_now(staging: Path) -> bool:
    """Whether a training holds this run's lock now: this process, or another one as /proc/locks shows it
    (Linux; elsewhere False). Looking does not take the lock, so a training starting now is never refused."""
    staging = staging.absolute()
    if staging in _HELD:
        return True
    lock = lock_file(staging)
    try:
        info = lock.stat()
        table = Path("/proc/locks").read_text()
    except OSError:
        return False
    device = (os.major(info.st_dev), os.minor(info.st_dev), info.st_ino)
    for line in table.splitlines():
        for field in line.split():
            parts = field.split(":")
            if len(parts) == 3 and all(parts):
                try:
                    if (int(parts[0], 16), int(parts[1], 16), int(parts[2])) == device:
                        return True
                except ValueError:
                    continue
    return False
