"""INPUT -> the input shards of an archive job, each with the name of its output shard.

INPUT is a file, a folder (its record files, sub-folders included: an archive laid out by year), or a glob
(`archive/*.parquet`, `archive/**/*.jsonl.gz`). In a folder, files and folders whose name starts with `.` or `_`
are left out (as Spark and Arrow leave out `_SUCCESS` and hidden files), and so are files of other types (a
README), with a note. A file named explicitly, or matched by a glob, must be a record file.

An output shard is named after its input, relative to INPUT's folder (or the folder above a glob's first
wildcard), its own suffixes replaced by the output format's: `2020/wire-03.jsonl.gz` -> `2020/wire-03.jsonl`.
The name does not depend on which other files are there, so an archive that grows keeps its shards' names and a
rerun finds the shards it wrote.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

from mlcls.atomic import describe_os_error
from mlcls.data.formats import COMPRESSIONS, input_kind
from mlcls.errors import DataError, MlclsError

WILDCARDS = ("*", "?", "[")
REJECT_SUFFIXES = {"csv": ".csv", "tsv": ".tsv"}  # rejects of other inputs are JSON lines


@dataclass(frozen=True)
class ShardTask:
    """One input shard and where its output goes (names relative to the output folder)."""

    index: int  # its place in INPUT's sorted order: the manifest's order
    input: str  # absolute path: every worker reads it there
    output: str  # the output shard, relative to the output folder (`2020/wire-03.jsonl`)
    rejects: str  # where its skipped lines go under --on-error skip, relative to the rejects folder
    size: int  # the input's size and modification time when planned: a changed input is predicted again
    mtime_ns: int


@dataclass
class InputPlan:
    tasks: list[ShardTask]
    notes: list[str]


def plan_inputs(spec: str, fmt: str, output: Path) -> InputPlan:
    """The input shards that INPUT names, sorted, each with its output shard's name; the output folder itself is
    never input (it may sit inside INPUT's folder)."""
    if spec == "-":
        raise MlclsError("--engine ray reads files (a file, a folder of shards or a glob), not stdin")
    # as the file system resolves it (once): `-o data/../data/tagged` or a link to it is data/tagged
    files, base, notes = _input_files(spec, Path(os.path.realpath(output)))
    tasks, owners = [], {}
    for index, path in enumerate(files):
        relative = path.relative_to(base)
        stem = _strip_suffixes(relative)
        name = f"{stem.as_posix()}.{fmt}"
        if name in owners:
            raise MlclsError(f"{owners[name]} and {path} would both write {name}: give the inputs different names, "
                             "or name only one of them")
        owners[name] = path
        reject_suffix = REJECT_SUFFIXES.get(input_kind(path).format, ".jsonl")
        stat = path.stat()
        tasks.append(ShardTask(index, str(path), name, f"{stem.as_posix()}{reject_suffix}", stat.st_size,
                               stat.st_mtime_ns))
    return InputPlan(tasks, notes)


def _input_files(spec: str, output: Path) -> tuple[list[Path], Path, list[str]]:
    """(the input files, absolute and sorted; the folder their output names are relative to; notes)."""
    path = Path(spec).expanduser()
    try:
        path.is_dir()  # a name the file system refuses (too long): one line, not an internal error
    except OSError as exc:
        raise MlclsError(f"{spec}: cannot read ({describe_os_error(exc)})") from None
    if path.is_file():
        input_kind(path)  # an unsupported type is a one-line error now, not in a worker
        return [_absolute(path)], _absolute(path).parent, ["INPUT is one file: one worker scores it (split it into "
                                                         "shards to spread it over several)"]
    if path.is_dir():
        base = _absolute(path)
        files, others, hidden = _folder_files(base, output)
        notes = [f"{len(others)} files in {spec} are not record files and were left out: "
                 f"{_listed(others, base)}"] if others else []
        if hidden:
            notes.append(f"{len(hidden)} hidden or '_'-named files and folders in {spec} were left out (as Spark "
                         f"and Hadoop leave _SUCCESS and .crc files): {_listed(hidden, base)}")
        if not files:
            raise MlclsError(f"{spec}: no record files (.jsonl, .json, .csv, .tsv, .parquet, compressed or not) in "
                             "this folder")
        return files, base, notes
    if not any(char in spec for char in WILDCARDS):
        raise DataError(spec, None, "file not found")
    files = sorted({_absolute(Path(p)) for p in glob.glob(os.path.expanduser(spec), recursive=True)
                    if Path(p).is_file()})
    files = [p for p in files if not _inside(p, output)]
    if not files:
        raise MlclsError(f"{spec}: no file matches this pattern")
    for file in files:
        input_kind(file)
    return files, _glob_base(spec), []


def _folder_files(base: Path, output: Path) -> tuple[list[Path], list[Path], list[Path]]:
    """(record files, other files, hidden and `_` files and folders) under `base`; the output folder left out."""
    files, others, hidden = [], [], []
    for folder, subfolders, names in os.walk(base):
        here = Path(folder)
        hidden += [here / name for name in sorted(subfolders) if name[0] in "._"]
        subfolders[:] = sorted(name for name in subfolders if name[0] not in "._"
                               and not _inside(here / name, output))
        for name in sorted(names):
            if name[0] in "._":
                hidden.append(here / name)
                continue
            (files if _record_suffix(name) else others).append(here / name)
    return sorted(files), others, [p for p in hidden if not _inside(p, output)]


def _listed(paths: list[Path], base: Path) -> str:
    """The first three of `paths`, relative to `base`, and '...' when there are more."""
    return f"{', '.join(str(p.relative_to(base)) for p in paths[:3])}{', ...' if len(paths) > 3 else ''}"


def _record_suffix(name: str) -> bool:
    """Whether a file found in a folder is a record file by its name (`.txt`, JSON Lines when named, is not)."""
    try:
        kind = input_kind(Path(name))
    except DataError:
        return False
    return kind.format != "jsonl" or not _strip_compression(name.lower()).endswith(".txt")


def _inside(path: Path, folder: Path) -> bool:
    """Whether `path`, as the file system resolves it, is `folder` (resolved: plan_inputs) or in it: the output
    folder is never read as input, however INPUT names it."""
    path = Path(os.path.realpath(path))
    return path == folder or folder in path.parents


def _glob_base(spec: str) -> Path:
    """The folder above a glob's first wildcard: output names are relative to it."""
    parts = Path(os.path.expanduser(spec)).parts
    fixed = []
    for part in parts:
        if any(char in part for char in WILDCARDS):
            break
        fixed.append(part)
    return _absolute(Path(*fixed)) if fixed else Path.cwd()


def _absolute(path: Path) -> Path:
    """An absolute path without `..`, symbolic links kept (a shard linked from elsewhere keeps its name here)."""
    return Path(os.path.abspath(path))


def _strip_compression(name: str) -> str:
    for suffix in COMPRESSIONS:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _strip_suffixes(relative: Path) -> Path:
    """`2020/wire-03.jsonl.gz` -> `2020/wire-03`: the compression's and the format's suffix off."""
    name = relative.name[: len(_strip_compression(relative.name.lower()))]
    stem = name[: name.rfind(".")] if "." in name[1:] else name
    return relative.with_name(stem)
