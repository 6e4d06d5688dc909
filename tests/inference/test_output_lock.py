"""Two `mlcls predict -o SAME` at once: the second is refused in one line before it writes, so the file that
the first reports is the first's, whole."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

from mlcls.atomic import release_lock, try_lock
from mlcls.cli import app
from tests.conftest import write_jsonl

runner = CliRunner()


def _inputs(tmp_path, n: int):
    return write_jsonl(tmp_path / "in.jsonl", [{"id": f"a{i}", "text": "oil prices"} for i in range(n)])


def test_a_second_writer_of_one_output_is_refused_before_it_writes(trained, tmp_path):
    folder, _, _ = trained
    run, out = folder / "runs" / "tiny", tmp_path / "pred.jsonl"
    held = try_lock(tmp_path / ".pred.jsonl.lock")  # another `mlcls predict -o pred.jsonl`, mid-way
    assert held is not None
    try:
        result = runner.invoke(app, ["predict", str(_inputs(tmp_path, 3)), "--model", str(run), "-o", str(out)])
    finally:
        release_lock(held)
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "another mlcls predict is writing this file now" in result.stderr
    assert not out.exists() and not (tmp_path / "pred.jsonl.partial").exists()


def test_a_lock_held_by_another_process_counts_and_dies_with_it(trained, tmp_path):
    """flock is per process and released by the kernel when its holder ends: a killed predict frees the name."""
    folder, _, _ = trained
    run, out = folder / "runs" / "tiny", tmp_path / "pred.jsonl"
    code = ("import sys, time\nfrom pathlib import Path\nfrom mlcls.atomic import try_lock\n"
            "h = try_lock(Path(sys.argv[1]))\nprint('held' if h else 'not held', flush=True)\nsys.stdin.read()\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / ".pred.jsonl.lock")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        refused = runner.invoke(app, ["predict", str(_inputs(tmp_path, 2)), "--model", str(run), "-o", str(out)])
        assert refused.exit_code == 1 and "another mlcls predict" in refused.stderr
    finally:
        holder.kill()
        holder.wait()
    done = runner.invoke(app, ["predict", str(_inputs(tmp_path, 2)), "--model", str(run), "-o", str(out)])
    assert done.exit_code == 0, done.output
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["a0", "a1"]
    assert not (tmp_path / ".pred.jsonl.lock").exists()  # released and removed at the end
