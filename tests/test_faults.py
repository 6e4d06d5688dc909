"""Faults of the machine, not of the input: a full disk, a folder that refuses writes. Each ends in a one-line
error that names the file and the cause, and leaves nothing half-written.

A full disk is simulated without filling one: `disk_fills_after` lets a file opened by mlcls.atomic take
`room` bytes, then points its descriptor at /dev/full, so that the kernel itself answers ENOSPC to the
write, to the flush and to the close that follow, through Python's own buffered layers."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

import mlcls.atomic as atomic
from mlcls.atomic import WriteError, atomic_open
from mlcls.errors import MlclsError
from mlcls.run.files import read_labels
from mlcls.run.lexical import save_lexical

needs_dev_full = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")


def disk_fills_after(monkeypatch, room: int) -> None:
    """Every file mlcls.atomic opens from now on takes `room` bytes, then the disk is full."""

    class FullDisk(atomic._RawFile):
        used = 0

        def write(self, data):
            if self.used >= room:
                full = os.open("/dev/full", os.O_WRONLY)
                os.dup2(full, self.fileno())
                os.close(full)
            else:
                data = bytes(data)[: room - self.used]  # a short write, as a disk filling up gives
            written = super().write(data)
            self.used += written or 0
            return written

    monkeypatch.setattr(atomic, "_RawFile", FullDisk)


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and "Errno" not in text and "Traceback" not in text
    return text


# --------------------------------------------------------------------------- atomic_open


@needs_dev_full
@pytest.mark.parametrize(("room", "size"), [(0, 10), (100, 100_000), (0, 100_000)])
def test_atomic_open_on_a_full_disk_names_the_file_and_leaves_the_old_one(tmp_path, monkeypatch, room, size):
    # (0, 10): the write is buffered and it is close() that fails; the others fail in write() or flush().
    target = tmp_path / "metrics.json"
    target.write_text("old")
    disk_fills_after(monkeypatch, room)
    with pytest.raises(WriteError) as info, atomic_open(target) as handle:
        handle.write("x" * size)
    assert one_line(info.value) == f"{target}: cannot write (no space left on device; nothing was written)"
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]  # the temporary file is gone


def test_atomic_open_in_a_folder_that_refuses_writes(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / ".x.tmp"))

    monkeypatch.setattr(atomic.tempfile, "mkstemp", refuse)
    with pytest.raises(WriteError) as info, atomic_open(tmp_path / "out.json") as handle:
        handle.write("x")
    assert one_line(info.value) == f"{tmp_path / 'out.json'}: cannot write (permission denied)"


def test_atomic_open_leaves_other_errors_alone(tmp_path):
    # An OSError of the caller's own (another file) is not blamed on the file being written.
    with pytest.raises(FileNotFoundError), atomic_open(tmp_path / "out.json", "wb") as handle:
        handle.write(b"x")
        (tmp_path / "missing").read_text()
    assert list(tmp_path.iterdir()) == []
    with atomic_open(tmp_path / "out.json", "wb") as handle:  # and the good path is unchanged
        handle.write(b"whole")
    assert (tmp_path / "out.json").read_bytes() == b"whole"


def test_describe_os_error():
    assert atomic.describe_os_error(OSError(errno.ENOSPC, "No space left on device")) == "no space left on device"
    assert atomic.describe_os_error(OSError(errno.EROFS, "Read-only file system")) == "read-only file system"
    assert atomic.describe_os_error(OSError(errno.EIO, "Input/output error")) == "input/output error"
    assert atomic.is_disk_full(RuntimeError("Error while serializing: IoError(Os { code: 28, kind: StorageFull })"))
    assert not atomic.is_disk_full(RuntimeError("shape mismatch"))


# --------------------------------------------------------------------------- checkpoints


def _tensors(value: float):
    import torch

    return {"w": torch.full((4,), value)}


def test_a_checkpoint_that_cannot_be_written_keeps_the_previous_one(tmp_path, monkeypatch):
    import torch

    from mlcls.run.checkpoint import CheckpointWriteError, find_checkpoint, load_checkpoint, save_checkpoint

    run_dir = tmp_path / ".mix.incomplete"
    save_checkpoint(run_dir, {"epoch": 1}, _tensors(1.0), None, {"step": torch.tensor(1)})

    def full_disk_save(obj, path, *args, **kwargs):
        Path(path).write_bytes(b"PK\x03\x04 half")  # what a full disk leaves: a torn file
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk_save)
    with pytest.raises(CheckpointWriteError) as info:
        save_checkpoint(run_dir, {"epoch": 2}, _tensors(2.0), None, {"step": torch.tensor(2)})
    assert one_line(info.value) == (
        f"{run_dir}: no space left on device while writing the checkpoint (the previous checkpoint is kept; "
        f"once fixed, continue with: mlcls train --resume {tmp_path / 'mix'})")
    assert isinstance(info.value, MlclsError)  # the CLI prints "error: ...", not "internal error"
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoint"]  # no checkpoint.tmp left behind
    kept = load_checkpoint(find_checkpoint(run_dir))
    assert kept.state == {"epoch": 1} and kept.model["w"].tolist() == [1.0] * 4


def test_a_first_checkpoint_on_a_full_disk_says_none_was_kept(tmp_path, monkeypatch):
    import torch

    import mlcls.run.checkpoint as checkpoint

    # torch words a full disk as a RuntimeError without an errno: the disk itself is asked.
    def torch_full_disk(obj, path, *args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file")

    monkeypatch.setattr(torch, "save", torch_full_disk)
    monkeypatch.setattr(checkpoint, "_no_room", lambda folder: True)
    with pytest.raises(checkpoint.CheckpointWriteError, match=r"no space left on device while writing the "
                       r"checkpoint \(no checkpoint was saved yet\)$"):
        checkpoint.save_checkpoint(tmp_path, {}, _tensors(1.0), None, {})
    assert list(tmp_path.iterdir()) == []


def test_a_checkpoint_bug_stays_a_bug_but_leaves_no_temporary_folder(tmp_path, monkeypatch):
    import torch

    import mlcls.run.checkpoint as checkpoint

    def broken(obj, path, *args, **kwargs):
        raise RuntimeError("cannot pickle this")

    monkeypatch.setattr(torch, "save", broken)
    monkeypatch.setattr(checkpoint, "_no_room", lambda folder: False)
    with pytest.raises(RuntimeError, match="cannot pickle this"):
        checkpoint.save_checkpoint(tmp_path, {}, _tensors(1.0), None, {})
    assert list(tmp_path.iterdir()) == []


def test_a_checkpoint_folder_that_refuses_writes(tmp_path, monkeypatch):
    import mlcls.run.checkpoint as checkpoint

    real_mkdir = Path.mkdir

    def refuse(self, *args, **kwargs):
        if self.name == "checkpoint.tmp":
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(checkpoint.CheckpointWriteError, match=r"permission denied while writing the checkpoint"):
        checkpoint.save_checkpoint(tmp_path / "run", {}, _tensors(1.0), None, {})


# --------------------------------------------------------------------------- predict -o


@pytest.fixture()
def run_and_input(trained, tmp_path):
    from mlcls.inference.loading import load_run
    from tests.conftest import TINY_RECORDS, write_jsonl

    folder, _, _ = trained
    data = write_jsonl(tmp_path / "in.jsonl", [{"id": f"r{i}", "text": r["text"]} for i, r in
                                               enumerate(TINY_RECORDS * 3)])
    return load_run(folder / "runs" / "tiny"), data


@needs_dev_full
def test_predict_output_on_a_full_disk_leaves_no_file(run_and_input, tmp_path, monkeypatch):
    # The reported fault: the cleanup's close() raised ENOSPC again before the unlink, leaving OUT.partial.
    from mlcls.data.records import read_records
    from mlcls.inference.predict import predict_to_file

    run, data = run_and_input
    out = tmp_path / "out.jsonl"
    disk_fills_after(monkeypatch, 150)  # a line or two, then nothing
    with pytest.raises(WriteError) as info:
        predict_to_file(run, read_records(data, require_labels=False), out, 4, chunk_records=5)
    assert one_line(info.value) == (f"{out}.partial: cannot write the predictions (no space left on device); "
                                    "no file was left")
    assert list(tmp_path.glob("out.jsonl*")) == []


@needs_dev_full
def test_predict_output_on_a_real_full_device(run_and_input, tmp_path):
    # No simulation at all: OUT.partial is /dev/full. The cleanup removes it (here: the link) all the same.
    from mlcls.data.records import read_records
    from mlcls.inference.predict import predict_to_file

    run, data = run_and_input
    out = tmp_path / "out.jsonl"
    (tmp_path / "out.jsonl.partial").symlink_to("/dev/full")
    with pytest.raises(MlclsError, match="no space left on device"):
        predict_to_file(run, read_records(data, require_labels=False), out, 4, chunk_records=5)
    assert list(tmp_path.glob("out.jsonl*")) == []


def test_predict_into_a_folder_that_refuses_writes(run_and_input, tmp_path, monkeypatch):
    from mlcls.data.records import read_records
    from mlcls.inference.predict import predict_to_file

    run, data = run_and_input

    def refuse(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(atomic.os, "open", refuse)
    out = tmp_path / "out.jsonl"
    with pytest.raises(WriteError, match=rf"^{out}\.partial: cannot write \(permission denied\)$"):
        predict_to_file(run, read_records(data, require_labels=False), out, 4)


def test_cli_reports_a_full_disk_as_an_error_not_an_internal_error(run_and_input, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from mlcls.cli import app

    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full (Linux)")
    run, data = run_and_input
    disk_fills_after(monkeypatch, 0)
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(app, ["predict", str(data), "--model", str(run.path), "-o", str(out)])
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"error: {out}.partial: cannot write the predictions (no space left on device); "
                                     "no file was left")
    assert list(tmp_path.glob("out.jsonl*")) == []


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


# --------------------------------------------------------------------------- run directories (validate_run)


def _run_copy(trained, tmp_path: Path, name: str = "copy") -> Path:
    import shutil

    folder, _, _ = trained
    copy = tmp_path / "runs" / name
    shutil.copytree(folder / "runs" / "tiny", copy)
    return copy


def _cli(*args: str, input: str | None = None):
    from typer.testing import CliRunner

    from mlcls.cli import app

    return CliRunner().invoke(app, list(args), input=input)


def _predict_error(run: Path) -> str:
    """`mlcls predict` on `run`: it must fail with one `error:` line; that line."""
    result = _cli("predict", "-", "--model", str(run), input='{"text": "crude oil"}\n')
    assert result.exit_code == 1, result.output
    assert "internal error" not in result.stderr and "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize(("removed", "named"), [
    ("config.yaml", "config.yaml"),
    ("labels.json", "labels.json"),
    ("thresholds.json", "thresholds.json"),
    ("head.safetensors", "head.safetensors"),
    ("encoder", "encoder"),
    ("encoder/config.json", "encoder/config.json"),
    ("encoder/model.safetensors", "encoder/model.safetensors"),
    ("encoder/tokenizer_config.json", "encoder/tokenizer_config.json"),
    ("encoder/tokenizer.json", "encoder"),  # fault 1: before, predict tagged nothing and exited 0
])
def test_a_run_missing_a_file_is_refused_naming_it(trained, tmp_path, removed, named):
    import shutil

    from mlcls.errors import RunDirError
    from mlcls.run.validation import validate_run

    run = _run_copy(trained, tmp_path)
    target = run / removed
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(RunDirError) as info:
        validate_run(run)
    assert one_line(info.value).startswith(f"{run / named}: ")
    assert _predict_error(run).startswith(f"error: {run / named}: ")


def test_a_missing_tokenizer_is_named_not_scored(trained, tmp_path):
    run = _run_copy(trained, tmp_path)
    (run / "encoder" / "tokenizer.json").unlink()
    assert _predict_error(run) == (f"error: {run / 'encoder'}: the tokenizer's vocabulary is missing (none of "
                                   "tokenizer.json, vocab.txt, vocab.json, spiece.model, sentencepiece.bpe.model, "
                                   "tokenizer.model); without it every word would be an unknown token")
    result = _cli("eval", str(run))
    assert result.exit_code == 1 and "tokenizer's vocabulary is missing" in result.stderr


def test_a_tokenizer_of_another_model_is_refused(trained, tmp_path):
    # All files are there, but the tokenizer is not the encoder's: only loading it tells (check_tokenizer_fits).
    from transformers import BertTokenizer

    run = _run_copy(trained, tmp_path)
    (run / "encoder" / "tokenizer.json").unlink()
    BertTokenizer(vocab={t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "oil"])}) \
        .save_pretrained(run / "encoder")
    assert _predict_error(run) == (f"error: {run / 'encoder'}: the tokenizer has 6 tokens but the encoder's "
                                   "vocabulary has 33 (a tokenizer file is missing or belongs to another model)")


@pytest.mark.parametrize("file", ["encoder/model.safetensors", "head.safetensors"])
@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_truncated_or_garbled_weights_file_is_one_line_naming_it(trained, tmp_path, file, damage):
    # Before: "internal error: SafetensorError: Error while deserializing header ..." for the encoder.
    run = _run_copy(trained, tmp_path)
    target = run / file
    if damage == "truncated":
        os.truncate(target, target.stat().st_size // 2)
    else:
        target.write_bytes(b"\x00" * 64)
    line = _predict_error(run)
    assert line.startswith(f"error: {target}: corrupt")
    if file == "head.safetensors":
        assert "corrupt or does not match labels.json" in line
    else:
        assert "corrupt or truncated, not a whole safetensors file" in line


def test_labels_head_and_thresholds_must_agree(trained, tmp_path):
    import json

    from mlcls.errors import RunDirError
    from mlcls.run.validation import validate_run

    run = _run_copy(trained, tmp_path)
    labels = json.loads((run / "labels.json").read_text())["labels"]
    assert labels == ["cocoa", "grain", "oil"]
    (run / "labels.json").write_text(json.dumps({"labels": [*labels, "wheat"]}))
    with pytest.raises(RunDirError, match=r"head\.safetensors: the head scores 3 labels but .*labels\.json has 4: "
                       "the files come from different runs$"):
        validate_run(run)

    run = _run_copy(trained, tmp_path, "thresholds")
    rule = json.loads((run / "thresholds.json").read_text())
    rule["per_label"]["wheat"] = 0.3  # a cut-off for a label the run does not have: silently unused before
    (run / "thresholds.json").write_text(json.dumps(rule))
    assert _predict_error(run) == (f"error: {run / 'thresholds.json'}: names 1 label(s) that labels.json lacks "
                                   "('wheat'): the files come from different runs")
    rule["per_label"].pop("wheat")
    rule["per_label"]["oil"] = 7
    (run / "thresholds.json").write_text(json.dumps(rule))
    assert "the cut-off of 'oil' is 7, not a number in [0, 1]" in _predict_error(run)


def test_a_cross_fitted_run_needs_every_fold(trained, tmp_path):
    # A run that predicts with its K fold models; one fold gone. Before, the glob found the others and the run
    # predicted with K-1 models, as if nothing were wrong.
    import shutil

    import yaml

    from mlcls.errors import RunDirError
    from mlcls.run.validation import validate_run

    run = _run_copy(trained, tmp_path)
    for k in (1, 2, 3):
        fold = run / "folds" / f"fold-{k}"
        fold.mkdir(parents=True)
        shutil.copytree(run / "encoder", fold / "encoder")
        shutil.copy(run / "head.safetensors", fold / "head.safetensors")
    shutil.rmtree(run / "encoder")
    (run / "head.safetensors").unlink()
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["train"]["folds"] = 3
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    validate_run(run)  # whole
    shutil.rmtree(run / "folds" / "fold-2")
    with pytest.raises(RunDirError, match=r"fold-2: missing from the run directory \(the run was trained with "
                       r"train\.folds=3, and predicts with every fold's model\)$"):
        validate_run(run)
    (run / "folds" / "fold-2").mkdir()
    (run / "folds" / "fold-2" / "head.safetensors").write_bytes(b"x")
    assert _predict_error(run).startswith(f"error: {run / 'folds' / 'fold-2' / 'encoder'}: missing")


def test_an_unreadable_run_file_is_an_error_not_an_internal_error(trained, tmp_path, monkeypatch):
    # Root reads everything, so the kernel's answer is injected: EACCES from stat(), as a folder without the
    # search permission gives. Before: "internal error: PermissionError: [Errno 13] ...".
    run = _run_copy(trained, tmp_path)
    real_stat = Path.stat

    def forbidden(self, *args, **kwargs):
        if self.name == "config.yaml" and self.parent == run:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_stat(self, *args, **kwargs)

    monkeypatch.setattr(Path, "stat", forbidden)
    assert _predict_error(run) == f"error: {run / 'config.yaml'}: cannot read (permission denied)"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_run_file_for_real(trained, tmp_path):
    run = _run_copy(trained, tmp_path)
    (run / "head.safetensors").chmod(0)
    try:
        assert _predict_error(run) == f"error: {run / 'head.safetensors'}: cannot read (permission denied)"
    finally:
        (run / "head.safetensors").chmod(0o644)


def test_validation_reads_no_weights(trained, tmp_path, monkeypatch):
    # validate_run looks at safetensors headers only: it must not import torch's model code or load tensors.
    import safetensors.torch

    from mlcls.run.validation import validate_run

    def no_loading(*args, **kwargs):
        raise AssertionError("validate_run loaded tensors")

    monkeypatch.setattr(safetensors.torch, "load_file", no_loading)
    validate_run(_run_copy(trained, tmp_path))


# --------------------------------------------------------------------------- unfinished runs


def _unfinished(tmp_path: Path, name: str, checkpoint: bool) -> Path:
    staging = tmp_path / "runs" / f".{name}.incomplete"
    staging.mkdir(parents=True)
    (staging / "config.yaml").write_text("{}\n")
    if checkpoint:
        (staging / "checkpoint").mkdir()
        (staging / "checkpoint" / "state.json").write_text("{}")
    return tmp_path / "runs" / name


def test_eval_and_predict_of_an_interrupted_run_say_how_to_resume(tmp_path):
    # Before: "runs/NAME: run directory not found".
    final = _unfinished(tmp_path, "cut", checkpoint=True)
    expected = (f"error: {final}: this run is unfinished: its training was interrupted, and "
                f"{final.parent / '.cut.incomplete'} keeps a checkpoint; continue it with `mlcls train --resume "
                f"{final}`")
    for args in (["eval", str(final)], ["predict", "-", "--model", str(final)],
                 ["eval", str(final.parent / ".cut.incomplete")]):
        result = _cli(*args, input="")
        assert result.exit_code == 1 and result.stderr.strip() == expected, result.output


def test_eval_of_a_run_killed_before_its_first_checkpoint(tmp_path):
    final = _unfinished(tmp_path, "early", checkpoint=False)
    result = _cli("eval", str(final))
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"error: {final}: this run is unfinished: its training stopped before its first "
                                     "checkpoint, so there is nothing to resume; train it again (`--name early` "
                                     "reuses the name)")


def test_eval_of_a_run_being_trained_now(tmp_path):
    from mlcls.run.lifecycle import begin_run, release_run, training_now

    staging = begin_run(tmp_path / "runs", "busy")  # holds the lock, as a training does
    try:
        result = _cli("eval", str(tmp_path / "runs" / "busy"))
        assert result.exit_code == 1
        assert result.stderr.strip() == (f"error: {tmp_path / 'runs' / 'busy'}: this run is still being trained (its "
                                         f"files are in {staging}); evaluate it when the training ends")
    finally:
        release_run(staging)
    assert not training_now(staging)


def test_another_process_training_a_run_is_seen(tmp_path):
    # /proc/locks shows another process's lock; looking does not take it (a training starting now is not refused).
    import subprocess
    import sys

    from mlcls.run.layout import staging_dir
    from mlcls.run.lifecycle import begin_run, release_run, training_now

    if not os.path.exists("/proc/locks"):
        pytest.skip("needs /proc/locks (Linux)")
    runs = tmp_path / "runs"
    code = ("import sys, time\nfrom pathlib import Path\nfrom mlcls.run.lifecycle import begin_run\n"
            "begin_run(Path(sys.argv[1]), 'busy')\nprint('held', flush=True)\ntime.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(runs)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert training_now(staging_dir(runs / "busy"))
        assert "still being trained" in _cli("eval", str(runs / "busy")).stderr
    finally:
        holder.kill()
        holder.wait()
    assert not training_now(staging_dir(runs / "busy"))  # killed: the kernel dropped its lock
    release_run(begin_run(runs, "busy"))  # and the name is free


def test_a_runs_folder_is_not_a_run(trained):
    folder, _, _ = trained
    result = _cli("eval", str(folder / "runs"))
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"error: {folder / 'runs'}: a folder of runs, not a run: name one of them "
                                     f"(e.g. {folder / 'runs' / 'latest'})")


# --------------------------------------------------------------------------- training: the runs folder, the end


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


# --------------------------------------------------------------------------- two trainings, one name


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


def test_a_run_written_whole_but_not_renamed_says_so(trained, tmp_path):
    # A kill between the last file of a run (its checkpoint already removed) and the rename into place.
    import shutil

    copy = _run_copy(trained, tmp_path, "whole")
    staging = copy.parent / ".whole.incomplete"
    copy.rename(staging)
    result = _cli("eval", str(copy))
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"error: {copy}: this run was written whole, but its training stopped before "
                                     f"renaming it into place: `mv {staging} {copy}` finishes it")
    shutil.move(staging, copy)
    assert _cli("eval", str(copy)).exit_code == 0


def test_eval_with_no_finished_run_names_the_unfinished_ones(tmp_path, monkeypatch):
    _unfinished(tmp_path, "cut", checkpoint=True)
    monkeypatch.chdir(tmp_path)
    result = _cli("eval")
    assert result.exit_code == 1
    assert result.stderr.strip() == ("error: runs/latest: no run found (train one with `mlcls train`, or name a run "
                                     "directory); unfinished: runs/cut")


def test_a_blended_lexical_model_must_be_whole_and_present(trained, tmp_path):
    # model.lexical: tfidf runs keep a TF-IDF model in lexical/; without it, scores would silently be the encoder's
    # alone (LexicalModel.load answers None for a missing folder), which the run's rule was not tuned on.
    import json
    import shutil

    from mlcls.data.records import read_records
    from mlcls.errors import RunDirError
    from mlcls.model.lexical import fit_lexical
    from mlcls.run.validation import validate_run

    folder, data, _ = trained
    run = _run_copy(trained, tmp_path)
    records = list(read_records(data, require_labels=True))
    encoded = read_labels(run).encode(records)
    model = fit_lexical([r.text for r in records], encoded.targets, encoded.mask)
    model.weight = 0.5
    save_lexical(run, model)
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps({**metrics, "lexical_weight": 0.5}))
    validate_run(run)  # whole
    weights = run / "lexical" / "weights.safetensors"
    whole = weights.read_bytes()
    weights.write_bytes(whole[: len(whole) // 2])
    assert _predict_error(run).startswith(f"error: {weights}: corrupt or truncated, not a whole safetensors file")
    weights.write_bytes(whole)
    from safetensors.numpy import save_file

    save_file({"idf": model.idf, "coef": model.coef[:2], "intercept": model.intercept[:2]}, str(weights))
    with pytest.raises(RunDirError, match=r"weights\.safetensors: the lexical model scores 2 labels but .*labels\.json "
                       "has 3: the files come from different runs$"):
        validate_run(run)
    shutil.rmtree(run / "lexical")
    assert _predict_error(run) == (f"error: {run / 'lexical'}: missing from the run directory ({run / 'metrics.json'} "
                                   "says the run blends this lexical model in at weight 0.5)")
