"""`mlcls predict --engine ray` end to end on a local Ray (2 CPUs, no dashboard) with the tiny run: the output
equals local `mlcls predict` on the same articles, a killed job resumes exactly once per shard, and a bad shard
under both policies. Marked slow: Ray starts once for the module (seconds), and every job starts its workers,
each importing torch and loading the run.

    pytest -m slow tests/archive/test_archive_ray.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlcls.archive.folder import DONE, MANIFEST, REJECTS, temporary_name
from mlcls.cli import app
from tests.archive.conftest import ARTICLES, all_in_one, read_rows, tiny_run, write_archive

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'mlcls[ray]')")
runner = CliRunner()
SCORE_TOLERANCE = 2e-4  # fp32 (the tiny run's inference precision); shards batch differently: a last digit moves


@pytest.fixture(scope="module")
def local_ray():
    """Ray on this machine for the module: the commands find it running and use it as it is."""
    try:
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    except Exception as exc:  # no shared memory, a port taken: say so in one line instead of failing every test
        lines = [line for line in str(exc).splitlines() if line.strip()]
        pytest.skip(f"Ray cannot start here: {lines[-1] if lines else type(exc).__name__}")
    yield
    ray.shutdown()


def _predict_on_ray(trained, source: Path, out: Path, *extra: str):
    return runner.invoke(app, ["predict", str(source), "--model", str(tiny_run(trained)), "--engine", "ray",
                               "-o", str(out), "--scores", "all", *extra])


def _output_rows(out: Path) -> list[dict]:
    manifest = json.loads((out / MANIFEST).read_text())
    return [row for shard in manifest["outputs"] for row in read_rows(out / shard["output"])]


def test_ray_output_equals_local_predict(local_ray, trained, tmp_path):
    archive, out = write_archive(tmp_path), tmp_path / "out"
    result = _predict_on_ray(trained, archive, out, "--workers", "2")
    assert result.exit_code == 0, result.output
    assert f"36 predictions written to {out} in 3 shards" in result.output
    local = tmp_path / "local.jsonl"
    done = runner.invoke(app, ["predict", str(all_in_one(tmp_path)), "--model", str(tiny_run(trained)), "--scores",
                               "all", "-o", str(local)])
    assert done.exit_code == 0, done.output
    expected = {row["id"]: row for row in read_rows(local)}
    rows = _output_rows(out)
    # shards in the manifest's order (2020/b.csv, 2020/c.parquet, a.jsonl), records in input order within each
    assert [row["id"] for row in rows] == [article["id"] for article in ARTICLES[12:] + ARTICLES[:12]]
    for row in rows:
        assert row["labels"] == expected[row["id"]]["labels"]
        assert row["scores"].keys() == expected[row["id"]]["scores"].keys()
        for label, score in row["scores"].items():
            assert score == pytest.approx(expected[row["id"]]["scores"][label], abs=SCORE_TOLERANCE)
    manifest = json.loads((out / MANIFEST).read_text())
    assert [(Path(s["input"]).name, s["output"], s["records"]) for s in manifest["outputs"]] == [
        ("b.csv", "2020/b.jsonl", 9), ("c.parquet", "2020/c.jsonl", 15), ("a.jsonl", "a.jsonl", 12)]
    assert manifest["records"] == 36 and manifest["skipped"] == {} and manifest["shards"] == 3
    assert not list(out.rglob("*.tmp"))


def test_a_killed_job_resumes_exactly_once_per_shard(local_ray, trained, tmp_path):
    archive, out = write_archive(tmp_path), tmp_path / "out"
    assert _predict_on_ray(trained, archive, out, "--format", "parquet").exit_code == 0
    kept = {name: (out / name).stat().st_mtime_ns for name in ("a.parquet", "2020/b.parquet")}
    # what a kill leaves: no manifest, a shard never renamed into place, a torn temporary file
    (out / MANIFEST).unlink()
    (out / "2020" / "c.parquet").unlink()
    torn = temporary_name(out / "2020" / "c.parquet")
    torn.write_bytes(b"PAR1 half a shard")
    result = _predict_on_ray(trained, archive, out, "--format", "parquet")
    assert result.exit_code == 0, result.output
    assert "36 predictions written" in result.output and "2 of them written by an earlier run" in result.output
    assert "removed 1 temporary files" in result.output
    assert {name: (out / name).stat().st_mtime_ns for name in kept} == kept  # the whole shards were not redone
    assert not torn.exists() and not list(out.rglob("*.tmp"))
    ids = [row["id"] for row in _output_rows(out)]
    assert sorted(ids) == sorted(article["id"] for article in ARTICLES) and len(set(ids)) == 36
    # a rerun of a finished job has nothing to do (no Ray work): the same manifest
    before = json.loads((out / MANIFEST).read_text())
    again = _predict_on_ray(trained, archive, out, "--format", "parquet")
    assert again.exit_code == 0 and "3 of them written by an earlier run" in again.output
    assert json.loads((out / MANIFEST).read_text()) == before
    # other options would mix two jobs' rows: refused
    other = _predict_on_ray(trained, archive, out, "--format", "parquet", "--threshold", "0.3")
    assert other.exit_code == 1 and "made with --threshold (not given), not 0.3" in other.output


def _with_bad_shard(tmp_path: Path) -> Path:
    archive = write_archive(tmp_path)
    lines = [json.dumps({"id": "z1", "text": "cocoa"}), "{not json", json.dumps({"id": "z2", "text": " "}),
             json.dumps({"id": "z3", "text": "oil"})]
    (archive / "bad.jsonl").write_text("\n".join(lines) + "\n")
    return archive


def test_a_bad_shard_stops_the_job_under_fail_and_is_counted_under_skip(local_ray, trained, tmp_path):
    archive, out = _with_bad_shard(tmp_path), tmp_path / "out"
    result = _predict_on_ray(trained, archive, out, "--on-error", "fail")
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {archive / 'bad.jsonl'}:2: invalid JSON")
    assert "Traceback" not in result.output
    assert not (out / MANIFEST).exists() and not (out / "bad.jsonl").exists()
    assert not list(out.rglob("*.tmp"))
    # the count in the line is what the folder holds: shards other workers committed before the stop included
    written = len(list((out / DONE).rglob("*.json")))
    assert f"({written} of 4 shards are written in {out}" in errors[0]
    # the same job goes on under skip: the shards written are kept, the bad records counted across workers
    rejects = tmp_path / "rejects.jsonl"
    result = _predict_on_ray(trained, archive, out, "--on-error", "skip", "--rejects", str(rejects))
    assert result.exit_code == 0, result.output
    assert "38 predictions written" in result.output
    assert "skipped 2 bad records in 1 of 4 shards: 1 invalid JSON, 1 empty text" in result.output
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["skipped"] == {"invalid JSON": 1, "empty text": 1} and manifest["records"] == 38
    bad = next(shard for shard in manifest["outputs"] if shard["output"] == "bad.jsonl")
    assert bad["rejects"] == "bad.jsonl" and (out / DONE / "bad.jsonl.json").is_file()
    assert (out / REJECTS / "bad.jsonl").read_text().splitlines() == ["{not json", '{"id": "z2", "text": " "}']
    assert rejects.read_text() == (out / REJECTS / "bad.jsonl").read_text()
    assert [row["id"] for row in read_rows(out / "bad.jsonl")] == ["z1", "z3"]
    ids = [row["id"] for row in _output_rows(out)]
    assert len(ids) == len(set(ids)) == 38


def test_a_stopped_job_leaves_no_worker_writing(local_ray, trained, tmp_path, monkeypatch):
    """A Ray this job did not start (this module's, a notebook's) outlives the job: the shard another worker was
    scoring when the bad one stopped the job must not be committed afterwards, behind the line's count and the
    released lock (a rerun would find a live writer's files)."""
    import time

    import ray

    import mlcls.archive.engine as engine

    stopped: list = []  # the job's workers, as stop_workers found them

    def recording(ray_module, counter, *args, **kwargs):
        stopped.extend(ray_module.get(counter.workers.remote(), timeout=10))
        return stop_workers(ray_module, counter, *args, **kwargs)

    stop_workers = engine.stop_workers
    monkeypatch.setattr(engine, "stop_workers", recording)
    archive = tmp_path / "archive"
    archive.mkdir()
    many = [{"id": f"m{i}", "text": ARTICLES[i % len(ARTICLES)]["text"]} for i in range(60000)]
    (archive / "b_long.jsonl").write_text("".join(json.dumps(row) + "\n" for row in many))
    (archive / "a_bad.jsonl").write_text("{not json\n")
    out = tmp_path / "out"
    result = _predict_on_ray(trained, archive, out, "--on-error", "fail", "--workers", "2")
    assert result.exit_code == 1, result.output
    assert "(0 of 2 shards are written" in result.output, result.output
    # Each worker is dead when the command returns (the files below would not show a live one: the driver also
    # removes the temporary files it knows of, so a worker left running would fail its commit)
    assert stopped
    for worker in stopped:
        with pytest.raises(ray.exceptions.RayActorError):
            ray.get(worker.__ray_ready__.remote(), timeout=30)
    time.sleep(8)  # long enough for the long shard to finish, had its worker been left running
    assert not (out / "b_long.jsonl").exists() and not list((out / DONE).rglob("*.json"))
    assert not list(out.rglob("*.tmp"))
