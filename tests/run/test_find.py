"""Finding a run (mlcls.run.find): what `eval` and `predict` say of a run that is not there as a finished run,
i.e. an interrupted or killed training, a run being trained now, one written whole but not renamed, a runs
folder named instead of a run, no finished run at all."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import _cli
from tests.run.conftest import _run_copy


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
