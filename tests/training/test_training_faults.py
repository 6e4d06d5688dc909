"""Training under faults of the machine: a full disk (for a checkpoint, for the finished run's model), a runs
folder that refuses writes, two trainings racing for one name. Each ends in a one-line error, and what was
trained stays resumable or whole."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from tests.conftest import _cli


def test_cli_train_on_a_full_disk_says_so_in_one_line(tiny_encoder, tmp_path, monkeypatch):
    # Before: "internal error: OSError: [Errno 28] ..." and an empty checkpoint.tmp in the staging folder.
    import torch
    from typer.testing import CliRunner

    from mlcls.cli import app
    from tests.conftest import TINY_RECORDS, tiny_config, write_jsonl

    data = write_jsonl(tmp_path / "tiny.jsonl", TINY_RECORDS)
    config = tiny_config(tmp_path, tiny_encoder, data)

    def full_disk_save(obj, path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk_save)
    result = CliRunner().invoke(app, ["train", "-c", str(config), "--name", "full", "--epochs", "2"])
    assert result.exit_code == 1, result.output
    staging = tmp_path / "runs" / ".full.incomplete"
    assert "internal error" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (f"error: {staging}: no space left on device while writing "
                                                      "the checkpoint (no checkpoint was saved yet)")
    assert not (staging / "checkpoint.tmp").exists()


def test_train_into_a_runs_folder_that_refuses_writes(tiny_encoder, tmp_path, monkeypatch):
    # Before: "internal error: PermissionError: [Errno 13] Permission denied: '.../runs'".
    from tests.conftest import TINY_RECORDS, tiny_config, write_jsonl

    config = tiny_config(tmp_path, tiny_encoder, write_jsonl(tmp_path / "tiny.jsonl", TINY_RECORDS))
    real_mkdir = Path.mkdir

    def read_only(self, *args, **kwargs):
        if self == tmp_path / "runs":
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    result = _cli("train", "-c", str(config), "--name", "ro", "--epochs", "1")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == (f"error: {tmp_path / 'runs'}: cannot create a run there "
                                                      "(read-only file system)")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("writer", ["write_labels", "write_label_stats", "write_tuning_scores", "write_rule",
                                    "write_train_log"])
def test_a_full_disk_on_any_of_the_runs_files_is_one_line(tiny_encoder, tmp_path, monkeypatch, writer):
    """labels.json, label_stats.json, tuning_scores.npz, thresholds.json, train_log.jsonl: the same one line as the
    model's (docs/reliability.md), never an internal error, and the staging folder kept."""
    import mlcls.training.recipe as recipe
    from tests.conftest import TINY_RECORDS, tiny_config, write_jsonl

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    config = tiny_config(tmp_path, tiny_encoder, write_jsonl(tmp_path / "tiny.jsonl", TINY_RECORDS))
    monkeypatch.setattr(recipe, writer, full)
    result = _cli("train", "-c", str(config), "--name", "end", "--epochs", "1")
    staging = tmp_path / "runs" / ".end.incomplete"
    assert result.exit_code == 1 and "internal error" not in result.stderr and "Traceback" not in result.output
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: {staging}: cannot write") and "(no space left on device)" in line
    assert staging.is_dir() and not (tmp_path / "runs" / "end").exists()


def test_a_full_disk_when_the_run_is_written_keeps_it_resumable(tiny_encoder, tmp_path, monkeypatch):
    # The last stage: the model files. Before: "internal error: OSError: [Errno 28] ...". The unfinished run keeps
    # its last checkpoint, and --resume writes the run once there is room.
    import json

    import safetensors.torch

    from tests.conftest import TINY_RECORDS, tiny_config, write_jsonl

    config = tiny_config(tmp_path, tiny_encoder, write_jsonl(tmp_path / "tiny.jsonl", TINY_RECORDS))
    real_save = safetensors.torch.save_file

    def full_for_the_head(tensors, filename, *args, **kwargs):
        if Path(filename).name == "head.safetensors":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(safetensors.torch, "save_file", full_for_the_head)
    result = _cli("train", "-c", str(config), "--name", "end", "--epochs", "2")
    staging, final = tmp_path / "runs" / ".end.incomplete", tmp_path / "runs" / "end"
    assert result.exit_code == 1 and "internal error" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {staging}: cannot write the model (no space left on device); the unfinished run stays in {staging} "
        f"with its checkpoint: make room (or allow writes) and continue with `mlcls train --resume {final}`")
    monkeypatch.setattr(safetensors.torch, "save_file", real_save)
    result = _cli("train", "--resume", str(final))
    assert result.exit_code == 0, result.output
    assert json.loads((final / "metrics.json").read_text())["epochs_trained"] == 2
    from mlcls.run.validation import validate_run

    validate_run(final)
    assert not staging.exists()


@pytest.mark.slow
def test_two_trainings_racing_for_one_name(tiny_encoder, tmp_path):
    # Fault 2: two processes given --name same shared one staging folder, and the run ended up with one's config
    # and the other's metrics and weights. Now exactly one claims the name; the other stops at once, in one line.
    import json
    import subprocess
    import sys

    import yaml

    from mlcls.run.validation import validate_run
    from tests.conftest import TINY_RECORDS, tiny_config, write_jsonl

    config = tiny_config(tmp_path, tiny_encoder, write_jsonl(tmp_path / "tiny.jsonl", TINY_RECORDS))
    runs = tmp_path / "runs"
    settings = {1: 2, 2: 3}  # seed -> epochs: the two runs differ in every file they write
    procs = {seed: subprocess.Popen(
        [sys.executable, "-m", "mlcls", "train", "-c", str(config), "--name", "same", "--seed", str(seed),
         "--epochs", str(epochs), "--set", f"train.cache_dir={tmp_path / f'cache{seed}'}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for seed, epochs in settings.items()}
    done = {seed: (proc.wait(timeout=300), *proc.communicate()) for seed, proc in procs.items()}
    codes = sorted(code for code, _, _ in done.values())
    assert codes == [0, 1], {seed: (code, err[-2000:]) for seed, (code, _, err) in done.items()}
    winner = next(seed for seed, (code, _, _) in done.items() if code == 0)
    loser_err = next(err for code, _, err in done.values() if code == 1)
    last = loser_err.strip().splitlines()[-1]
    assert last in (f"error: {runs / 'same'}: another training is writing a run of this name now (choose another "
                    "--name, or wait for it)",
                    f"error: {runs / 'same'}: a run with this name exists already (choose another --name)"), loser_err
    assert "internal error" not in loser_err and "Traceback" not in loser_err
    # The finished run is the winner's, whole: config, log, metrics and weights of one training.
    run = runs / "same"
    validate_run(run)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["train"]["seed"] == winner and saved["train"]["epochs"] == settings[winner]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs_trained"] == settings[winner]
    assert len((run / "train_log.jsonl").read_text().splitlines()) == settings[winner]
    assert f"micro-F1 {metrics['validation']['micro_f1']:.4f}" in done[winner][1]
    assert sorted(p.name for p in runs.iterdir()) == ["latest", "same"]  # no staging folder, no lock left
