"""The archive job's parts without Ray (fast): INPUT -> shards and their output names, one shard predicted in
this process exactly as local `mlcls predict` predicts the same file, the bad-input policy per shard, the output
folder's claim, job settings and commit records, and the command line's refusals.

    pytest tests/archive/test_archive_shards.py -q
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlcls.archive.folder import DONE, JOB, MANIFEST, REJECTS, OutputFolder, temporary_name
from mlcls.archive.inputs import plan_inputs
from mlcls.archive.job import ArchiveJob
from mlcls.archive.shard import load_context, predict_shard
from mlcls.cli import app
from mlcls.errors import DataError, MlclsError
from tests.archive.conftest import ARTICLES, read_rows, tiny_run

runner = CliRunner()


# --------------------------------------------------------------------------- INPUT -> shards


def test_a_folder_gives_its_record_files_sorted_with_output_names_after_them(archive):
    out = archive / "predictions"  # inside the input folder: never read as input
    out.mkdir()
    (out / "a.jsonl").write_text('{"id": "x", "text": "old output"}\n')
    plan = plan_inputs(str(archive), "jsonl", out)
    assert [(Path(t.input).relative_to(archive).as_posix(), t.output, t.rejects) for t in plan.tasks] == [
        ("2020/b.csv", "2020/b.jsonl", "2020/b.csv"),
        ("2020/c.parquet", "2020/c.jsonl", "2020/c.jsonl"),
        ("a.jsonl", "a.jsonl", "a.jsonl"),
    ]
    assert [t.index for t in plan.tasks] == [0, 1, 2]
    assert plan.tasks[2].size == (archive / "a.jsonl").stat().st_size
    assert plan.notes == ["1 files in " + str(archive) + " are not record files and were left out: README.md"]


def test_a_glob_and_a_single_file(archive, tmp_path):
    plan = plan_inputs(str(archive / "2020" / "*"), "parquet", tmp_path / "out")
    assert [t.output for t in plan.tasks] == ["b.parquet", "c.parquet"]
    plan = plan_inputs(str(archive / "**" / "*.csv"), "jsonl", tmp_path / "out")
    assert [t.output for t in plan.tasks] == ["2020/b.jsonl"]
    plan = plan_inputs(str(archive / "a.jsonl"), "csv", tmp_path / "out")
    assert [t.output for t in plan.tasks] == ["a.csv"] and "one worker" in plan.notes[0]


def test_compressed_inputs_lose_both_suffixes(tmp_path):
    import gzip

    folder = tmp_path / "in"
    folder.mkdir()
    with gzip.open(folder / "wire-03.jsonl.gz", "wt") as handle:
        handle.write(json.dumps(ARTICLES[0]) + "\n")
    assert [t.output for t in plan_inputs(str(folder), "jsonl", tmp_path / "out").tasks] == ["wire-03.jsonl"]


def test_inputs_that_cannot_be_planned_are_one_line_errors(tmp_path, archive):
    (archive / "a.csv").write_text("id,text\nz,cocoa\n")  # a.jsonl and a.csv would both write a.jsonl
    with pytest.raises(MlclsError, match=r"a\.csv and .*a\.jsonl would both write a\.jsonl"):
        plan_inputs(str(archive), "jsonl", tmp_path / "out")
    with pytest.raises(MlclsError, match="not stdin"):
        plan_inputs("-", "jsonl", tmp_path / "out")
    with pytest.raises(DataError, match="file not found"):
        plan_inputs(str(tmp_path / "missing.jsonl"), "jsonl", tmp_path / "out")
    with pytest.raises(MlclsError, match="no file matches"):
        plan_inputs(str(tmp_path / "*.nothing"), "jsonl", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MlclsError, match="no record files"):
        plan_inputs(str(tmp_path / "empty"), "jsonl", tmp_path / "out")
    (tmp_path / "notes.docx").write_text("x")
    with pytest.raises(DataError, match="unsupported file type"):
        plan_inputs(str(tmp_path / "notes.docx"), "jsonl", tmp_path / "out")


# --------------------------------------------------------------------------- one shard, in this process


def _context(trained, out: Path, **changes):
    job = replace(ArchiveJob(tiny_run(trained).resolve(), out, scores="all"), **changes)
    out.mkdir(parents=True, exist_ok=True)
    return load_context({**job.worker_settings(), "device": "cpu"})


def _leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob(".*.tmp"))


def test_a_shard_is_written_as_local_predict_writes_its_file(trained, archive, tmp_path):
    out = tmp_path / "out"
    context = _context(trained, out)
    task = plan_inputs(str(archive / "a.jsonl"), "jsonl", out).tasks[0]
    told = []
    status = predict_shard(context, task, told.append)
    local = tmp_path / "local.jsonl"
    result = runner.invoke(app, ["predict", str(archive / "a.jsonl"), "--model", str(tiny_run(trained)), "--scores",
                                 "all", "-o", str(local)])
    assert result.exit_code == 0, result.output
    assert (out / "a.jsonl").read_bytes() == local.read_bytes()  # the same shard, chunks and batches: same bytes
    assert status["records"] == 12 and sum(told) == 12 and status["skipped"] == {} and status["rejects"] is None
    assert status["precision"] == "fp32" and status["peak_rss_mib"] > 0
    assert json.loads((out / DONE / "a.jsonl.json").read_text()) == status  # the commit record
    assert _leftovers(out) == []


def test_a_parquet_shard_holds_the_same_rows(trained, archive, tmp_path):
    jsonl, parquet = _context(trained, tmp_path / "j"), _context(trained, tmp_path / "p", fmt="parquet")
    for context, fmt in ((jsonl, "jsonl"), (parquet, "parquet")):
        task = plan_inputs(str(archive / "2020" / "c.parquet"), fmt, context.root).tasks[0]
        assert "error" not in predict_shard(context, task)
    rows = read_rows(tmp_path / "p" / "c.parquet")
    assert rows == read_rows(tmp_path / "j" / "c.jsonl") and len(rows) == 15
    assert [row["id"] for row in rows] == [a["id"] for a in ARTICLES[21:]]


def _bad_shard(folder: Path) -> Path:
    path = folder / "bad.jsonl"
    lines = [json.dumps(ARTICLES[0]), "{not json", json.dumps({"id": "e", "text": ""}), json.dumps(ARTICLES[1])]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_bad_record_under_fail_is_the_shards_error_and_leaves_nothing(trained, tmp_path):
    out = tmp_path / "out"
    context = _context(trained, out)
    task = plan_inputs(str(_bad_shard(tmp_path)), "jsonl", out).tasks[0]
    status = predict_shard(context, task)
    assert status["error"].startswith(f"{task.input}:2: invalid JSON")
    assert not (out / "bad.jsonl").exists() and not (out / DONE).exists() and _leftovers(out) == []


def test_bad_records_under_skip_are_counted_and_their_lines_kept(trained, tmp_path):
    out = tmp_path / "out"
    context = _context(trained, out, on_error="skip")
    task = plan_inputs(str(_bad_shard(tmp_path)), "jsonl", out).tasks[0]
    status = predict_shard(context, task)
    assert status["records"] == 2 and status["skipped"] == {"invalid JSON": 1, "empty text": 1}
    assert status["rejects"] == "bad.jsonl"
    kept = (out / REJECTS / "bad.jsonl").read_text().splitlines()
    assert kept == ["{not json", json.dumps({"id": "e", "text": ""})]
    assert [row["id"] for row in read_rows(out / "bad.jsonl")] == ["n0", "n1"]
    # a shard with nothing left is an error under skip too, as for local predict
    empty = tmp_path / "empty.jsonl"
    empty.write_text("{not json\n")
    status = predict_shard(context, plan_inputs(str(empty), "jsonl", out).tasks[0])
    assert "no records: all 1 lines were skipped as bad" in status["error"]
    assert not (out / REJECTS / "empty.jsonl").exists() and _leftovers(out) == []


def test_a_run_that_cannot_load_is_every_shards_one_line(trained, tmp_path):
    from mlcls.archive.worker import ShardPredictor

    settings = {**ArchiveJob(tmp_path / "no-run", tmp_path / "out").worker_settings(), "device": "cpu"}
    worker = ShardPredictor(settings)
    task = plan_inputs(str(_bad_shard(tmp_path)), "jsonl", tmp_path / "out").tasks[0]
    batch = {key: [getattr(task, key)] for key in ("index", "input", "output", "rejects", "size", "mtime_ns")}
    status = json.loads(worker(batch)["status"][0])
    assert "no-run" in status["error"] and "\n" not in status["error"]


# --------------------------------------------------------------------------- the output folder


def test_a_done_shard_is_known_again_until_its_input_or_output_changes(trained, archive, tmp_path):
    out = tmp_path / "out"
    context = _context(trained, out)
    folder = OutputFolder(out)
    task = plan_inputs(str(archive / "a.jsonl"), "jsonl", out).tasks[0]
    assert folder.done(task) is None
    predict_shard(context, task)
    assert folder.done(task)["records"] == 12
    os.utime(archive / "a.jsonl", ns=(task.mtime_ns + 10**9, task.mtime_ns + 10**9))  # the input changed
    assert folder.done(plan_inputs(str(archive / "a.jsonl"), "jsonl", out).tasks[0]) is None
    assert folder.done(task) is not None
    (out / "a.jsonl").unlink()  # the output went
    assert folder.done(task) is None


def test_the_folder_is_claimed_and_keeps_one_jobs_settings(tmp_path):
    job = ArchiveJob(tmp_path / "run", tmp_path / "out")
    first = OutputFolder(job.output)
    first.claim()
    second = OutputFolder(job.output)
    with pytest.raises(MlclsError, match="another mlcls predict --engine ray is writing this folder"):
        second.claim()
    first.check_job(job.identity())
    assert json.loads((job.output / JOB).read_text())["scores"] == "predicted"
    first.check_job(replace(job, workers=8, address="auto").identity())  # how it runs may change
    with pytest.raises(MlclsError, match="made with --scores predicted, not all; rerun with the same options"):
        first.check_job(replace(job, scores="all").identity())
    with pytest.raises(MlclsError, match="made with --threshold \\(not given\\), not 0.3"):
        first.check_job(replace(job, threshold=0.3).identity())
    first.release()
    second.claim()
    second.release()


def test_a_folder_of_other_files_is_not_written_into(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep me")
    folder = OutputFolder(tmp_path / "out")
    folder.claim()
    with pytest.raises(MlclsError, match="not empty and not an output folder.*mine.txt"):
        folder.check_job(ArchiveJob(tmp_path / "run", tmp_path / "out").identity())
    folder.release()
    (tmp_path / "file").write_text("")
    with pytest.raises(MlclsError, match="a file; --engine ray writes a folder"):
        OutputFolder(tmp_path / "file").claim()


def test_leftovers_of_a_dead_job_are_removed(tmp_path):
    out = tmp_path / "out"
    (out / "2020").mkdir(parents=True)
    torn = temporary_name(out / "2020" / "b.jsonl")
    torn.write_text('{"id": "half')
    (out / MANIFEST).write_text("{}")
    (out / "a.jsonl").write_text("whole\n")
    assert OutputFolder(out).remove_leftovers() == 1
    assert not torn.exists() and not (out / MANIFEST).exists() and (out / "a.jsonl").exists()


# --------------------------------------------------------------------------- the command line


def test_ray_options_need_the_ray_engine(trained, archive):
    run = str(tiny_run(trained))
    for extra in (["--workers", "2"], ["--address", "auto"], ["--format", "parquet"]):
        result = runner.invoke(app, ["predict", str(archive / "a.jsonl"), "--model", run, *extra])
        assert result.exit_code == 1
        assert f"error: {extra[0]}" in result.output and "is for --engine ray" in result.output


def test_the_ray_engine_needs_an_output_folder_and_ray(trained, archive, monkeypatch):
    run = str(tiny_run(trained))
    result = runner.invoke(app, ["predict", str(archive), "--model", run, "--engine", "ray"])
    assert result.exit_code == 1 and "--engine ray needs --output OUT_DIR" in result.output
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed: import ray fails
    result = runner.invoke(app, ["predict", str(archive), "--model", run, "--engine", "ray", "-o", "out"])
    assert result.exit_code == 1
    assert result.output.strip() == 'error: --engine ray needs Ray: pip install "mlcls[ray]"'


# --------------------------------------------------------------------------- Ray's side, without Ray


def test_the_line_of_a_ray_error_is_the_workers_own_exception():
    from mlcls.archive.ray_session import error_line

    remote = ("\x1b[36mray::MapWorker(MapBatches(ShardPredictor)).submit()\x1b[39m (pid=1, ip=10.0.0.2)\n"
              '  File "/x/shard.py", line 8, in __call__\n    raise ValueError("boom")\nValueError: boom\n\n'
              "The above exception was the direct cause of the following exception:\n\n"
              "ray.exceptions.UserCodeException: UDF failed to process a data block.\n"
              "To change retry attempts, configure `ray.data.DataContext.get_current()`")
    assert error_line(RuntimeError(remote)) == "ValueError: boom"
    died = "The actor died unexpectedly before finishing this task.\n\tclass_name: MapWorker\n\tpid: 7"
    assert error_line(RuntimeError(died)) == "The actor died unexpectedly before finishing this task."
    assert error_line(RuntimeError("")) == "RuntimeError"


def test_a_cluster_address_that_nothing_answers_is_refused_at_once():
    import socket

    from mlcls.archive.ray_session import check_reachable

    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(MlclsError, match=rf"cannot join the Ray cluster at ray://127.0.0.1:{port}: nothing answers"):
        check_reachable(f"ray://127.0.0.1:{port}", timeout=2)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        check_reachable(f"127.0.0.1:{server.getsockname()[1]}", timeout=2)
    check_reachable("auto")  # Ray itself says at once whether this machine runs a cluster


class _Cluster:
    """What worker_count asks of Ray: the cluster's resources."""

    def __init__(self, **resources):
        self.resources = resources

    def cluster_resources(self):
        return self.resources


def test_workers_follow_the_cluster_and_the_shards():
    from mlcls.archive.ray_session import worker_count

    job = ArchiveJob(Path("run"), Path("out"))
    assert worker_count(_Cluster(CPU=8.0), job, 100) == (8, None)
    assert worker_count(_Cluster(CPU=8.0), replace(job, threads_per_worker=3), 100) == (2, None)
    assert worker_count(_Cluster(CPU=8.0), job, 3) == (3, None)  # never more workers than shards to do
    assert worker_count(_Cluster(CPU=16.0, GPU=4.0), replace(job, gpus_per_worker=1.0), 100) == (4, None)
    workers, note = worker_count(_Cluster(CPU=2.0), replace(job, workers=4), 100)
    assert workers == 4 and "the Ray cluster has 2 and 0 now: they wait" in note
