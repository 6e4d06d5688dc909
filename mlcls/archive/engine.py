"""The driver of `mlcls predict --engine ray`: plan the shards, skip those already written whole, run the rest on
Ray Data with a progress bar, and write the manifest last.

Exactly once per shard: a shard is written under a temporary name and renamed, then its commit record is written
(shard.py); a rerun of the same command takes a shard as done when both are there and its input is unchanged
(same size and modification time), and predicts the others again, from their start. So a job killed at any
point (the driver, a worker, the machine) leaves whole shards and temporary files, and its rerun ends with the
output of an uninterrupted job.

Bad input: under --on-error fail the first bad record stops the job with its one line (file and line), the
shards already written kept for the rerun (which may go on under --on-error skip); under skip, bad records are
counted by reason across workers and their lines kept in _rejects/, and a shard that cannot be read at all (a
truncated gzip, no record) fails alone: the others are written, then the job says which failed and writes no
manifest.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlcls.archive.folder import REJECTS, OutputFolder
from mlcls.archive.inputs import ShardTask, plan_inputs
from mlcls.archive.job import ArchiveJob
from mlcls.archive.progress import ArchiveProgress
from mlcls.archive.ray_session import (
    check_reachable,
    error_line,
    ray_session,
    record_counter,
    run_shards,
    worker_count,
)
from mlcls.decision.rules import with_overrides
from mlcls.errors import Interrupted, MlclsError
from mlcls.inference.loaded import load_run_files
from mlcls.run.find import resolve_run


@dataclass
class ArchiveResult:
    shards: int  # input shards in all
    already_done: int  # of those, written by an earlier run of the same command
    records: int  # predictions in the output folder
    notes: list[str] = field(default_factory=list)


def resolve_job_run(model: str | Path | None) -> Path:
    """The run every worker loads, checked here first (config, labels, decision rule) and resolved, so that a
    runs/latest that moves while the job runs cannot give two workers two runs."""
    path = resolve_run(model).resolve()
    load_run_files(path)
    return path


def predict_archive(input_spec: str, job: ArchiveJob, rejects: Path | None = None, console: Any = None
                    ) -> ArchiveResult:
    """Tag every shard of INPUT into job.output; see the module's docstring for the guarantees."""
    _, _, rule = load_run_files(job.run)
    with_overrides(rule, job.threshold, job.top_k, job.min_labels)  # conflicting options: one line, before Ray
    plan = plan_inputs(input_spec, job.fmt, job.output)
    if job.address:
        check_reachable(job.address)  # before the output folder is touched
    folder = OutputFolder(job.output)
    folder.claim()
    try:
        folder.check_job(job.identity())
        statuses: dict[int, dict[str, Any] | None] = {task.index: folder.done(task) for task in plan.tasks}
        pending = [task for task in plan.tasks if statuses[task.index] is None]
        notes = list(plan.notes)
        if pending:
            removed = folder.remove_leftovers()
            if removed:
                notes.append(f"removed {removed} temporary files of a job that stopped before it finished them")
            notes += _run(job, pending, statuses, console)
        ordered = [statuses[task.index] for task in plan.tasks]
        folder.write_manifest(job.identity(), input_spec, ordered)
        if rejects is not None:
            gathered = folder.gather_rejects(ordered, rejects)
            notes.append(f"{gathered} rejected lines gathered in {rejects}")
        notes = _summary_notes(job, ordered, pending) + notes
        return ArchiveResult(len(plan.tasks), len(plan.tasks) - len(pending), sum(s["records"] for s in ordered),
                             notes)
    finally:
        folder.release()


def _run(job: ArchiveJob, pending: list[ShardTask], statuses: dict[int, dict[str, Any] | None],
         console: Any) -> list[str]:
    """The pending shards on Ray; their commit records go into `statuses`. Returns notes."""
    by_output = {task.output: task for task in pending}
    failed: list[str] = []
    with ray_session(job) as ray:
        workers, note = worker_count(ray, job, len(pending))
        counter = record_counter(ray)
        with ArchiveProgress(len(pending), lambda: ray.get(counter.total.remote(), timeout=5), console) as progress:
            done_records, lines = 0, run_shards(ray, job, pending, workers, counter)
            try:
                for line in lines:
                    status = json.loads(line)
                    if "error" in status:
                        failed.append(status["error"])
                        if job.on_error == "fail":
                            break
                    else:
                        statuses[by_output[status["output"]].index] = status
                        done_records += status["records"]
                    progress.shard_done(done_records)
            except KeyboardInterrupt:
                raise Interrupted(_kept(job, statuses, "interrupted")) from None
            except MlclsError:
                raise
            except Exception as exc:  # a worker that died (out of memory, a node lost): the line of Ray's that says so
                raise MlclsError(f"a Ray worker failed: {error_line(exc)}; {_kept(job, statuses)}") from exc
            finally:
                lines.close()  # stops the execution: its workers go, with the shards they were writing
                ray.kill(counter)  # a Ray this job did not start (a notebook's) keeps running: leave nothing in it
    if failed:
        raise MlclsError(_failure(job, failed, len(pending), statuses))
    return [note] if note else []


def _kept(job: ArchiveJob, statuses: dict[int, dict[str, Any] | None], what: str = "") -> str:
    done = sum(status is not None for status in statuses.values())
    kept = f"{done} of {len(statuses)} shards are written in {job.output}; the same command continues from there"
    return f"{what}: {kept}" if what else kept


def _failure(job: ArchiveJob, failed: list[str], pending: int, statuses: dict[int, dict[str, Any] | None]) -> str:
    """The error line: under fail, the bad record's own line; under skip, the shards that could not be read."""
    if job.on_error == "fail":
        return f"{failed[0]} ({_kept(job, statuses)} once it is fixed)"
    more = f" (and {len(failed) - 1} more shards)" if len(failed) > 1 else ""
    return (f"{len(failed)} of {pending} shards could not be read: {failed[0]}{more}; the others are written; fix or "
            "remove those shards and rerun the same command")


def _summary_notes(job: ArchiveJob, ordered: list[dict[str, Any]], pending: list[ShardTask]) -> list[str]:
    """What the job read and skipped, in which precision, at what cost in windows (long texts)."""
    notes = []
    skipped: Counter = Counter()
    for status in ordered:
        skipped.update(status.get("skipped", {}))
    if skipped:
        shards = sum(bool(status.get("skipped")) for status in ordered)
        reasons = ", ".join(f"{n} {reason}" for reason, n in skipped.most_common())
        notes.append(f"skipped {sum(skipped.values())} bad records in {shards} of {len(ordered)} shards: {reasons}; "
                     f"their lines are in {job.output / REJECTS}")
    blank = sum(status.get("blank_lines", 0) for status in ordered)
    if blank:
        notes.append(f"{blank} blank lines were not records")
    ran = {task.output for task in pending}
    fresh = [status for status in ordered if status["output"] in ran]
    notes += sorted({status["precision_note"] for status in fresh if status.get("precision_note")})
    windows, articles = sum(s.get("windows", 0) for s in fresh), sum(s.get("articles", 0) for s in fresh)
    if articles and windows != articles:
        notes.append(f"{windows} windows scored for {articles} articles ({windows / articles:.2f} per article)")
    return notes
