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
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from mlcls.archive.engine import failure_line, stops_the_job
from mlcls.archive.folder import DONE, JOB, MANIFEST, REJECTS, OutputFolder, temporary_name
from mlcls.archive.inputs import plan_inputs
from mlcls.archive.job import ArchiveJob
from mlcls.archive.shard import load_context, predict_shard
from mlcls.atomic import open_for_writing
from mlcls.cli import app
from mlcls.errors import DataError, MlclsError
from tests.archive.conftest import ARTICLES, read_rows, tiny_run
from tests.conftest import needs_dev_full

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
    assert plan.notes == ["1 files in " + str(archive) + " are not record files and were left out: README.md",
                          "2 hidden or '_'-named files and folders in " + str(archive) + " were left out (as Spark "
                          "and Hadoop leave _SUCCESS and .crc files): .hidden.jsonl, _SUCCESS"]


def test_the_output_folder_is_never_input_however_it_is_named(archive, tmp_path):
    (archive / "predictions").mkdir()
    (archive / "predictions" / "a.jsonl").write_text('{"id": "x", "text": "old output"}\n')
    (tmp_path / "link").symlink_to(archive / "predictions")
    for out in (archive / "2020" / ".." / "predictions", tmp_path / "link"):
        for spec in (str(archive), str(archive / "**" / "*.jsonl")):
            assert "predictions/a.jsonl" not in [t.output for t in plan_inputs(spec, "jsonl", out).tasks]


def test_the_command_gives_the_ray_job_its_folder_resolved(trained, archive, monkeypatch):
    import mlcls.archive.engine as engine

    jobs = []
    monkeypatch.setattr(engine, "predict_archive", lambda spec, job, *rest: jobs.append(job) or
                        engine.ArchiveResult(1, 0, 1))
    given = archive / "2020" / ".." / "tagged"
    result = runner.invoke(app, ["predict", str(archive), "--model", str(tiny_run(trained)), "--engine", "ray", "-o",
                                 str(given)])
    assert result.exit_code == 0, result.output
    assert jobs[0].output == Path(os.path.realpath(archive / "tagged"))


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
    assert status["error"].startswith(f"{task.input}:2: invalid JSON") and status["kind"] == "input"
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
    assert "no records: the one line was skipped as bad" in status["error"]
    assert not (out / REJECTS / "empty.jsonl").exists() and _leftovers(out) == []


def test_a_run_that_cannot_load_is_every_shards_one_line(trained, tmp_path):
    from mlcls.archive.worker import ShardPredictor

    settings = {**ArchiveJob(tmp_path / "no-run", tmp_path / "out").worker_settings(), "device": "cpu"}
    worker = ShardPredictor(settings)
    task = plan_inputs(str(_bad_shard(tmp_path)), "jsonl", tmp_path / "out").tasks[0]
    batch = {key: [getattr(task, key)] for key in ("index", "input", "output", "rejects", "size", "mtime_ns")}
    status = json.loads(worker(batch)["status"][0])
    assert "no-run" in status["error"] and "\n" not in status["error"] and status["kind"] == "run"


@needs_dev_full
def test_rejects_that_cannot_be_written_are_named_as_such(trained, tmp_path, monkeypatch):
    import mlcls.archive.shard as shard

    def rejects_on_a_full_disk(path, mode="w", **kwargs):  # the output shard's writer opens its file elsewhere
        return open_for_writing(path, mode, fd=os.open("/dev/full", os.O_WRONLY))

    monkeypatch.setattr(shard, "open_for_writing", rejects_on_a_full_disk)
    out = tmp_path / "out"
    context = _context(trained, out, on_error="skip")
    status = predict_shard(context, plan_inputs(str(_bad_shard(tmp_path)), "jsonl", out).tasks[0])
    assert status["error"] == f"{out / REJECTS / 'bad.jsonl'}: cannot write the skipped lines (no space left on device)"
    assert status["kind"] == "write"
    assert not (out / "bad.jsonl").exists() and not (out / DONE).exists() and _leftovers(out) == []


def _job_failed(on_error: str, *kinds: str) -> str:
    job = ArchiveJob(Path("run"), Path("/out"), on_error=on_error)
    failed = [{"error": f"shard{i}: {kind} trouble", "kind": kind} for i, kind in enumerate(kinds)]
    return failure_line(job, failed, 5, {0: {"records": 1}, 1: None, 2: None, 3: None, 4: None})


def test_a_failed_job_says_what_failed_by_kind():
    assert _job_failed("fail", "write") == ("shard0: write trouble (1 of 5 shards are written in /out; the same "
                                            "command continues from there once it is fixed)")
    line = _job_failed("skip", "input", "write", "input")
    assert line.startswith("2 of 5 shards could not be read: shard0: input trouble (and 1 more shards); 1 of 5 "
                           "shards could not be written: shard1: write trouble; the others are written; fix or "
                           "remove those input shards and make room")
    assert _job_failed("skip", "write").startswith("1 of 5 shards could not be written: shard0: write trouble; the "
                                                   "others are written; make room")
    line = _job_failed("skip", "input", "run")
    assert line.startswith("a Ray worker cannot load the run: shard1: run trouble (1 of 5 shards are written")
    skip = ArchiveJob(Path("run"), Path("/out"), on_error="skip")
    assert stops_the_job(skip, {"kind": "run"}) and not stops_the_job(skip, {"kind": "input"})
    assert not stops_the_job(skip, {"kind": "write"}) and stops_the_job(replace(skip, on_error="fail"), {})


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


def test_a_shard_of_another_input_is_not_overwritten(trained, archive, tmp_path):
    out = tmp_path / "out"
    predict_shard(_context(trained, out), plan_inputs(str(archive / "a.jsonl"), "jsonl", out).tasks[0])
    other = tmp_path / "other"
    other.mkdir()
    (other / "a.jsonl").write_text(json.dumps(ARTICLES[0]) + "\n")  # another file, the same output name
    task = plan_inputs(str(other), "jsonl", out).tasks[0]
    folder = OutputFolder(out)
    with pytest.raises(MlclsError) as refused:
        folder.done(task)
    assert str(refused.value) == (f"{out / 'a.jsonl'}: predicted from {archive / 'a.jsonl'}, not {other / 'a.jsonl'}; "
                                  f"choose another --output for this INPUT, or remove a.jsonl from {out} to replace it")
    (tmp_path / "link").symlink_to(archive)  # the same file by another path: the same input (predicted again)
    assert folder.done(plan_inputs(str(tmp_path / "link"), "jsonl", out).tasks[-1]) is None
    (out / "a.jsonl").unlink()  # removed as the error says: predicted from the new input
    assert folder.done(task) is None


def test_a_finished_job_rerun_cleans_up_and_names_files_it_did_not_write(trained, archive, tmp_path):
    from mlcls.archive.engine import predict_archive

    out = tmp_path / "out"
    job = ArchiveJob(tiny_run(trained).resolve(), out, scores="all")
    out.mkdir()
    OutputFolder(out).check_job(job.identity())
    context = load_context({**job.worker_settings(), "device": "cpu"})
    for task in plan_inputs(str(archive), "jsonl", out).tasks:
        assert "error" not in predict_shard(context, task)
    torn = temporary_name(out / "a.jsonl")  # a dead attempt's, beside shards that are all done
    torn.write_text('{"id": "half')
    (out / "2019").mkdir()
    (out / "2019" / "d.jsonl").write_text("{}\n")  # an earlier run's, on an archive that had more
    result = predict_archive(str(archive), job)  # nothing to do: Ray is not started
    assert result.already_done == result.shards == 3 and not torn.exists()
    assert "removed 1 temporary files of a job that stopped before it finished them" in result.notes
    assert f"1 files in {out} are not output shards of this INPUT (e.g. 2019/d.jsonl, left by an earlier run on more " \
           "input?)" in " ".join(result.notes)
    assert (out / "2019" / "d.jsonl").exists() and (out / MANIFEST).exists()
    assert OutputFolder(out).unplanned_files({"a.jsonl", "2020/b.jsonl", "2020/c.jsonl"}) == ["2019/d.jsonl"]


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
    # the run trained again at the same path: another model, whose shards must not join the ones written
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "head.safetensors").write_bytes(b"retrained")
    with pytest.raises(MlclsError, match=r"made with the files of --model \(trained again since\?\)"):
        first.check_job(job.identity())
    # a folder written before the job kept the run's fingerprint: the fingerprint is not asked of it
    kept = json.loads((job.output / JOB).read_text())
    del kept["model"]
    (job.output / JOB).write_text(json.dumps(kept))
    first.check_job(job.identity())
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


def test_a_worker_that_does_not_fit_is_refused_not_waited_for():
    from mlcls.archive.ray_session import check_one_worker_fits, local_num_cpus

    job = ArchiveJob(Path("run"), Path("out"))
    assert local_num_cpus(job, 2) == 2
    assert local_num_cpus(replace(job, workers=3), 2) == 3  # --workers share the cores, as asked
    with pytest.raises(MlclsError, match="^--threads-per-worker 4: this machine has 2 CPUs, fewer than one worker "
                                         "asks for; give --threads-per-worker 2 or fewer$"):
        local_num_cpus(replace(job, threads_per_worker=4), 2)
    with pytest.raises(MlclsError, match=r"^--gpus-per-worker 1: the Ray cluster at auto has 0 GPUs \(as Ray sees "
                                         r"them\), fewer than one worker asks for; leave --gpus-per-worker out"):
        check_one_worker_fits(replace(job, gpus_per_worker=1.0), {"CPU": 64.0}, "the Ray cluster at auto")
    with pytest.raises(MlclsError, match="has 0 CPUs, fewer than one worker asks for; add nodes with CPUs"):
        check_one_worker_fits(job, {"GPU": 1.0}, "the Ray cluster at auto")
    check_one_worker_fits(replace(job, threads_per_worker=4, gpus_per_worker=0.5), {"CPU": 4.0, "GPU": 1.0}, "x")


class _FakeRay:
    """Ray as ray_session and run_shards use it, without Ray: what they asked of it is kept."""

    def __init__(self, running: bool = False, **resources):
        self.running, self.resources, self.calls = running, resources, []
        self.data = self

    def is_initialized(self):
        return self.running

    def init(self, **options):
        self.calls.append(("init", options))

    def shutdown(self):
        self.calls.append(("shutdown", {}))

    def cluster_resources(self):
        return self.resources

    class DataContext:
        @staticmethod
        def get_current():
            return SimpleNamespace()

    def from_items(self, items, **options):
        return self

    def map_batches(self, fn, **options):
        self.calls.append(("map_batches", options))
        return self

    def ActorPoolStrategy(self, **options):  # Ray's name
        return options

    def iter_batches(self, **options):
        self.calls.append(("iter_batches", options))
        return iter([{"status": ["{}"]}])


def _start(job: ArchiveJob) -> None:
    from mlcls.archive.ray_session import ray_session

    with ray_session(job):
        pass


def test_ray_is_started_with_room_for_a_worker_or_not_at_all(monkeypatch):
    import mlcls.archive.ray_session as session

    job = ArchiveJob(Path("run"), Path("out"))
    monkeypatch.setattr(session.os, "cpu_count", lambda: 2)
    fake = _FakeRay(CPU=2.0)
    monkeypatch.setattr(session, "import_ray", lambda: fake)
    with pytest.raises(MlclsError, match="--threads-per-worker 4: this machine has 2 CPUs"):
        _start(replace(job, threads_per_worker=4))
    assert fake.calls == []  # refused before Ray started
    with pytest.raises(MlclsError, match="--gpus-per-worker 1: this machine has 0 GPUs"):
        _start(replace(job, gpus_per_worker=1.0))
    assert [name for name, _ in fake.calls] == ["init", "shutdown"] and fake.calls[0][1]["num_cpus"] == 2
    running = _FakeRay(running=True, CPU=1.0)
    monkeypatch.setattr(session, "import_ray", lambda: running)
    with pytest.raises(MlclsError, match="the Ray this process runs has 1 CPUs"):
        _start(replace(job, threads_per_worker=2))
    assert running.calls == []  # a Ray this job did not start is neither started nor stopped


def test_a_dead_worker_is_restarted_twice_not_forever():
    from mlcls.archive.inputs import ShardTask
    from mlcls.archive.ray_session import run_shards

    fake = _FakeRay()
    task = ShardTask(0, "/in/a.jsonl", "a.jsonl", "a.jsonl", 1, 1)
    assert list(run_shards(fake, ArchiveJob(Path("run"), Path("out")), [task], 1, None)) == ["{}"]
    options = dict(fake.calls)["map_batches"]
    assert options["max_restarts"] == 2 and options["max_task_retries"] == 2
    # each shard's status as its worker returns it: no prefetch holding one back until the next shard is done
    assert dict(fake.calls)["iter_batches"] == {"batch_size": None, "prefetch_batches": 0}


def test_gathered_rejects_of_csv_shards_keep_one_header_and_read_back_as_one_table(tmp_path):
    """Each CSV shard's rejects begin with its header (so `_rejects/x.csv` reads back); gathered into one
    --rejects file, the header is written once where the shards share it, and it is not counted as a line."""
    from mlcls.archive.folder import REJECTS, OutputFolder
    from mlcls.data.records import ReadPolicy, read_records
    from mlcls.errors import DataError

    out = tmp_path / "out"
    (out / REJECTS / "2020").mkdir(parents=True)
    (out / REJECTS / "a.csv").write_bytes(b"\xef\xbb\xbfid,text\r\n1,\r\n")
    (out / REJECTS / "2020" / "b.csv").write_bytes(b"id,text\n2,\n3,one,two\n")
    (out / REJECTS / "c.jsonl").write_bytes(b"{not json\n")
    statuses = [{"rejects": "a.csv", "rejects_header_bytes": 12}, {"rejects": None},
                {"rejects": "2020/b.csv", "rejects_header_bytes": 8}]
    target = tmp_path / "rejects.csv"
    assert OutputFolder(out).gather_rejects(statuses, target) == 3
    assert target.read_bytes() == b"\xef\xbb\xbfid,text\r\n1,\r\n2,\n3,one,two\n"
    policy = ReadPolicy("skip")
    with pytest.raises(DataError, match="all 3 lines were skipped as bad"):
        list(read_records(target, policy=policy, require_labels=False))
    assert policy.stats[str(target)].skipped == {"empty text": 2, "wrong number of cells": 1}
    assert OutputFolder(out).gather_rejects([{"rejects": "c.jsonl"}, statuses[0]], target) == 2
    assert target.read_bytes() == b"{not json\n\xef\xbb\xbfid,text\r\n1,\r\n"
    # a shard committed before its rejects had a header: all of its bytes are rows
    (out / REJECTS / "old.csv").write_bytes(b"7,\n")
    assert OutputFolder(out).gather_rejects([statuses[0], {"rejects": "old.csv"}], target) == 2
    assert target.read_bytes() == b"\xef\xbb\xbfid,text\r\n1,\r\n7,\n"


def test_a_csv_shards_rejects_and_multiline_rows_reach_the_jobs_notes(trained, tmp_path):
    """A CSV shard's rejects begin with its header (the status says how many bytes), and rows that ran over
    several lines are counted in its status and said in the job's notes, as local predict says them."""
    from mlcls.archive.engine import _summary_notes

    out = tmp_path / "out"
    context = _context(trained, out, on_error="skip")
    shard = tmp_path / "wire.csv"
    shard.write_text('id,text\n1,"cocoa\nbeans"\n2,\n3,oil\n')
    task = plan_inputs(str(shard), "jsonl", out).tasks[0]
    status = predict_shard(context, task)
    assert status["records"] == 2 and status["skipped"] == {"empty text": 1}
    assert (out / REJECTS / "wire.csv").read_text() == "id,text\n2,\n" and status["rejects_header_bytes"] == 8
    assert status["multiline_rows"] == [1, 2]
    job = ArchiveJob(tiny_run(trained).resolve(), out)
    notes = _summary_notes(job, [status], [])
    assert (f"1 CSV row in 1 of 1 shards ran over several lines (the first from {shard}:2): a quoted cell holds line "
            "breaks; where none should, a '\"' is not closed there and the rows after it were read into it") in notes


def test_the_record_counter_counts_a_retried_shard_once():
    """A shard retried after its worker died told its records again: the bar's records (and records/s) ran past
    the archive's. Counted by shard, a shard that starts again starts from 0."""
    from mlcls.archive.worker import RecordCounter

    counter = RecordCounter()
    counter.start("a.jsonl")
    counter.add("a.jsonl", 500)
    counter.start("b.jsonl")
    counter.add("b.jsonl", 200)
    counter.start("a.jsonl")  # its worker died mid-shard; another scores it from the start
    counter.add("a.jsonl", 300)
    assert counter.total() == 500
    counter.add("a.jsonl", 700)
    assert counter.total() == 1200
