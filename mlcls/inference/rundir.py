"""The run directory: everything `eval` and `predict` need, offline.

runs/<name>/
  config.yaml        the resolved config the run was trained with
  labels.json        the label vocabulary (sorted, from the training data)
  label_stats.json   training label frequencies (for losses and reports)
  encoder/           encoder + tokenizer (save_pretrained, safetensors); with model.head transformers the whole
                     AutoModelForSequenceClassification (head inside, id2label), which transformers loads as is
  head.safetensors   the classification head (model.head linear)
  thresholds.json    the decision rule, tuned on validation
  metrics.json       validation metrics of the kept epoch, timings
  train_log.jsonl    one line per epoch
runs/latest -> <name>

While training, the run lives in runs/.<name>.incomplete/ with its config.yaml and checkpoint/ (see
checkpoint.py), which is what `mlcls train --resume runs/<name>` continues from.

A run is written under a hidden temporary name and renamed into place when complete, so a killed
training never leaves a half-written run that `eval` would pick up.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import IO, Any

from mlcls.atomic import describe_os_error
from mlcls.errors import RunDirError, RunUnfinished
from mlcls.training.checkpoint import find_checkpoint

LATEST = "latest"


def staging_dir(final: Path) -> Path:
    return final.parent / f".{final.name}.incomplete"


def is_staging(path: Path) -> bool:
    return path.name.startswith(".") and path.name.endswith(".incomplete")


def lock_file(staging: Path) -> Path:
    """runs/.<name>.lock, the file whose flock claims the name (lock_run)."""
    return staging.parent / f"{staging.name.removesuffix('.incomplete')}.lock"


def final_dir(staging: Path) -> Path:
    """runs/<name> of the staging folder runs/.<name>.incomplete (staging_dir's inverse)."""
    return staging.parent / staging.name[1 : -len(".incomplete")]


class RunNameTaken(RunDirError):
    """The run name belongs to a finished run or to a training that is running now."""


# Locks held by this process: run staging folder -> open lock file. flock is released by the kernel when
# the process dies, so a killed training never leaves a name locked.
_HELD: dict[Path, IO] = {}


def lock_run(staging: Path) -> None:
    """Claim `staging` for this process (exclusive across processes), or raise RunNameTaken.

    Two trainings given the same name would otherwise write into one staging folder and mix their
    config, weights and metrics. The lock is a file beside the folder (runs/.<name>.lock)."""
    import fcntl

    staging = staging.absolute()
    if staging in _HELD:  # this process holds it already (a run resumed in the process that began it)
        return
    try:  # a read-only or forbidden runs folder is the user's to fix: one line, not an internal error
        staging.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock_file(staging), "a")  # noqa: SIM115
    except OSError as exc:
        raise RunDirError(f"{staging.parent}: cannot create a run there ({describe_os_error(exc)})") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise RunNameTaken(f"{final_dir(staging)}: another training is writing a run of this name now (choose another "
                           "--name, or wait for it)") from None
    _HELD[staging] = handle


def held_runs() -> set[Path]:
    return set(_HELD)


def release_run(staging: Path) -> None:
    handle = _HELD.pop(staging.absolute(), None)
    if handle is not None:
        Path(handle.name).unlink(missing_ok=True)
        handle.close()


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
    if find_checkpoint(staging) is not None or (staging / "folds").is_dir():
        release_run(staging)
        raise RunDirError(f"{staging}: an interrupted run of this name has a checkpoint; continue it with "
                          f"`mlcls train --resume {final}`, or delete that folder")
    try:
        if staging.exists():
            shutil.rmtree(staging)  # left by a run of the same name killed before its first checkpoint (unlocked)
        staging.mkdir(parents=True)
    except OSError as exc:
        release_run(staging)
        raise RunDirError(f"{staging}: cannot create the run's folder ({describe_os_error(exc)})") from None
    return staging


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


def resumable_run(run: Path, runs_root: Path = Path("runs")) -> Path:
    """The unfinished run directory that `train --resume RUN` continues: RUN may be runs/<name> (as the
    interruption message prints it), the hidden runs/.<name>.incomplete itself, or a bare name."""
    candidates = [run, staging_dir(run)]
    if not run.is_absolute() and len(run.parts) == 1:
        candidates += [runs_root / run, staging_dir(runs_root / run)]
    for candidate in candidates:
        if is_staging(candidate) and (candidate / "folds").is_dir():  # a cross-fitted run
            return candidate
        if find_checkpoint(candidate) is not None:
            if not (candidate / "config.yaml").is_file():
                raise RunDirError(f"{candidate / 'config.yaml'}: missing; cannot resume this run")
            return candidate
    for candidate in candidates:
        if (candidate / "head.safetensors").exists() or (candidate / "encoder").is_dir():
            raise RunDirError(f"{candidate}: this run finished; there is nothing to resume")
    raise RunDirError(f"{run}: no interrupted run with a checkpoint found there")


def save_model(run_dir: Path, model, tokenizer) -> None:
    from safetensors.torch import save_file

    from mlcls.model.classifier import NativeClassifier

    try:
        if isinstance(model, NativeClassifier):  # the whole AutoModelForSequenceClassification, head inside
            model.model.save_pretrained(run_dir / "encoder")
        else:
            model.encoder.save_pretrained(run_dir / "encoder")
            save_file(model.head_state(), str(run_dir / "head.safetensors"))
        tokenizer.save_pretrained(run_dir / "encoder")
    except Exception as exc:
        raise run_write_error(run_dir, run_dir, "the model", exc) from None


def write_json(path: Path, data: Any) -> None:
    try:
        path.write_text(json.dumps(data, indent=1))
    except OSError as exc:
        raise run_write_error(path.parent, path, "", exc) from None



def run_write_error(run_dir: Path, target: Path, what: str, exc: Exception) -> Exception:
    """A file of a finishing run that the file system refused (full disk, read-only, forbidden): one line that
    says what is kept, or `exc` itself when it is not the file system's (a bug stays a bug)."""
    from mlcls.atomic import WriteError, is_disk_full

    if not (isinstance(exc, OSError) or is_disk_full(exc)):
        return exc
    cause = "no space left on device" if is_disk_full(exc) else describe_os_error(exc)
    kept = ""
    top = run_dir.parent.parent if run_dir.parent.name == "folds" else run_dir  # a fold of a cross-fitted run
    if is_staging(top):
        final = final_dir(top)
        kept = (f"; the unfinished run stays in {top} with its checkpoint: make room (or allow writes) and "
                f"continue with `mlcls train --resume {final}`" if find_checkpoint(run_dir) is not None
                else f"; the unfinished run stays in {top}")
    return WriteError(f"{target}: cannot write{f' {what}' if what else ''} ({cause}){kept}")


def resolve_run(run: str | Path | None, runs_root: str | Path = "runs") -> Path:
    """The finished run directory that `run` names (default: runs/latest), resolved. Its files are checked by
    validation.validate_run; here: a clear word when the run is unfinished, or when `run` is a runs folder."""
    path = Path(run) if run is not None else Path(runs_root) / LATEST
    if is_staging(path) and path.is_dir():  # a staging folder
        raise RunUnfinished(unfinished_run(final_dir(path)) or "")
    if not path.exists():
        unfinished = unfinished_run(path)
        if unfinished is not None:
            raise RunUnfinished(unfinished)
        if run is None:
            pending = sorted(Path(runs_root).glob(".*.incomplete"))
            hint = (f"; unfinished: {', '.join(str(final_dir(p)) for p in pending)}"
                    if pending else "")
            raise RunDirError(f"{path}: no run found (train one with `mlcls train`, or name a run directory){hint}")
        raise RunDirError(f"{path}: run directory not found")
    try:
        is_run = (path / "config.yaml").exists() or not path.is_dir()
        runs_inside = not is_run and ((path / LATEST).exists() or any(path.glob("*/config.yaml")))
    except OSError:  # unreadable: validate_run names the cause
        runs_inside = False
    if runs_inside:
        raise RunDirError(f"{path}: a folder of runs, not a run: name one of them (e.g. {path / LATEST})")
    return path.resolve()


def unfinished_run(final: Path) -> str | None:
    """What to tell a user who names a run that has not finished (its staging folder exists), else None."""
    staging = staging_dir(final)
    if not staging.is_dir():
        return None
    resumable = find_checkpoint(staging) is not None or (staging / "folds").is_dir()
    if training_now(staging):
        return (f"{final}: this run is still being trained (its files are in {staging}); evaluate it when the "
                "training ends")
    if not resumable and (staging / "metrics.json").is_file():  # stopped between its last write and the rename
        from mlcls.inference.validation import validate_run

        try:
            validate_run(staging)
        except RunDirError:
            pass
        else:
            return (f"{final}: this run was written whole, but its training stopped before renaming it into place: "
                    f"`mv {staging} {final}` finishes it")
    if resumable:
        return (f"{final}: this run is unfinished: its training was interrupted, and {staging} keeps a checkpoint; "
                f"continue it with `mlcls train --resume {final}`")
    return (f"{final}: this run is unfinished: its training stopped before its first checkpoint, so there is nothing "
            f"to resume; train it again (`--name {final.name}` reuses the name)")


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
