"""Run names: a name the file system refuses (a NUL byte, too many bytes) is a one-line config error before any
data is read; runs/latest pointing at a run that is gone says so; and every command mlcls prints for the user to
run quotes its words, so that a name with a space or a non-ASCII letter can be copied into a shell as it is."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest
from rich.console import Console

from mlcls.config import RUN_NAME_MAX_BYTES, Config
from mlcls.errors import ConfigError, RunDirError
from mlcls.run import layout
from tests.conftest import TINY_RECORDS, _cli, one_line, tiny_config, write_jsonl

NAME = "mon café"  # a space and a non-ASCII letter
quiet = Console(stderr=True, quiet=True)


def _commands(message: str) -> list[list[str]]:
    """The commands a message shows between backticks, split as a shell splits them."""
    return [shlex.split(command) for command in re.findall(r"`([^`]*)`", message)]


# ------------------------------------------------------------------------------------------ names the system refuses


def test_a_run_name_of_a_staging_folder_or_a_lock_is_refused(tmp_path):
    # ".x.incomplete" was taken for run x's staging folder (reported "unfinished"), ".x.lock" for its lock
    for name in (".x.incomplete", ".x.lock"):
        with pytest.raises(ConfigError) as info:
            Config.from_dict({"output": {"name": name}})
        assert one_line(info.value) == (f"output.name {name!r} is not a valid run name: it is how the runs folder "
                                        "names an unfinished run's folder or a run's lock")
    for name in ("x.v2", ".hidden", "x.lock"):  # as before (a run .hidden trained earlier still loads)
        assert Config.from_dict({"output": {"name": name}}).output.name == name


def test_a_run_name_with_a_nul_byte_is_a_config_error(tmp_path):
    # Before: "internal error: ValueError: embedded null byte" when the run's folder was made.
    with pytest.raises(ConfigError) as info:
        Config.from_dict({"output": {"name": "a\0b"}})
    assert one_line(info.value) == ("output.name 'a\\x00b' is not a valid run name: it holds a NUL byte, which no "
                                    "file name may hold")
    with pytest.raises(ConfigError, match="not valid Unicode text$"):
        Config.from_dict({"output": {"name": "a\ud800"}})  # a lone surrogate (YAML's "\ud800"): no file name
    config = tmp_path / "nul.yaml"
    config.write_text('data: {train: missing.jsonl}\noutput: {name: "a\\0b"}\n')
    result = _cli("train", "-c", str(config))
    assert result.exit_code == 1 and "internal error" not in result.output
    assert result.stderr.strip().splitlines() == [f"error: {config}:2: output.name 'a\\x00b' is not a valid run "
                                                  "name: it holds a NUL byte, which no file name may hold"]


def test_a_run_name_too_long_for_the_file_system_is_refused_before_the_data_is_read(tmp_path):
    # Before: the data was read (here: missing) and the error blamed the runs folder ("file name too long").
    result = _cli("train", "--data", str(tmp_path / "missing.jsonl"), "--name", "x" * 300, "--out", str(tmp_path))
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f"error: output.name {'x' * 24!r}... is too long for a run name: 300 bytes in UTF-8, at most 243 (a file name "
        "is at most 255 bytes, and the run's staging folder adds 12 to its name)"]
    with pytest.raises(ConfigError, match="244 bytes in UTF-8"):  # bytes, not characters: é is two
        Config.from_dict({"output": {"name": "é" * 122}})
    Config.from_dict({"output": {"name": "é" * 121 + "x"}})


def test_the_longest_run_name_fits_every_file_name_a_run_makes(tmp_path):
    """RUN_NAME_MAX_BYTES (config.py, below run/) is what layout.py's longest name of a run leaves of 255 bytes."""
    from mlcls.run.lifecycle import begin_run, finish_run, release_run

    name = "é" * ((RUN_NAME_MAX_BYTES - 1) // 2) + "x"
    assert len(name.encode()) == RUN_NAME_MAX_BYTES
    final = tmp_path / "runs" / name
    staging = layout.staging_dir(final)
    made = [staging.name, layout.lock_file(staging).name, final.name]
    assert max(len(part.encode()) for part in made) == 255 == len(staging.name.encode())
    if os.pathconf(tmp_path, "PC_NAME_MAX") == 255:  # the real thing, where the file system's limit is Linux's
        assert begin_run(tmp_path / "runs", name) == staging
        release_run(staging)
        assert finish_run(staging) == final and (tmp_path / "runs" / "latest").resolve() == final.resolve()
        with pytest.raises(OSError, match="too long"):  # one byte more: what config validation refuses first
            layout.staging_dir(final.with_name(name + "y")).mkdir()


# ------------------------------------------------------------------------------------------ runs/latest


def test_a_dangling_latest_link_says_what_it_points_at(tmp_path, monkeypatch):
    # Before: "runs/latest: no run found (train one with `mlcls train`, ...)", with the link right there.
    from mlcls.run.find import resolve_run

    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "latest").symlink_to("gone")
    monkeypatch.chdir(tmp_path)
    expected = ("runs/latest: a link to runs/gone, which does not exist (moved or deleted?): name a run directory, or "
                "train one with `mlcls train`")
    with pytest.raises(RunDirError) as info:
        resolve_run(None)
    assert one_line(info.value) == expected
    result = _cli("eval")
    assert result.exit_code == 1 and result.stderr.strip() == f"error: {expected}"
    # A link to a run that is unfinished says that instead.
    (runs / ".gone.incomplete" / "checkpoint").mkdir(parents=True)
    (runs / ".gone.incomplete" / "checkpoint" / "state.json").write_text("{}")
    (runs / ".gone.incomplete" / "config.yaml").write_text("{}\n")
    assert "this run is unfinished" in _cli("eval").stderr


# ------------------------------------------------------------------------------------------ printed commands


def _staging(tmp_path: Path, checkpoint: bool) -> Path:
    staging = layout.staging_dir(tmp_path / "runs" / NAME)
    staging.mkdir(parents=True)
    (staging / "config.yaml").write_text("{}\n")
    if checkpoint:
        (staging / "checkpoint").mkdir()
        (staging / "checkpoint" / "state.json").write_text("{}")
    return staging


def test_printed_commands_quote_a_run_name_with_a_space_and_an_accent(trained, tmp_path):
    from mlcls.run.find import unfinished_run
    from mlcls.run.lifecycle import begin_run, run_write_error
    from tests.run.conftest import _run_copy

    final = tmp_path / "runs" / NAME
    staging = _staging(tmp_path, checkpoint=False)
    assert _commands(unfinished_run(final)) == [["--name", NAME]]
    (staging / "checkpoint").mkdir()
    (staging / "checkpoint" / "state.json").write_text("{}")
    message = unfinished_run(final)
    assert _commands(message) == [["mlcls", "train", "--resume", str(final)]]
    assert f"`mlcls train --resume '{final}'`" in message
    with pytest.raises(RunDirError) as info:
        begin_run(tmp_path / "runs", NAME)
    assert _commands(str(info.value)) == [["mlcls", "train", "--resume", str(final)]]
    error = run_write_error(staging, staging / "metrics.json", "", OSError(28, "No space left on device"))
    assert _commands(str(error)) == [["mlcls", "train", "--resume", str(final)]]

    whole = _run_copy(trained, tmp_path / "whole", NAME)  # written whole, not renamed into place
    whole.rename(layout.staging_dir(whole))
    assert _commands(unfinished_run(whole)) == [["mv", str(layout.staging_dir(whole)), str(whole)]]


def _tiny(tmp_path: Path, encoder: Path, *overrides: str):
    from mlcls.config import load_config

    data = write_jsonl(tmp_path / "tiny.jsonl", TINY_RECORDS)
    return load_config(tiny_config(tmp_path, encoder, data), ["train.epochs=1", f"train.cache_dir={tmp_path / 'c'}",
                                                              *overrides], {"output.name": NAME})


@pytest.mark.parametrize("overrides", [(), ("data.validation=null", "train.folds=2")], ids=["one-model", "folds"])
def test_an_interrupted_training_prints_a_quoted_resume_command(tmp_path, tiny_encoder, overrides):
    from mlcls.training.data import TrainingInterrupted
    from mlcls.training.entry import train
    from mlcls.training.interrupt import StopAfterStep

    with pytest.raises(TrainingInterrupted) as info:
        train(_tiny(tmp_path, tiny_encoder, *overrides), quiet, stop=StopAfterStep(1))
    command = str(info.value).rsplit("continue with: ", 1)[1]
    assert shlex.split(command) == ["mlcls", "train", "--resume", str(tmp_path / "runs" / NAME)]
