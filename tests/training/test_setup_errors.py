"""A training that fails while it is set up (after its name is claimed, before its first step) says why in one
line and leaves no staging folder behind: nothing to resume, and `mlcls eval` would call it unfinished."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import TINY_RECORDS, _cli, tiny_config, write_jsonl


@pytest.fixture
def config_path(tmp_path, tiny_encoder):
    return tiny_config(tmp_path, tiny_encoder, write_jsonl(tmp_path / "tiny.jsonl", TINY_RECORDS))


@pytest.mark.parametrize(("args", "said"), [
    (["--train-top-layers", "5"], "train_top_layers"),
    (["--max-length", "100"], "model.max_length is 100, but the encoder"),  # the tiny encoder has 64 positions
    (["--model", "/nonexistent/encoder"], "cannot load encoder"),
    (["--set", "train.folds=2", "--set", "data.validation=null", "--train-top-layers", "5"], "train_top_layers"),
], ids=["top-layers", "max-length", "encoder", "cross-fitted"])
def test_a_failed_set_up_leaves_no_staging_folder(tmp_path, config_path, args, said):
    result = _cli("train", "-c", str(config_path), "--name", "broken", *args)
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()  # training's own notes come first, on stderr too
    assert lines[-1].startswith("error: ") and said in lines[-1], result.stderr
    assert "Traceback" not in result.output and sum(line.startswith("error") for line in lines) == 1
    if "train.folds=2" in args:  # cross-fitting tunes its rule on out-of-fold scores: no "untuned rule" note
        assert "no validation data" not in result.stderr
    runs = tmp_path / "runs"
    assert not (runs / ".broken.incomplete").exists() and not (runs / "broken").exists()
    assert not list(runs.glob(".broken*")) or [p.name for p in runs.glob(".broken*")] == [".broken.lock"]


@pytest.mark.parametrize(("setting", "said"), [
    ("train.seed=-5", "train.seed must be in [0, 2**32)"),
    ("train.seed=99999999999", "train.seed must be in [0, 2**32)"),
    ("data.label_separator=", "data.label_separator must not be empty"),
])
def test_values_numpy_or_the_csv_reader_would_refuse_are_config_errors(config_path, setting, said):
    result = _cli("train", "-c", str(config_path), "--set", setting)
    assert result.exit_code == 1 and said in result.stderr and "internal error" not in result.stderr, result.output


def test_a_test_file_that_is_not_there_is_said_before_training(tmp_path, config_path):
    """data.test is read only by `mlcls eval`, after the training: a wrong path is worth a word at the start."""
    result = _cli("train", "-c", str(config_path), "--epochs", "1", "--set", f"data.test={tmp_path / 'nope.jsonl'}")
    assert result.exit_code == 0, result.output
    assert f"note: data.test {tmp_path / 'nope.jsonl'} is not a file" in result.stderr


def test_a_cache_folder_that_cannot_be_written_trains_with_a_temporary_one(tmp_path, config_path):
    """A read-only home or shared cache stopped training with an internal error from `datasets`; it now trains,
    caching in a temporary folder removed at its end, and says so. (Root ignores modes: a path under a file is
    a cache folder no one can create.)"""
    import tempfile

    blocked = tmp_path / "a-file"
    blocked.write_text("")
    before = set(Path(tempfile.gettempdir()).glob("mlcls-cache-*"))
    result = _cli("train", "-c", str(config_path), "--epochs", "1", "--set", f"train.cache_dir={blocked / 'cache'}")
    assert result.exit_code == 0, result.output
    assert f"note: {blocked / 'cache'}: the cache folder cannot be written (not a directory)" in result.stderr
    assert "removed at its end" in result.stderr and "internal error" not in result.output
    assert set(Path(tempfile.gettempdir()).glob("mlcls-cache-*")) == before


def test_an_empty_cache_variable_is_no_cache_in_the_working_folder(monkeypatch, tmp_path):
    from mlcls.training.cache import cache_root

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("MLCLS_CACHE_DIR", "")
    assert cache_root() == tmp_path / ".cache" / "mlcls"
    monkeypatch.setenv("MLCLS_CACHE_DIR", "~/shared-cache")
    assert cache_root() == tmp_path / "shared-cache"
