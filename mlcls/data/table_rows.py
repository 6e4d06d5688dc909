"""CSV, TSV and Parquet files read row by row, for read_records (records.py), which validates each row.

JSONL is read in records.py itself; these formats need a header (CSV) or a footer (Parquet) first.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from mlcls.data.formats import open_input, read_lines
from mlcls.data.read_stats import ReadStats
from mlcls.errors import DataError, first_line


@dataclass(frozen=True)
class Columns:
    """The columns every row of a table needs: one of the text fields, and the labels where they are read."""

    text_fields: tuple[str, ...]
    label_field: str | None  # None: labels are not read (predict)

    def check(self, path: Path, header: list[str], line: int) -> None:
        if not any(name in header for name in self.text_fields):
            wanted = " or ".join(repr(name) for name in self.text_fields)
            raise DataError(path, line, f"header: no text column {wanted} (data.text_fields); "
                            + _columns(header, self.text_fields))
        if self.label_field is not None and self.label_field not in header:
            raise DataError(path, line, f"header: no labels column {self.label_field!r} (data.label_field); "
                            + _columns(header, (self.label_field,)))


def _columns(header: list[str], wanted: tuple[str, ...]) -> str:
    """The header's names as written, and the nearest to a wanted name (" text" for "text": names are taken as
    written, spaces and case included)."""
    import difflib

    near = [name for name in header if name.strip().lower() in {w.lower() for w in wanted}]
    near = near or [match for w in wanted for match in difflib.get_close_matches(w, header, n=1)]
    listed = ", ".join(repr(name) for name in header)
    return f"the columns are {listed}" + (f" (did you mean {near[0]!r}?)" if near else "")


def csv_rows(path: Path, stats: ReadStats, columns: Columns, compression: str | None = None,
             delimiter: str = ",") -> Iterator[tuple[int, Any, bytes]]:
    """(line of the row's first physical line, {column: cell} or the DataError of the row, the row's raw bytes).

    Read with the csv module, lazily: every cell is the string it is in the file (`007` stays "007", a blank
    cell is "", a label cell `3` is the label "3"; no column is type-guessed), and a row's line is the
    physical line it starts on, multi-line quoted cells before it counted. TSV: `delimiter` a tab. A header
    without the `columns` every row needs is the file's error, raised at once (not a "missing text" per row)."""
    import csv

    _allow_big_cells(csv)
    pending: list[bytes] = []  # the raw lines of the row being read
    eof = [False]  # the reader asked for a line past the last one

    def lines(handle: IO[bytes]) -> Iterator[str]:
        for number, raw in enumerate(read_lines(handle, path, compression), start=1):
            pending.append(raw)
            text = raw.decode("utf-8", "surrogateescape")  # checked row by row below, to name the line
            yield text.lstrip("\ufeff") if number == 1 else text
        eof[0] = True

    handle = open_input(path, compression)
    try:
        reader = csv.reader(lines(handle), delimiter=delimiter)
        header: list[str] | None = None
        consumed, rows = 0, 0  # physical lines read before the current row; data rows seen
        while True:
            problem: tuple[str, str, int] | None = None  # (what is wrong, its reason, its line)
            try:
                cells = next(reader, None)
            except csv.Error as exc:
                cells, problem = [], (f"invalid CSV: {exc}", "invalid CSV", consumed + 1)
            start, consumed = consumed + 1, reader.line_num
            raw, pending[:] = b"".join(pending), []
            if cells is None:
                break
            if problem is None and len(cells) <= 1 and not "".join(cells).strip():
                stats.blank_lines += consumed - start + 1
                continue
            problem = problem or _undecodable(raw, start) or _unterminated(raw, start, eof[0] and consumed > start)
            if header is None:  # the first row that is not blank names the columns
                header = _csv_header(path, cells, problem, start, columns)
                stats.header = raw if raw.endswith(b"\n") else raw + b"\n"
                continue
            rows += 1
            if problem is None and consumed > start:
                stats.count_multiline_row(start)
            if problem is None and len(cells) != len(header):
                problem = (f"{len(cells)} cells where the header has {len(header)}", "wrong number of cells", start)
            if problem:
                yield start, DataError(path, problem[2], problem[0], reason=problem[1]), raw
            else:
                yield start, dict(zip(header, cells, strict=True)), raw
        if header is not None and rows == 0:
            blank = stats.blank_lines
            raise DataError(path, None, "no records: the file holds a header and no rows"
                            + (f" ({blank} blank line{'s' if blank != 1 else ''})" if blank else ""))
    finally:
        handle.close()


def _allow_big_cells(csv) -> None:
    """A cell may hold megabytes (a whole article): the csv module's limit raised to what it takes."""
    import sys

    csv.field_size_limit(max(csv.field_size_limit(), min(sys.maxsize, 2**31 - 1)))


def _unterminated(raw: bytes, start: int, ran_to_the_end: bool) -> tuple[str, str, int] | None:
    """The reader ran to the end of the file inside a quoted cell: the rest of the file is in it."""
    if ran_to_the_end and raw.count(b'"') % 2:
        return "unterminated quoted cell: a '\"' opened on this row is never closed", "invalid CSV", start
    return None


def _csv_header(path: Path, cells: list[str], problem: tuple[str, str, int] | None, start: int,
                columns: Columns) -> list[str]:
    """The column names of a CSV file's first row that is not blank, or a DataError that says what is wrong."""
    if problem:
        raise DataError(path, problem[2], f"header: {problem[0]}", reason=problem[1])
    duplicates = sorted({name for name in cells if cells.count(name) > 1})
    if duplicates:
        raise DataError(path, start, f"header: column {duplicates[0]!r} appears twice")
    columns.check(path, cells, start)
    return cells


def _undecodable(raw: bytes, start: int) -> tuple[str, str, int] | None:
    """(problem, reason, line) when the row's bytes are not UTF-8: the physical line and the byte in it."""
    try:
        raw.decode("utf-8")
        return None
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        column = exc.start - (before.rfind(b"\n") + 1)
        return f"not valid UTF-8 (byte {column + 1} of the line)", "not valid UTF-8", start + before.count(b"\n")


def parquet_rows(path: Path) -> Iterator[tuple[int, Any, bytes]]:
    """The rows of a Parquet file, batch by batch. Read with pyarrow (its columns are typed by the file itself,
    nothing is guessed), not `datasets`: Dataset.from_parquet would first copy the whole file into the datasets
    cache (an archive on `--engine ray`: every shard onto each worker's disk, never removed) for one pass."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with pq.ParquetFile(str(path)) as parquet:
            schema = parquet.schema_arrow
            # A struct column (what pandas and `datasets` write for labels given as objects) gives every row every
            # key, null where the record named none: read as absent (a negative), as in the JSONL it was written
            # from. So in Parquet a struct cannot mark a label "not annotated"; JSONL can.
            structs = [column.name for column in schema if pa.types.is_struct(column.type)]
            # As `datasets` gives them: a JSON column (its Json feature, arrow.json) decoded, and a map (label ->
            # confidence) a dict, where pyarrow gives the JSON text and a list of (key, value) pairs.
            json_columns = [column.name for column in schema
                            if hasattr(pa, "JsonType") and isinstance(column.type, pa.JsonType)]
            maps = [column.name for column in schema if pa.types.is_map(column.type)]
            number = 0
            for batch in parquet.iter_batches(batch_size=PARQUET_BATCH):
                for row in batch.to_pylist():
                    number += 1
                    for name in json_columns:
                        if isinstance(row.get(name), str):
                            row[name] = _json_value(row[name])
                    for name in maps:
                        if isinstance(row.get(name), list):
                            row[name] = dict(row[name])
                    for name in structs:
                        if isinstance(row.get(name), dict):
                            row[name] = {key: value for key, value in row[name].items() if value is not None}
                    yield number, row, json.dumps(row, ensure_ascii=False, default=str).encode()
    except Exception as exc:  # pyarrow raises many kinds; the file is what is wrong
        raise DataError(path, None, f"cannot read PARQUET: {first_line(exc)}") from None


def _json_value(text: str) -> Any:
    """A JSON column's value decoded; text that is not JSON stays text (the record's check says what is wrong)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


PARQUET_BATCH = 1024  # rows decoded at once: memory stays flat whatever the file's size
