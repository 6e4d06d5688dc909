"""Finding a run: the finished run a command names (default runs/latest), the unfinished one that
`train --resume` continues, and why a named run is not usable yet."""

from __future__ import annotations

import os
from pathlib import Path

from mlcls.errors import RunDirError, RunUnfinished, resume_command, shell_command
from mlcls.run.checkpoint import find_checkpoint
from mlcls.run.layout import (
    CONFIG,
    ENCODER,
    FOLDS,
    HEAD,
    LATEST,
    METRICS,
    final_dir,
    is_staging,
    staging_dir,
    staging_pattern,
)
from mlcls.run.lifecycle import training_now
from mlcls.run.validation import validate_run


def resumable_run(run: Path, runs_root: Path = Path("runs")) -> Path:
    """The unfinished run directory that `train --resume RUN` continues: RUN may be runs/<name> (as the
    interruption message prints it), the hidden runs/.<name>.incomplete itself, or a bare name."""
    candidates = [run, staging_dir(run)]
    if not run.is_absolute() and len(run.parts) == 1:
        candidates += [runs_root / run, staging_dir(runs_root / run)]
    for candidate in candidates:
        if is_staging(candidate) and (candidate / FOLDS).is_dir():  # a cross-fitted run
            return candidate
        if find_checkpoint(candidate) is not None:
            if not (candidate / CONFIG).is_file():
                raise RunDirError(f"{candidate / CONFIG}: missing; cannot resume this run")
            return candidate
    for candidate in candidates:
        if (candidate / HEAD).exists() or (candidate / ENCODER).is_dir():
            raise RunDirError(f"{candidate}: this run finished; there is nothing to resume")
    raise RunDirError(f"{run}: no interrupted run with a checkpoint found there")


def resolve_run(run: str | Path | None, runs_root: str | Path = "runs") -> Path:
    """The finished run directory that `run` names (default: runs/latest), resolved. Its files are checked by
    validation.validate_run; here: a clear word when the run is unfinished, or when `run` is a runs folder."""
    path = Path(run) if run is not None else Path(runs_root) / LATEST
    if is_staging(path) and path.is_dir():  # a staging folder
        raise RunUnfinished(unfinished_run(final_dir(path)) or "")
    if not path.exists():
        raise _not_found(path, run is None, Path(runs_root))
    try:
        is_run = (path / CONFIG).exists() or not path.is_dir()
        runs_inside = not is_run and ((path / LATEST).exists() or any(path.glob(f"*/{CONFIG}")))
    except OSError:  # unreadable: validate_run names the cause
        runs_inside = False
    if runs_inside:
        raise RunDirError(f"{path}: a folder of runs, not a run: name one of them (e.g. {path / LATEST})")
    return path.resolve()


def _not_found(path: Path, default: bool, runs_root: Path) -> RunDirError:
    """Why `path` (runs/latest when `default`) names no run: unfinished, a dangling link, or nothing there."""
    link = path.is_symlink()  # runs/latest (or another link) to a run that was moved or deleted
    unfinished = unfinished_run(_link_target(path) if link else path)
    if unfinished is not None:
        return RunUnfinished(unfinished)
    if link:
        return RunDirError(f"{path}: a link to {_link_target(path)}, which does not exist (moved or deleted?): name "
                           "a run directory, or train one with `mlcls train`")
    if default:
        pending = sorted(runs_root.glob(staging_pattern()))
        hint = f"; unfinished: {', '.join(str(final_dir(p)) for p in pending)}" if pending else ""
        return RunDirError(f"{path}: no run found (train one with `mlcls train`, or name a run directory){hint}")
    return RunDirError(f"{path}: run directory not found")


def _link_target(link: Path) -> Path:
    """Where a link points, as a path from here (a relative target is relative to the link's folder)."""
    try:
        target = Path(os.readlink(link))
    except OSError:
        return link
    return target if target.is_absolute() else link.parent / target


def unfinished_run(final: Path) -> str | None:
    """What to tell a user who names a run that has not finished (its staging folder exists), else None."""
    staging = staging_dir(final)
    if not staging.is_dir():
        return None
    resumable = find_checkpoint(staging) is not None or (staging / FOLDS).is_dir()
    if training_now(staging):
        return (f"{final}: this run is still being trained (its files are in {staging}); evaluate it when the "
                "training ends")
    if not resumable and (staging / METRICS).is_file():  # stopped between its last write and the rename
        try:
            validate_run(staging)
        except RunDirError:
            pass
        else:
            return (f"{final}: this run was written whole, but its training stopped before renaming it into place: "
                    f"`{shell_command('mv', staging, final)}` finishes it")
    if resumable:
        return (f"{final}: this run is unfinished: its training was interrupted, and {staging} keeps a checkpoint; "
                f"continue it with `{resume_command(final)}`")
    return (f"{final}: this run is unfinished: its training stopped before its first checkpoint, so there is nothing "
            f"to resume; train it again (`{shell_command('--name', final.name)}` reuses the name)")


