"""The output folder of an archive job: the output shards, and mlcls's own files beside them.

OUT/
  2020/wire-03.jsonl       output shards (JSON Lines, CSV or Parquet), named after their input shards
  _job.json                what the shards' rows depend on (the run, the decision options, the format, ...):
                           a rerun with other options is refused instead of mixing two jobs' rows
  _done/2020/wire-03.jsonl.json   a shard's commit record (its counts), written after the shard is renamed into
                           place: a shard is done when both are there and the input has not changed since;
                           a shard written from another input file is not overwritten (refused in one line)
  _rejects/2020/wire-03.jsonl     under --on-error skip, the input's skipped lines (only where there were some)
  _manifest.json           every input shard -> its output shard, counts, skipped lines by reason: written last,
                           when every shard is done (a job that stopped has none)
  .mlcls-predict.lock      the claim of the job that writes the folder now (an flock, released at death)

Names that start with `_` or `.` are left out by Arrow, Spark and Ray Data when they read a folder, so
`ray.data.read_json(OUT)` or `pyarrow.dataset.dataset(OUT)` reads the predictions alone. Files are written under
a temporary name (`.NAME.XXXX.tmp`) and renamed: a kill leaves no torn shard, and the next run removes the
temporary files of a job that died.
"""

from __future__ import annotations

import json
import os
import uuid
from collections import Counter
from pathlib import Path
from typing import IO, Any

from mlcls.archive.inputs import ShardTask
from mlcls.archive.job import OPTION_NAMES
from mlcls.atomic import WriteError, atomic_open, describe_os_error, release_lock, try_lock
from mlcls.data.read_stats import header_names
from mlcls.errors import MlclsError

MANIFEST = "_manifest.json"
JOB = "_job.json"
DONE = "_done"
REJECTS = "_rejects"
LOCK = ".mlcls-predict.lock"
TEMP_SUFFIX = ".tmp"


def temporary_name(final: Path) -> Path:
    """A hidden name beside `final`, unique to this writer (two attempts at one shard never share one)."""
    return final.with_name(f".{final.name}.{uuid.uuid4().hex[:12]}{TEMP_SUFFIX}")


def write_json_atomically(path: Path, data: Any) -> None:
    with atomic_open(path) as handle:
        handle.write(json.dumps(data, indent=1, ensure_ascii=False) + "\n")


def done_record(root: Path, output: str) -> Path:
    return root / DONE / f"{output}.json"


class OutputFolder:
    def __init__(self, root: Path):
        self.root = root
        self.lock: IO | None = None

    def claim(self) -> None:
        """Create the folder and hold its lock: a second job on the same folder is refused before it writes."""
        if self.root.exists() and not self.root.is_dir():
            raise MlclsError(f"{self.root}: a file; --engine ray writes a folder of shards: name a folder")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self.lock = try_lock(self.root / LOCK)
        except OSError as exc:
            raise WriteError(f"{self.root}: cannot write there ({describe_os_error(exc)})") from None
        if self.lock is None:
            raise MlclsError(f"{self.root}: another mlcls predict --engine ray is writing this folder now (it holds "
                             f"{self.root / LOCK}); wait for it, or choose another --output")

    def release(self) -> None:
        if self.lock is not None:
            release_lock(self.lock)
            self.lock = None

    def check_job(self, identity: dict[str, Any]) -> None:
        """A new folder takes the job's settings; a folder of an earlier run must have the same ones."""
        path = self.root / JOB
        if not path.is_file():
            strangers = [p.name for p in self.root.iterdir() if p.name != LOCK]
            if strangers:
                raise MlclsError(f"{self.root}: not empty and not an output folder of mlcls predict --engine ray "
                                 f"(no {JOB}; it holds {strangers[0]}); choose a new or empty folder")
            write_json_atomically(path, identity)
            return
        try:
            kept = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise MlclsError(f"{path}: unreadable; remove the folder to start again") from None
        changed = [key for key in identity if not isinstance(kept, dict) or kept.get(key) != identity[key]
                   and (key in kept or key != "model")]  # a folder written before "model" was kept: not a change
        if changed:
            key = changed[0]
            was = kept.get(key) if isinstance(kept, dict) else None
            raise MlclsError(f"{self.root}: holds predictions made with {OPTION_NAMES[key]} {_shown(was)}, not "
                             f"{_shown(identity[key])}; rerun with the same options to continue, or choose another "
                             "--output")

    def done(self, task: ShardTask) -> dict[str, Any] | None:
        """The commit record of a shard written whole from this very input, or None: it is to be predicted (also
        when its input file changed since). A shard written from another input file is refused."""
        try:
            status = json.loads(done_record(self.root, task.output).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(status, dict) or not (self.root / task.output).is_file():
            return None
        self._check_same_source(task, status)
        if (status.get("input"), status.get("size"), status.get("mtime_ns")) != (task.input, task.size, task.mtime_ns):
            return None
        rejects = status.get("rejects")
        if rejects is not None and not (self.root / REJECTS / str(rejects)).is_file():
            return None
        return status

    def _check_same_source(self, task: ShardTask, status: dict[str, Any]) -> None:
        """An output shard that another input file wrote (another INPUT into the same --output, whose shards have
        the same names) is not this input's to overwrite. The same file named by another path (a symbolic link)
        is the same input."""
        kept = status.get("input")
        if isinstance(kept, str) and kept != task.input and os.path.realpath(kept) != os.path.realpath(task.input):
            raise MlclsError(f"{self.root / task.output}: predicted from {kept}, not {task.input}; choose another "
                             f"--output for this INPUT, or remove {task.output} from {self.root} to replace it")

    def unplanned_files(self, planned: set[str]) -> list[str]:
        """The files a reader of the folder sees (names without a leading `_` or `.`, as Arrow and Spark read it)
        that are not among `planned` output shards, relative and sorted."""
        found = []
        for folder, subfolders, names in os.walk(self.root):
            subfolders[:] = sorted(name for name in subfolders if name[0] not in "._")
            for name in names:
                relative = (Path(folder) / name).relative_to(self.root).as_posix()
                if name[0] not in "._" and relative not in planned:
                    found.append(relative)
        return sorted(found)

    def remove_leftovers(self) -> int:
        """Remove the temporary files of writers that died (this job holds the lock: none of them is alive), and
        a manifest that the shards about to be written would make stale. Returns the temporary files removed."""
        removed = self.remove_temporary_files()
        (self.root / MANIFEST).unlink(missing_ok=True)
        return removed

    def remove_temporary_files(self) -> int:
        """Remove the shards' temporary files; only while no writer is alive. Returns how many there were."""
        removed = 0
        for folder, _, names in os.walk(self.root):
            for name in names:
                if name.startswith(".") and name.endswith(TEMP_SUFFIX):
                    (Path(folder) / name).unlink(missing_ok=True)
                    removed += 1
        return removed

    def write_manifest(self, identity: dict[str, Any], input_spec: str, statuses: list[dict[str, Any]]) -> None:
        """The manifest, written last: every input shard and its output, in input order, with the totals."""
        skipped: Counter = Counter()
        for status in statuses:
            skipped.update(status.get("skipped", {}))
        manifest = {"input": input_spec, "job": identity, "shards": len(statuses),
                    "records": sum(s["records"] for s in statuses), "skipped": dict(skipped.most_common()),
                    "blank_lines": sum(s.get("blank_lines", 0) for s in statuses), "outputs": statuses}
        write_json_atomically(self.root / MANIFEST, manifest)

    def gather_rejects(self, statuses: list[dict[str, Any]], target: Path) -> int:
        """The shards' rejects, in input order, into one file (--rejects FILE); returns the lines gathered. A
        CSV/TSV shard's rejects begin with its header row (its status says how many bytes; a shard committed
        before that has none): kept once where the shards share it, so that the rows read back as one table."""
        lines, header = 0, None
        with atomic_open(target, "wb") as out:
            for status in statuses:
                if status.get("rejects"):
                    data = (self.root / REJECTS / status["rejects"]).read_bytes()
                    size = status.get("rejects_header_bytes", 0)
                    names, rows = header_names(data[:size]), data[size:]
                    out.write(rows if size and names == header else data)
                    header = names if size else header
                    lines += rows.count(b"\n")  # rows: a header is no rejected line
        return lines


def _shown(value: Any) -> str:
    return "(not given)" if value is None else str(value)
