"""Claiming a run for a training (one model or cross-fitted): its name, the lock on it, its staging folder and
the config it is trained with; a resumed run is locked where it is."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from mlcls.config import Config
from mlcls.run.files import write_config
from mlcls.run.layout import staging_dir
from mlcls.run.lifecycle import begin_named_run, begin_run, lock_run
from mlcls.training.devices import broadcast


def claim_run(config: Config, resume: Path | None, accelerator=None) -> tuple[Path, Path]:
    """(staging, final). A new run claims its name (config.output.name, or a timestamped one, which is written
    back into `config`) and writes its config; a resumed one is locked where it is. Under data parallelism
    (`accelerator`) the main process claims and the others learn the name from it."""
    runs_root = Path(config.output.dir)
    main = accelerator is None or accelerator.is_main_process
    if resume is not None:
        if main:
            lock_run(resume)  # two resumes of one run would write one checkpoint
        return resume, runs_root / (config.output.name or "")
    name = config.output.name or ""
    if main:
        if config.output.name is None:
            name = begin_named_run(runs_root, default_run_name(config.loss.name))
        else:
            begin_run(runs_root, name)
    if accelerator is not None:
        name = broadcast(accelerator, name)
    config.output.name = name
    staging = staging_dir(runs_root / name)
    if main:  # data paths absolute: the run is evaluated and resumed from any folder
        write_config(staging, config)
    if accelerator is not None:
        accelerator.wait_for_everyone()
    return staging, runs_root / name


def default_run_name(loss: str) -> str:
    return f"{datetime.now():%Y%m%d-%H%M%S}-{loss}"
