"""One input shard -> one output shard: the unit of work of an archive job, the same in a Ray worker and in a
plain process (the tests call it directly).

The shard is read with mlcls's own readers (data/records.py: the same fields, ids, line numbers and bad-input
policy as `mlcls predict`), scored chunk by chunk with `score_records`, decided by the run's rule (or the
options' override), and written as `prediction_row`s under a temporary name, renamed into place when whole; then
its commit record is written. A shard that fails leaves nothing behind but its error, in one line.
"""

from __future__ import annotations

import os
import resource
import socket
import sys
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlcls.archive.folder import REJECTS, done_record, temporary_name, write_json_atomically
from mlcls.archive.inputs import ShardTask
from mlcls.archive.writers import shard_writer
from mlcls.atomic import WriteError, close_quietly, describe_os_error, failed_write, open_for_writing
from mlcls.data.records import FieldSpec, ReadPolicy, read_records
from mlcls.decision.rules import DecisionRule, with_overrides
from mlcls.errors import MlclsError
from mlcls.inference.loaded import LoadedRun
from mlcls.inference.predict import prediction_row
from mlcls.inference.scoring import score_records


@dataclass
class ShardContext:
    """What a worker holds from its start to its end: the run loaded once, and the job's settings."""

    loaded: LoadedRun
    rule: DecisionRule
    fields: FieldSpec
    root: Path
    fmt: str
    scores: int | str
    on_error: str
    batch_size: int | None
    worker: str  # host:pid, for the manifest


def load_context(settings: dict[str, Any]) -> ShardContext:
    """The run loaded for this worker (torch threads set first), with the decision rule the options ask for."""
    import torch

    from mlcls.inference.loading import load_run

    threads = int(settings["threads_per_worker"])
    torch.set_num_threads(threads)
    os.environ.setdefault("RAYON_NUM_THREADS", str(threads))  # the tokenizers' thread pool, read at its first use
    loaded = load_run(settings["run"], device=settings.get("device", "cpu"), int8=settings["int8"],
                      precision=settings["precision"], trust_remote_code=settings["trust_remote_code"])
    rule = with_overrides(loaded.thresholds, settings["threshold"], settings["top_k"], settings["min_labels"])
    return ShardContext(loaded, rule, FieldSpec.from_config(loaded.config.data), Path(settings["output"]),
                        settings["fmt"], settings["scores"], settings["on_error"], settings["batch_size"],
                        f"{socket.gethostname()}:{os.getpid()}")


def predict_shard(context: ShardContext, task: ShardTask,
                  on_chunk: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Predict one shard into its output shard; return its commit record, or {"error": one line, "kind": "input"
    or "write"} when the shard or the disk is at fault. `on_chunk(records)` is told after every chunk written (the
    progress bar)."""
    started = time.perf_counter()
    final = context.root / task.output
    temp = temporary_name(final)
    skip = context.on_error == "skip"
    rejects_final = context.root / REJECTS / task.rejects
    rejects_temp = temporary_name(rejects_final) if skip else None
    windows = (context.loaded.windows.articles, context.loaded.windows.windows)
    cleanups: list[Callable[[], None]] = []  # what closes the files still open when the shard fails
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        writer = shard_writer(temp, context.fmt, context.loaded.labels.labels, context.scores)
        cleanups.append(writer.abandon)
        rejects = None
        if rejects_temp is not None:
            rejects_temp.parent.mkdir(parents=True, exist_ok=True)
            rejects = open_for_writing(rejects_temp, "wb")
            cleanups.append(lambda: close_quietly(rejects))
        policy = ReadPolicy(context.on_error, rejects)
        records = read_records(task.input, context.fields, require_labels=False, policy=policy)
        written = _write_rows(context, records, writer, on_chunk)
        writer.close()
        if rejects is not None:
            rejects.close()
        stats = policy.stats[task.input]
        kept_rejects = rejects_temp is not None and bool(stats.skipped)
        if kept_rejects:
            os.replace(rejects_temp, rejects_final)
        else:  # an earlier run's, of an input that changed since
            rejects_final.unlink(missing_ok=True)
        os.replace(temp, final)
        status = _status(context, task, written, stats, windows, time.perf_counter() - started)
        status["rejects"] = task.rejects if kept_rejects else None
        if kept_rejects and stats.header:  # the CSV header row its rejects begin with (gather_rejects keeps one)
            status["rejects_header_bytes"] = len(stats.header)
        write_json_atomically(done_record(context.root, task.output), status)  # the commit: written last
        return status
    except (MlclsError, OSError) as exc:
        files = ((temp, final, "the predictions"), (rejects_temp, rejects_final, "the skipped lines"))
        error = exc if isinstance(exc, MlclsError) else _write_error(exc, files)
        if error is None:
            raise
        return error_status(task, str(error), "write" if isinstance(error, WriteError) else "input")
    finally:
        for cleanup in cleanups:
            cleanup()
        for path in (temp, rejects_temp):
            if path is not None:
                with suppress(OSError):
                    path.unlink(missing_ok=True)


def _write_rows(context: ShardContext, records, writer, on_chunk: Callable[[int], None] | None) -> int:
    labels = context.loaded.labels.labels
    written = 0
    for chunk, scores in score_records(context.loaded, records, context.batch_size):
        chosen = context.rule.apply(scores, labels)
        writer.write_chunk([prediction_row(record, scores[i], chosen[i], labels, context.scores)
                            for i, record in enumerate(chunk)])
        written += len(chunk)
        if on_chunk is not None:
            on_chunk(len(chunk))
    return written


def _write_error(exc: OSError, files: tuple[tuple[Path | None, Path, str], ...]) -> WriteError | None:
    """The one line of a write to one of `files` (temporary name, final name, what it holds) that failed, named
    after that file's final name (the output shard, or its rejects); None when `exc` came from elsewhere."""
    for temp, final, what in files:
        if temp is not None and failed_write(exc, temp):
            return WriteError(f"{final}: cannot write {what} ({describe_os_error(exc)})")
    return None


def error_status(task: ShardTask, message: str, kind: str) -> dict[str, Any]:
    """A shard's error, in place of its commit record. Its kind says what the driver tells the user: "input"
    (the shard cannot be read: fix or remove it), "write" (the output folder cannot take it: make room),
    "run" (the worker cannot load the run: every shard would fail, the job stops at once)."""
    return {"input": task.input, "output": task.output, "error": message, "kind": kind}


def _status(context: ShardContext, task: ShardTask, written: int, stats, windows: tuple[int, int],
            seconds: float) -> dict[str, Any]:
    """The shard's commit record: which input it came from (to know it again), what was read and skipped, and
    what it cost on which worker."""
    loaded = context.loaded
    status = {"input": task.input, "size": task.size, "mtime_ns": task.mtime_ns, "output": task.output,
              "records": written, "blank_lines": stats.blank_lines, "unit": stats.unit,
              "skipped": dict(stats.skipped.most_common()), "worker": context.worker, "seconds": round(seconds, 3),
              "peak_rss_mib": round(peak_rss_mib(), 1), "precision": loaded.precision,
              "precision_note": loaded.precision_note, "articles": loaded.windows.articles - windows[0],
              "windows": loaded.windows.windows - windows[1]}
    if stats.multiline_rows:  # CSV rows over several lines: said on the driver (a '"' never closed, maybe)
        status["multiline_rows"] = [stats.multiline_rows, stats.first_multiline_row]
    if getattr(loaded.device, "type", "cpu") == "cuda":
        import torch

        status["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated(loaded.device) / 2**20, 1)
    return status


def peak_rss_mib() -> float:
    """This process's peak resident memory so far, in MiB (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10
