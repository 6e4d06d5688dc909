"""The driver of `mlcls predict --engine ray`: plan the shards, skip those already written whole, run the rest on
Ray Data with a progress bar, and write the manifest last.

Exactly once per shard: a shard is written under a temporary name and renamed, then its commit record is written
(shard.py); a rerun of the same command takes a shard as done when both are there and its input is unchanged
(same size and modification time), and predicts the others again, from their start. So a job killed at any
point (the driver, a worker, the machine) leaves whole shards and temporary files, and its rerun ends with the
output of an uninterrupted job.

Bad input: under --on-error fail the first bad record stops the job with its one line (file and line), the
shards already written kept for the rerun (which may go on under --on-error skip) and the shards the other workers
were in the middle of dropped: the workers are killed before the line is written, so that its count is final
and nothing writes into the folder after the job (a Ray this job did not start outlives it); under skip, bad records are
counted by reason across workers and their lines kept in _rejects/, and a shard that cannot be read at all (a
truncated gzip, no record) fails alone, and so does a shard that cannot be written (a full disk): the others are
written, then the job says which failed, by kind, and writes no manifest. A run that the workers cannot load
stops the job at once under either policy.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

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
    stop_workers,
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
        # on every run, not only when shards are to do: a dead job's temporary files outlive the shards it left
        removed = folder.remove_leftovers()
        if removed:
            notes.append(f"removed {removed} temporary files of a job that stopped before it finished them")
        if pending:
            _run(job, pending, statuses, console, folder)
        ordered = [statuses[task.index] for task in plan.tasks]
        folder.write_manifest(job.identity(), input_spec, ordered)
        notes += _unplanned_note(folder, plan.tasks)
        if rejects is not None:
            gathered = folder.gather_rejects(ordered, rejects)
            notes.append(f"{gathered} rejected lines gathered in {rejects}")
        notes = _summary_notes(job, ordered, pending) + notes
        return ArchiveResult(len(plan.tasks), len(plan.tasks) - len(pending), sum(s["records"] for s in ordered),
                             notes)
    finally:
        folder.release()


def _run(job: ArchiveJob, pending: list[ShardTask], statuses: dict[int, dict[str, Any] | None],
         console: Any, folder: OutputFolder) -> None:
    """The pending shards on Ray; their commit records go into `statuses`."""
    by_output = {task.output: task for task in pending}
    failed: list[dict[str, Any]] = []
    stopped, crash = False, None
    with ray_session(job) as ray:
        workers, note = worker_count(ray, job, len(pending))
        if note:  # now, not with the notes at the end: the user watching a bar that does not move needs it
            (console or Console(stderr=True)).print(f"note: {note}", markup=False, highlight=False)
        counter = record_counter(ray)
        with ArchiveProgress(len(pending), lambda: ray.get(counter.total.remote(), timeout=5), console) as progress:
            done_records, lines = 0, run_shards(ray, job, pending, workers, counter)
            try:
                for line in lines:
                    status = json.loads(line)
                    if "error" in status:
                        failed.append(status)
                        if stops_the_job(job, status):
                            break
                    else:
                        statuses[by_output[status["output"]].index] = status
                        done_records += status["records"]
                    progress.shard_done(done_records)
            except KeyboardInterrupt:
                stopped = True
            except MlclsError:
                raise
            except Exception as exc:  # a worker that died (out of memory, a node lost): the line of Ray's that says so
                crash = exc
            finally:
                lines.close()  # stops the execution
                stop_workers(ray, counter)  # its workers go, with the shards they were writing
                ray.kill(counter)  # a Ray this job did not start (a notebook's) keeps running: leave nothing in it
    # what the workers stopped in the middle of a shard were writing (no writer is alive now), and the shards other
    # workers committed while this one's error or the stop came in: written, and said so
    folder.remove_temporary_files()
    for task in pending:
        if statuses[task.index] is None:
            statuses[task.index] = folder.done(task)
    if stopped:
        raise Interrupted(_kept(job, statuses, "interrupted"))
    if crash is not None:
        raise MlclsError(f"a Ray worker failed: {error_line(crash)}; {_kept(job, statuses)}") from crash
    if failed:
        raise MlclsError(failure_line(job, failed, len(pending), statuses))


def stops_the_job(job: ArchiveJob, error: dict[str, Any]) -> bool:
    """Whether a shard's error stops the job now: every error under --on-error fail; under skip, a run that the
    workers cannot load (every shard after it would fail the same way)."""
    return job.on_error == "fail" or error.get("kind") == "run"


def _kept(job: ArchiveJob, statuses: dict[int, dict[str, Any] | None], what: str = "") -> str:
    done = sum(status is not None for status in statuses.values())
    kept = f"{done} of {len(statuses)} shards are written in {job.output}; the same command continues from there"
    return f"{what}: {kept}" if what else kept


# an error's kind (shard.py, worker.py) -> what befell the shards, and what the user does about it
SHARD_FAILURES = {"input": ("could not be read", "fix or remove those input shards"),
                  "write": ("could not be written", "make room in (or fix the permissions of) the output folder")}


def failure_line(job: ArchiveJob, failed: list[dict[str, Any]], pending: int,
                 statuses: dict[int, dict[str, Any] | None]) -> str:
    """The error line: a run the workers cannot load, whatever the policy; under fail, the first error's own
    line; under skip, the shards that failed, by kind (unreadable input, an output that cannot be written)."""
    run = next((error for error in failed if error.get("kind") == "run"), None)
    if run is not None:
        return f"a Ray worker cannot load the run: {run['error']} ({_kept(job, statuses)} once it is fixed)"
    if job.on_error == "fail":
        return f"{failed[0]['error']} ({_kept(job, statuses)} once it is fixed)"
    parts, fixes = [], []
    for kind, (what, fix) in SHARD_FAILURES.items():
        errors = [error["error"] for error in failed if error.get("kind", "input") == kind]
        if errors:
            more = f" (and {len(errors) - 1} more shards)" if len(errors) > 1 else ""
            parts.append(f"{len(errors)} of {pending} shards {what}: {errors[0]}{more}")
            fixes.append(fix)
    return f"{'; '.join(parts)}; the others are written; {' and '.join(fixes)}, and rerun the same command"


def _unplanned_note(folder: OutputFolder, tasks: list[ShardTask]) -> list[str]:
    """Files among the output shards that this INPUT did not write (an earlier run's on a larger input): kept,
    they are the user's, but a reader of the whole folder reads them with the rest."""
    others = folder.unplanned_files({task.output for task in tasks})
    if not others:
        return []
    return [f"{len(others)} files in {folder.root} are not output shards of this INPUT (e.g. {others[0]}, left by "
            "an earlier run on more input?): the manifest leaves them out, a reader of the whole folder does not; "
            "remove them if they are stale"]


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
        notes.append("1 blank line was not a record" if blank == 1 else f"{blank} blank lines were not records")
    multiline = [status for status in ordered if status.get("multiline_rows")]
    if multiline:
        first, rows = multiline[0]["multiline_rows"][1], sum(s["multiline_rows"][0] for s in multiline)
        notes.append(f"{rows} CSV row{'s' if rows != 1 else ''} in {len(multiline)} of {len(ordered)} shards ran over "
                     f"several lines (the first from {multiline[0]['input']}:{first}): a quoted cell holds line "
                     "breaks; where none should, a '\"' is not closed there and the rows after it were read into it")
    ran = {task.output for task in pending}
    fresh = [status for status in ordered if status["output"] in ran]
    notes += sorted({status["precision_note"] for status in fresh if status.get("precision_note")})
    windows, articles = sum(s.get("windows", 0) for s in fresh), sum(s.get("articles", 0) for s in fresh)
    if articles and windows != articles:
        notes.append(f"{windows} windows scored for {articles} articles ({windows / articles:.2f} per article)")
    return notes
