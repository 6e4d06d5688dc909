"""The run directory: everything `eval` and `predict` need, offline.

runs/<name>/
  config.yaml        the resolved config the run was trained with
  labels.json        the label vocabulary (sorted, from the training data)
  label_stats.json   training label frequencies (for losses and reports)
  encoder/           encoder + tokenizer (save_pretrained, safetensors)
  head.safetensors   the classification head
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

from mlcls.errors import RunDirError
from mlcls.training.checkpoint import find_checkpoint

# The model files (encoder/ + head.safetensors, or folds/fold-K/ of a cross-fitted run) are checked by loading.
REQUIRED_FILES = ("config.yaml", "labels.json", "thresholds.json")
LATEST = "latest"


def staging_dir(final: Path) -> Path:
    return final.parent / f".{final.name}.incomplete"


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
    staging.parent.mkdir(parents=True, exist_ok=True)
    handle = open(staging.parent / f"{staging.name.removesuffix('.incomplete')}.lock", "a")  # noqa: SIM115
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        final = staging.parent / staging.name[1 : -len(".incomplete")]
        raise RunNameTaken(f"{final}: another training is writing a run of this name now (choose another "
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
    if staging.exists():
        shutil.rmtree(staging)  # left by a run of the same name killed before its first checkpoint (unlocked)
    staging.mkdir(parents=True)
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
    final = staging.parent / staging.name[1 : -len(".incomplete")]
    staging.rename(final)
    release_run(staging)
    link = final.parent / LATEST
    tmp_link = final.parent / f".{LATEST}.{os.getpid()}.tmp"  # per process: two runs may finish at once
    if tmp_link.is_symlink() or tmp_link.exists():
        tmp_link.unlink()
    tmp_link.symlink_to(final.name)
    os.replace(tmp_link, link)
    return final


def resumable_run(run: Path, runs_root: Path = Path("runs")) -> Path:
    """The unfinished run directory that `train --resume RUN` continues: RUN may be runs/<name> (as the
    interruption message prints it), the hidden runs/.<name>.incomplete itself, or a bare name."""
    candidates = [run, staging_dir(run)]
    if not run.is_absolute() and len(run.parts) == 1:
        candidates += [runs_root / run, staging_dir(runs_root / run)]
    for candidate in candidates:
        if candidate.name.endswith(".incomplete") and (candidate / "folds").is_dir():  # a cross-fitted run
            return candidate
        if find_checkpoint(candidate) is not None:
            if not (candidate / "config.yaml").is_file():
                raise RunDirError(f"{candidate / 'config.yaml'}: missing; cannot resume this run")
            return candidate
    for candidate in candidates:
        if (candidate / "head.safetensors").exists():
            raise RunDirError(f"{candidate}: this run finished; there is nothing to resume")
    raise RunDirError(f"{run}: no interrupted run with a checkpoint found there")


def save_model(run_dir: Path, model, tokenizer) -> None:
    from safetensors.torch import save_file

    model.encoder.save_pretrained(run_dir / "encoder")
    tokenizer.save_pretrained(run_dir / "encoder")
    save_file(model.head_state(), str(run_dir / "head.safetensors"))


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1))


def resolve_run(run: str | Path | None, runs_root: str | Path = "runs") -> Path:
    path = Path(run) if run is not None else Path(runs_root) / LATEST
    if not path.exists():
        if run is None:
            raise RunDirError(f"{path}: no run found (train one with `mlcls train`, or name a run directory)")
        raise RunDirError(f"{path}: run directory not found")
    path = path.resolve()
    for name in REQUIRED_FILES:
        if not (path / name).exists():
            raise RunDirError(f"{path / name}: missing from the run directory (is this a complete mlcls run?)")
    return path
