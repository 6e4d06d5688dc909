"""Ids that repeat: within a file, or across the training and validation sides. Records are kept either way
(a record is an article whatever its id; outputs keep the input's order); these notes say what a user who joins
results back by id, or whose article sits on both sides of a split, should know."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from mlcls.data.records import ReadPolicy, Record


def reading_notes(policy: ReadPolicy, path: str | Path, records: Iterable[Record]) -> list[str]:
    """What reading `path` under `policy` leaves to say: skipped and blank lines, then ids that repeat."""
    repeats = repeated_ids(records, path, policy.stats[str(path)].unit)
    return [*policy.report(path), *([repeats] if repeats else [])]


def repeated_ids(records: Iterable[Record], path: str | Path, unit: str = "lines") -> str | None:
    """A note for the records whose id an earlier record of the same file already has, or None. They are kept
    (each is scored as its own article; outputs keep the input's order), but a user who joins results back
    by id, or whose file holds an article twice, should know. `unit`: ReadStats.unit, what Record.line counts."""
    first_line: dict[str, int] = {}
    repeats, example = 0, None
    for record in records:
        if not record.id_given:  # a line number standing in is no id the user gave
            continue
        if record.id in first_line:
            repeats += 1
            example = example or (record, first_line[record.id])
        else:
            first_line[record.id] = record.line
    if not repeats:
        return None
    record, earlier = example
    return (f"{repeats} record{'s' if repeats != 1 else ''} of {path} repeat{'s' if repeats == 1 else ''} an "
            f"earlier record's id (first: {place(path, record.line, unit)} has the id {shown_id(record.id)} of "
            f"{place(path, earlier, unit)}); each is kept as its own article")


def shown_id(record_id: str, room: int = 60) -> str:
    """An id as a note shows it: quoted, and cut to `room` characters (a URL or a whole text can be an id)."""
    return repr(record_id if len(record_id) <= room else record_id[: room - 3] + "...")


def place(path: str | Path, line: int, unit: str = "lines") -> str:
    """Where a record is: FILE:LINE (a Parquet file's FILE:ROW), as errors name it, or "record N of FILE" in a
    .json array (unit "records", where errors say "FILE: record N")."""
    return f"record {line} of {path}" if unit == "records" else f"{path}:{line}"


def shared_ids(train: list[Record], validation: list[Record], what: str, other: str,
               at: Callable[[Record], str], at_other: Callable[[Record], str]) -> str | None:
    """A note for the validation records whose id a training record has, or None: the same article on both
    sides would lift the validation figures that choose the thresholds and the kept epoch. `what` names the
    validation records ("records of FILE"), `other` a training record; `at` and `at_other` place each."""
    first_in_train: dict[str, Record] = {}
    for record in train:
        if record.id_given:  # line numbers standing in for ids are no evidence of the same article
            first_in_train.setdefault(record.id, record)
    shared = [record for record in validation if record.id_given and record.id in first_in_train]
    if not shared:
        return None
    first, one = shared[0], len(shared) == 1
    return (f"{len(shared)} of the {len(validation)} {what} {'has' if one else 'have'} an id that {other} has "
            f"(first: {shown_id(first.id)}, {at(first)} and {at_other(first_in_train[first.id])}): if "
            f"{'it is the same article' if one else 'they are the same articles'}, the validation figures are "
            "too high")
