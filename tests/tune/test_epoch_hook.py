"""Training's per-epoch hook (`train(..., on_epoch=...)`), which `mlcls tune` prunes through: one call per epoch with
that epoch's figures and the kept ones; with train.folds, each fold's epochs in turn on one growing step count."""

from __future__ import annotations

import json

from rich.console import Console

from mlcls.config import load_config
from mlcls.training.entry import train

quiet = Console(stderr=True, quiet=True)


def test_the_hook_hears_every_epoch_with_the_figures_the_run_keeps(tiny_base):
    config = load_config(tiny_base, ["train.epochs=3", f"train.cache_dir={tiny_base.parent / 'cache'}"],
                         {"output.name": "hooked"})
    heard = []
    result = train(config, quiet, on_epoch=heard.append)
    log = [json.loads(line) for line in (result.run_dir / "train_log.jsonl").read_text().splitlines()]
    assert [(e.epoch, e.epochs, e.step, e.last, e.ends_training) for e in heard] == [
        (1, 3, 1, False, False), (2, 3, 2, False, False), (3, 3, 3, True, True)]
    assert [e.metrics["val_micro_f1"] for e in heard] == [entry["val_micro_f1"] for entry in log]
    # `best` is the kept epoch's so far: the best figure up to each epoch, and at the end the run's own
    assert [e.best["micro_f1"] for e in heard] == [max(x["val_micro_f1"] for x in log[: i + 1]) for i in range(3)]
    assert heard[-1].best["micro_f1"] == result.metrics["validation"]["micro_f1"]


def test_with_folds_the_steps_run_on_across_the_folds(tiny_base):
    config = load_config(tiny_base, ["data.validation=null", "train.folds=2", "train.epochs=2",
                                     f"train.cache_dir={tiny_base.parent / 'cache'}"], {"output.name": "folded"})
    heard = []
    result = train(config, quiet, on_epoch=heard.append)
    assert [(e.fold, e.folds, e.epoch, e.step, e.ends_training) for e in heard] == [
        (1, 2, 1, 1, False), (1, 2, 2, 2, False), (2, 2, 1, 3, False), (2, 2, 2, 4, True)]
    # each fold's figure is on its own held-out fold; the run's, out-of-fold, is the result's (what tune scores)
    assert result.metrics["validation_kind"] == "out-of-fold"
    assert [e.best["micro_f1"] for e in heard if e.last] == [
        m["validation_micro_f1"] for m in result.metrics["fold_metrics"]]
