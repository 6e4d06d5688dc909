"""train.report_to: experiment tracking through Accelerate's trackers. A tiny run logs to TensorBoard and the
event files are read back: one loss per optimizer step, the learning rates, each epoch's validation figures
equal to train_log.jsonl / metrics.json, the config as hyperparameters; folds log apart; bad names and
missing packages are one line."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mlcls.cli import app
from mlcls.config import TRACKERS, load_config
from mlcls.training.data import TrainingInterrupted
from mlcls.training.entry import train
from mlcls.training.interrupt import StopAfterStep
from tests.conftest import TINY_RECORDS, tiny_config, write_jsonl

runner = CliRunner()
# 12 records in batches of 2, 2 micro-batches a step: 3 optimizer steps an epoch (6 loss values if the loss
# were logged per micro-batch instead).
SETTINGS = ["--set", "train.batch_size=2", "--set", "train.grad_accum=2", "--set", "train.report_to=[tensorboard]"]
STEPS_PER_EPOCH = 3


def _events(folder: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert list(folder.glob("events.out.tfevents.*")), f"no event file in {folder}"
    accumulator = EventAccumulator(str(folder))
    accumulator.Reload()
    return accumulator


def _series(events, tag: str) -> tuple[list[int], list[float]]:
    scalars = events.Scalars(tag)
    return [s.step for s in scalars], [s.value for s in scalars]


def _cli_config(tmp_path: Path, tiny_encoder: Path) -> Path:
    data = write_jsonl(tmp_path / "tiny.jsonl", TINY_RECORDS)
    return tiny_config(tmp_path, tiny_encoder, data)


def test_tensorboard_logs_steps_rates_and_validation(tmp_path, tiny_encoder):
    pytest.importorskip("tensorboard")
    epochs = 3
    result = runner.invoke(app, ["train", "-c", str(_cli_config(tmp_path, tiny_encoder)), "--name", "tracked",
                                 "--epochs", str(epochs), *SETTINGS])
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "tracked"
    assert not (tmp_path / "runs" / ".tracked.incomplete").exists()  # the logs moved with the run
    events = _events(run / "tracking" / "mlcls")
    total = epochs * STEPS_PER_EPOCH

    # One loss per optimizer step, numbered 1..total.
    steps, losses = _series(events, "train/loss")
    assert steps == list(range(1, total + 1))
    assert all(math.isfinite(v) and v > 0 for v in losses)

    # The rates each step used: no warm-up (tiny config), then linear decay to 0 over the run.
    for tag, base in (("train/lr_encoder", 1e-3), ("train/lr_head", 3e-2)):
        steps, rates = _series(events, tag)
        assert steps == list(range(1, total + 1))
        assert rates == pytest.approx([base * (1 - k / total) for k in range(total)], rel=1e-5)

    # Each epoch's figures, at the step count where the epoch ends, equal train_log.jsonl's.
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == epochs
    epoch_ends = [STEPS_PER_EPOCH * e for e in range(1, epochs + 1)]
    for tag, key in (("val/micro_f1", "val_micro_f1"), ("val/macro_f1", "val_macro_f1"),
                     ("train/epoch_loss", "train_loss")):
        steps, values = _series(events, tag)
        assert steps == epoch_ends, tag
        assert values == pytest.approx([entry[key] for entry in log], rel=1e-5, abs=1e-7), tag
    assert _series(events, "epoch")[1] == [1.0, 2.0, 3.0]
    # The epoch's loss is the mean of its steps' losses (every step has its 2 micro-batches here).
    _, losses = _series(events, "train/loss")
    for e, entry in enumerate(log):
        part = losses[e * STEPS_PER_EPOCH : (e + 1) * STEPS_PER_EPOCH]
        assert sum(part) / len(part) == pytest.approx(entry["train_loss"], rel=1e-5)

    # The kept epoch's figures equal metrics.json's validation block, the other figures included.
    metrics = json.loads((run / "metrics.json").read_text())
    kept = metrics["best_epoch"]
    for name in ("micro_f1", "macro_f1", "micro_precision", "micro_recall", "macro_precision", "macro_recall",
                 "samples_f1", "hamming_loss", "subset_accuracy"):
        steps, values = _series(events, f"val/{name}")
        assert values[steps.index(STEPS_PER_EPOCH * kept)] == pytest.approx(metrics["validation"][name],
                                                                            rel=1e-5, abs=1e-7), name

    # The config as hyperparameters: flat keys, scalars kept, lists and null as JSON text.
    (hparams_file,) = (run / "tracking" / "mlcls").glob("*/hparams.yml")
    hparams = yaml.safe_load(hparams_file.read_text())
    assert hparams["train.epochs"] == epochs and hparams["train.lr"] == pytest.approx(1e-3)
    assert hparams["train.report_to"] == '["tensorboard"]'
    assert hparams["data.text_fields"] == '["text"]'
    assert hparams["train.cache_dir"] == "null"
    assert hparams["output.name"] == "tracked"
    # ... and as TensorBoard's own hparams (an event file in another subfolder).
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    (hparams_events,) = (run / "tracking" / "mlcls").glob("*/events.out.tfevents.*")
    content = _events(hparams_events.parent).PluginTagToContent("hparams")["_hparams_/session_start_info"]
    logged = HParamsPluginData.FromString(content).session_start_info.hparams
    assert set(logged) == set(hparams)
    assert logged["train.epochs"].number_value == epochs
    assert logged["train.report_to"].string_value == '["tensorboard"]'


def test_an_interrupted_and_resumed_run_logs_each_step_once(tmp_path, tiny_encoder):
    pytest.importorskip("tensorboard")
    config = load_config(_cli_config(tmp_path, tiny_encoder),
                         ["train.epochs=2", *SETTINGS[1::2]], {"output.name": "cut"})
    with pytest.raises(TrainingInterrupted):
        train(config, stop=StopAfterStep(4))  # mid-epoch 2
    staging = tmp_path / "runs" / ".cut.incomplete"
    train(load_config(staging / "config.yaml"), resume=staging)
    events = _events(tmp_path / "runs" / "cut" / "tracking" / "mlcls")  # two event files: before and after
    assert _series(events, "train/loss")[0] == list(range(1, 2 * STEPS_PER_EPOCH + 1))
    assert _series(events, "val/micro_f1")[0] == [STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH]


def test_each_fold_logs_into_its_own_folder(tmp_path, tiny_encoder):
    pytest.importorskip("tensorboard")
    result = runner.invoke(app, ["train", "-c", str(_cli_config(tmp_path, tiny_encoder)), "--name", "folded",
                                 "--epochs", "1", "--set", "train.folds=2", "--set", "data.validation=null",
                                 *SETTINGS])
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "folded"
    for fold in ("fold-1", "fold-2"):
        events = _events(run / "folds" / fold / "tracking" / "mlcls")
        steps, _ = _series(events, "train/loss")
        assert steps == list(range(1, len(steps) + 1)) and steps  # each fold counts its own steps from 1
        assert len(_series(events, "val/micro_f1")[0]) == 1
        (hparams_file,) = (run / "folds" / fold / "tracking" / "mlcls").glob("*/hparams.yml")
        assert yaml.safe_load(hparams_file.read_text())["output.name"] == fold


def test_unknown_tracker_is_a_one_line_config_error(tmp_path, tiny_encoder):
    result = runner.invoke(app, ["train", "-c", str(_cli_config(tmp_path, tiny_encoder)),
                                 "--set", "train.report_to=[tensorbord]"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output
    assert "'tensorbord'" in lines[0] and "tensorboard" in lines[0] and "mlflow" in lines[0]
    assert not (tmp_path / "runs").exists()


def test_a_tracker_without_its_package_is_one_line_before_training(tmp_path, tiny_encoder, monkeypatch):
    missing = "wandb"  # made missing here, whether or not this host has it
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == missing else find_spec(name, *a))
    result = runner.invoke(app, ["train", "-c", str(_cli_config(tmp_path, tiny_encoder)),
                                 "--set", f"train.report_to=[{missing}]"])
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert f"pip install {missing}" in result.output
    assert not (tmp_path / "runs").exists()  # refused before a run name was claimed


def test_tracker_names_are_accelerates():
    from accelerate.utils import LoggerType

    assert set(TRACKERS) == {str(t) for t in LoggerType} - {"all"}
