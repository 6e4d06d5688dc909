"""What a checkpoint carries beyond tensors (`TrainingState`), and going on from one exactly: the same data
(a fingerprint), the same weights, optimizer, scheduler and random states."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlcls.data.windows import flatten
from mlcls.errors import MlclsError, RunDirError, first_line
from mlcls.run.checkpoint import find_checkpoint, load_checkpoint
from mlcls.run.layout import STATE
from mlcls.training.cache import token_ids_fingerprint


@dataclass
class TrainingState:
    """Where training stands: everything besides tensors that a checkpoint must carry to go on exactly."""

    epoch: int = 0  # epochs completed
    batches_done: int = 0  # of this process's batches in epoch `epoch + 1`
    step: int = 0  # optimizer steps over the whole run
    epoch_rng: dict[str, Any] | None = None  # batch-order random state at the start of epoch `epoch + 1`
    loss_sum: float = 0.0  # of epoch `epoch + 1` so far
    loss_count: int = 0
    samples_seen: int = 0
    train_seconds: float = 0.0
    log: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_metrics: dict[str, Any] = field(default_factory=dict)
    best_thresholds: dict[str, Any] | None = None
    epochs_without_gain: int = 0
    stopped_early: bool = False
    data_fingerprint: str = ""
    # training processes: batches_done and the step count are of this split of the batches (None: a checkpoint
    # written before mlcls recorded it, resumed unchecked)
    processes: int | None = None


def data_fingerprint(train_windows, val_windows, train_enc, val_enc) -> str:
    """What the checkpoint was trained on (each article's windows of token ids, its targets): resuming on other
    data, or the same data read another way (model.long_text), would silently mix two runs."""
    h = hashlib.sha256()
    for windows in (train_windows, val_windows):
        flat, counts = flatten(windows)
        h.update(token_ids_fingerprint(flat).encode())
        if any(count != 1 for count in counts):  # one window an article: the fingerprint of the token ids alone
            h.update(np.asarray(counts, dtype=np.int64).tobytes())
    for enc in (train_enc, val_enc):
        h.update(np.ascontiguousarray(enc.targets).tobytes())
        h.update(np.ascontiguousarray(enc.mask).tobytes())
    return h.hexdigest()


def trainer_state(optimizer, scheduler, scaler=None) -> dict[str, Any]:
    """What a checkpoint keeps of the training besides the weights. `scaler`: fp16's loss scaler (Accelerate's
    `accelerator.scaler`; None in bf16 and fp32). Its scale has been learnt over the steps: a resumed run that
    started again from the initial 65536 would skip its first steps while it backs off (overflows), and would not
    be the run that was not interrupted."""
    state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "torch_rng": torch.get_rng_state()}
    if scaler is not None:
        state["grad_scaler"] = scaler.state_dict()
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    return state


def restore(run_dir: Path, model, optimizer, scheduler, fingerprint: str, processes: int = 1, scaler=None):
    """Load the checkpoint of `run_dir` into model, optimizer, scheduler and fp16's loss scaler (`scaler`, when
    the checkpoint has its state: one written before it was kept starts from the initial scale); return (state,
    best weights)."""
    path = find_checkpoint(run_dir)
    if path is None:
        raise RunDirError(f"{run_dir}: no checkpoint to resume from")
    saved = load_checkpoint(path)
    try:
        state = TrainingState(**saved.state)
    except TypeError as exc:  # written by another version of mlcls
        raise RunDirError(f"{path / STATE}: not a checkpoint state this mlcls can read ({exc})") from None
    if state.data_fingerprint != fingerprint:
        raise MlclsError(f"{path}: the training or validation data changed since this checkpoint was written "
                         "(same files and settings are needed to resume)")
    if state.processes not in (None, processes):  # each process's share of the batches, the steps: another
        raise MlclsError(f"{path}: written by {state.processes} training process(es), resumed by {processes}; "
                         f"resume with as many (accelerate launch --num_processes {state.processes})")
    try:
        model.load_state_dict(saved.model)
        optimizer.load_state_dict(saved.trainer["optimizer"])
        scheduler.load_state_dict(saved.trainer["scheduler"])
        if scaler is not None and "grad_scaler" in saved.trainer:
            scaler.load_state_dict(saved.trainer["grad_scaler"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise RunDirError(f"{path}: does not match this model ({first_line(exc)})") from None
    torch.set_rng_state(saved.trainer["torch_rng"])
    if "cuda_rng" in saved.trainer and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(saved.trainer["cuda_rng"])
    best = saved.best if saved.best is not None else {k: v.clone() for k, v in saved.model.items()}
    return state, best


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
