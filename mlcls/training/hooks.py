"""The per-epoch hook of training (`train(..., on_epoch=...)`): what a caller learns after every epoch, and how it
stops a training there.

`mlcls tune` reports each epoch's validation figure to its pruner and stops a trial that cannot win by raising
from the hook. Training lets the exception through untouched: the run stays unfinished in its staging folder,
with the epoch's checkpoint when one was written (the hook runs after it), and its name is released. Whether
that folder is kept (`mlcls train --resume` continues it) or removed is the caller's choice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class EpochEnd:
    """One epoch of one model's training has ended (validated, checkpointed)."""

    epoch: int  # 1-based, within this model's training
    epochs: int  # train.epochs of this model's training
    metrics: dict[str, Any]  # this epoch's line of train_log.jsonl: train_loss, val_micro_f1, val_macro_f1, ...
    best: dict[str, Any]  # the kept epoch's validation figures so far (micro_f1, macro_f1, ...): what the run keeps
    last: bool  # the training ends after this epoch (its last epoch, or early stopping)
    fold: int = 0  # cross-fitting: which fold's model (1..folds); 0 for a training of its own
    folds: int = 0  # cross-fitting: how many folds

    @property
    def step(self) -> int:
        """A count that grows over the whole training: the epoch, continued across the folds of cross-fitting
        (fold k's epoch e is step (k - 1) x epochs + e), so that a pruner compares like with like."""
        return (max(self.fold, 1) - 1) * self.epochs + self.epoch

    @property
    def ends_training(self) -> bool:
        """The last epoch of a model of its own, or of the last fold (cross-fitting's refit, when asked, follows):
        the figure is then the trial's own, and stopping here saves nothing."""
        return self.last and self.fold == self.folds


OnEpoch = Callable[[EpochEnd], None]
