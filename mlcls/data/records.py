"""Records in, records validated, labels encoded.

A record's labels are held in one shape whatever the file said: a mapping label -> confidence, where a
hard list `["a", "b"]` becomes {"a": 1.0, "b": 1.0}, `[]` becomes {} (a real answer: no topic), and
`null` means "not annotated". Labels a record does not mention are negatives (confidence 0).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from mlcls.atomic import describe_os_error
from mlcls.data.formats import (
    JSON_MEANS,
    InputKind,
    first_json_character,
    input_kind,
    json_array_rows,
    json_type,
    not_an_array,
    open_input,
    read_lines,
)
from mlcls.data.read_stats import ReadStats, header_names
from mlcls.data.table_rows import Columns, csv_rows, parquet_rows
from mlcls.errors import DataError

Labels = dict[str, float | None]


@dataclass(frozen=True)
class FieldSpec:
    """Which fields of a record hold what (data.* in the config)."""

    text_fields: tuple[str, ...] = ("text",)
    text_separator: str = "\n"
    label_field: str = "labels"
    id_field: str = "id"
    label_separator: str = ";"

    @classmethod
    def from_config(cls, data_config) -> FieldSpec:
        return cls(
            text_fields=tuple(data_config.text_fields),
            text_separator=data_config.text_separator,
            label_field=data_config.label_field,
            id_field=data_config.id_field,
            label_separator=data_config.label_separator,
        )


@dataclass(frozen=True)
class Record:
    """One validated input record: its id, its text (the configured text fields joined), its labels (label ->
    confidence in [0, 1], None where not annotated; None when labels were not read) and its line in the file."""

    id: str
    text: str
    labels: Labels | None  # None: not read (`predict` input, require_labels=False)
    line: int  # 1-based line (JSONL), the line a row starts on (CSV), row or record number (Parquet, .json array)
    id_given: bool = True  # False: the record had no id (or a blank one) and its line number stands in


ON_ERROR = ("fail", "skip")


@dataclass
class ReadPolicy:
    """What to do with a bad record: stop with its error (`fail`), or skip it, count it by reason and,
    given a `rejects` file, copy the line there (`skip`). One policy for the train, eval and predict readers."""

    on_error: str = "fail"
    rejects: IO[bytes] | None = None
    stats: dict[str, ReadStats] = field(default_factory=dict)  # per file read
    header_written: bytes = field(default=b"", repr=False)  # the CSV header row last written to `rejects`

    def write_reject(self, raw: bytes, header: bytes) -> None:
        """A skipped record's own bytes into the rejects file; a CSV/TSV row after its file's header row (b"" for
        other formats), written once for the files of one header, so that the rejects read back as a table."""
        names = header_names(header)
        if header and names != self.header_written:
            self.rejects.write(header)
            self.header_written = names
        self.rejects.write(raw if raw.endswith(b"\n") else raw + b"\n")

    def report(self, path: str | Path) -> list[str]:
        stats = self.stats.get(str(path))
        if stats is None:
            return []
        lines = []
        if stats.skipped:
            reasons = ", ".join(f"{n} {reason}" for reason, n in stats.skipped.most_common())
            n = sum(stats.skipped.values())
            lines.append(f"skipped {n} {stats.unit if n != 1 else stats.unit[:-1]} of {path}: {reasons}")
        multiline = stats.multiline_note(path)
        if multiline:
            lines.append(multiline)
        if stats.blank_lines:
            blank = "1 blank line" if stats.blank_lines == 1 else f"{stats.blank_lines} blank lines"
            lines.append(f"{blank} in {path} {'was not a record' if stats.blank_lines == 1 else 'were not records'}")
        return lines


def read_records(
    path: str | Path, fields: FieldSpec = FieldSpec(), require_labels: bool = True, policy: ReadPolicy | None = None,
) -> Iterator[Record]:
    """Yield validated records, lazily (constant memory for JSONL). A bad record raises DataError, or is
    skipped and counted under policy.on_error == "skip"."""
    policy = policy if policy is not None else ReadPolicy()
    if policy.on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}")
    stats = policy.stats.setdefault(str(path), ReadStats())
    path = Path(path)
    try:
        missing = str(path) != "-" and not path.is_file()
    except OSError as exc:  # a name too long, a folder on the way that cannot be searched
        raise DataError(path, None, f"cannot read ({describe_os_error(exc)})") from None
    if missing:
        if path.is_dir():
            raise DataError(path, None, "a folder, not a file (give a JSONL, CSV or Parquet file; `mlcls predict "
                            "--engine ray` also reads a folder of shards)")
        if path.exists():  # `mlcls predict <(zcat x.jsonl.gz)`: a pipe, which has no name to tell its format by
            raise DataError(path, None, "not a regular file (a pipe or a device): give the records on standard "
                            "input as `-` (JSON Lines), or name a file")
        raise DataError(path, None, "file not found")
    kind = input_kind(path)
    columns = Columns(fields.text_fields, fields.label_field if require_labels else None)
    rows, numbered = _rows(path, kind, stats, columns)
    stats.unit = "records" if numbered else "rows" if kind.format == "parquet" else stats.unit
    for line, row, raw in rows:
        try:
            if isinstance(row, DataError):
                raise row
            record = parse_record(row, path, line, fields, require_labels, from_csv=kind.format in ("csv", "tsv"))
        except DataError as exc:
            if numbered and exc.line is not None:  # a .json array: the record's number, not a line
                exc = DataError(path, None, f"record {exc.line}: {exc.problem}", reason=exc.reason)
            if policy.on_error == "fail":
                raise exc from None
            stats.skipped[exc.reason] += 1
            stats.first_skipped = stats.first_skipped or (exc.line, exc.problem)
            if policy.rejects is not None:
                policy.write_reject(raw, stats.header)
            continue
        stats.records += 1
        yield record
    if stats.records == 0:
        skipped, blank = sum(stats.skipped.values()), stats.blank_lines
        blanks = f"{blank} blank line{'s' if blank != 1 else ''}"
        if skipped:  # why, here: the notes that count the reasons are never printed after this error
            line, first = stats.first_skipped or (None, "")
            reasons = ", ".join(f"{n} {reason}" for reason, n in stats.skipped.most_common())
            which = f"the one {stats.unit[:-1]} was" if skipped == 1 else f"all {skipped} {stats.unit} were"
            problem = (f"no records: {which} skipped as bad ({reasons}" + (f"; and {blanks}" if blank else "")
                       + f"); the first{'' if line is None else f', on {stats.unit[:-1]} {line}'}: {first}")
        else:
            problem = f"no records: the file holds only {blanks}" if blank else "no records: the file is empty"
        raise DataError(path, None, problem + (f"; {JSON_MEANS}" if kind.format == "json" and skipped else ""))


def _rows(path: Path, kind: InputKind, stats: ReadStats,
          columns: Columns) -> tuple[Iterator[tuple[int, Any, bytes]], bool]:
    """The rows of the file, and whether they are numbered by record (a .json array) rather than by line."""
    if kind.format == "json":
        first = first_json_character(path, kind.compression)
        if first == "[":
            return json_array_rows(path, kind.compression), True
        if first not in ("{", None):
            raise not_an_array(path, first)
        return _jsonl_rows(path, stats, kind.compression, hint=f" ({JSON_MEANS})"), False
    if kind.format == "jsonl":
        return _jsonl_rows(path, stats, kind.compression), False
    if kind.format in ("csv", "tsv"):
        return csv_rows(path, stats, columns, kind.compression, "\t" if kind.format == "tsv" else ","), False
    return parquet_rows(path), False


def _jsonl_rows(path: Path, stats: ReadStats, compression: str | None = None,
                hint: str = "") -> Iterator[tuple[int, Any, bytes]]:
    """(line number, parsed JSON or the DataError that parsing it raised, the raw bytes). `hint` follows the
    message of a line that is not JSON."""
    import sys

    if str(path) == "-" and sys.stdin is None:  # `mlcls predict - <&-`: Python sets no stdin for a closed one
        raise DataError(path, None, "standard input is closed: pipe the records in, or name a file")
    handle = sys.stdin.buffer if str(path) == "-" else open_input(path, compression)
    try:
        for number, raw in enumerate(read_lines(handle, path, compression), start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield number, DataError(path, number, f"not valid UTF-8 (byte {exc.start + 1} of the line)"), raw
                continue
            if number == 1:
                text = text.lstrip("\ufeff")  # a byte-order mark is not part of the record
            if not text.strip():
                stats.blank_lines += 1
                continue
            try:
                yield number, json.loads(text), raw
            except json.JSONDecodeError as exc:
                yield number, DataError(path, number, f"invalid JSON: {exc.msg} (column {exc.colno}){hint}",
                                        reason="invalid JSON"), raw
            except RecursionError:  # "[[[[..." nested deeper than the parser allows
                yield number, DataError(path, number, f"invalid JSON: nested too deeply{hint}"), raw
            except ValueError:  # not a JSONDecodeError: an integer of more than 4,300 digits (Python's limit)
                yield number, DataError(path, number, f"invalid JSON: number too long{hint}",
                                        reason="invalid JSON"), raw
    finally:
        if str(path) != "-":
            handle.close()


def _require_unicode(value: str, what: str, path: Path, line: int, reason: str = "invalid Unicode") -> None:
    """A DataError unless `value` is valid Unicode: JSON's "\\ud800" escapes decode to lone surrogates, which no
    tokenizer takes and no UTF-8 output (predictions, labels.json, reports) can hold."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise DataError(path, line, f"{what} holds an unpaired surrogate (a \\ud800-\\udfff escape): not valid "
                        "Unicode", reason=reason) from None


def parse_record(
    row: Any, path: Path, line: int, fields: FieldSpec, require_labels: bool, from_csv: bool = False
) -> Record:
    if not isinstance(row, dict):
        raise DataError(path, line, f"expected a JSON object, got {json_type(row)}", reason="not an object")
    parts = []
    several = len(fields.text_fields) > 1
    present = [name for name in fields.text_fields if row.get(name) is not None]
    if not present:
        quoted = ", ".join(f"'{name}'" for name in fields.text_fields)
        if several:
            raise DataError(path, line, f"missing text: none of the fields {quoted} is present", reason="missing text")
        if fields.text_fields[0] in row:
            raise DataError(path, line, f"text field {quoted} must be a string, got null", reason="missing text")
        raise DataError(path, line, f"missing text field {quoted}", reason="missing text")
    # With several text fields (e.g. title + body) one may be absent, as an article may have no body.
    for name in present:
        value = row[name]
        if not isinstance(value, str):
            raise DataError(path, line, f"text field '{name}' must be a string, got {json_type(value)}",
                            reason="text not a string")
        if value.strip():
            parts.append(value.strip())
    if not parts:
        raise DataError(path, line, f"empty text ({' + '.join(fields.text_fields)})")
    text = fields.text_separator.join(parts)
    _require_unicode(text, "text", path, line)

    record_id = row.get(fields.id_field)
    id_given = not (record_id is None or (isinstance(record_id, str) and not record_id.strip()))
    if not id_given:
        record_id = str(line)  # no id, or a blank one (in any format): the line number stands in
    elif isinstance(record_id, bool) or not isinstance(record_id, str | int):
        raise DataError(path, line, f"id field '{fields.id_field}' must be a string or an integer", reason="bad id")
    elif isinstance(record_id, str):
        _require_unicode(record_id, f"id field '{fields.id_field}'", path, line, reason="bad id")

    if not require_labels:  # `predict` input: labels are ignored, so whatever the field holds is no error
        labels = None
    elif fields.label_field not in row:
        raise DataError(path, line, f"missing labels field '{fields.label_field}'", reason="missing labels")
    else:
        raw_labels = row[fields.label_field]
        if from_csv:
            raw_labels = _labels_from_cell(raw_labels, fields.label_separator, path, line)
        labels = parse_labels(raw_labels, path, line)
    return Record(id=str(record_id), text=text, labels=labels, line=line, id_given=id_given)


def _labels_from_cell(cell: Any, separator: str, path: Path, line: int) -> Any:
    """A CSV cell: empty, a JSON list/object, or labels joined by `separator`."""
    if cell is None:
        return []
    if not isinstance(cell, str):
        return cell
    cell = cell.strip()
    if cell.startswith(("[", "{")):
        try:
            return json.loads(cell)
        except json.JSONDecodeError as exc:
            raise DataError(path, line, f"labels cell is not valid JSON: {exc.msg}", reason="bad labels") from None
        except RecursionError:
            raise DataError(path, line, "labels cell is not valid JSON: nested too deeply",
                            reason="bad labels") from None
        except ValueError:  # an integer of more than 4,300 digits (Python's limit)
            raise DataError(path, line, "labels cell is not valid JSON: number too long",
                            reason="bad labels") from None
    return [part.strip() for part in cell.split(separator) if part.strip()]


def parse_labels(raw: Any, path: Path, line: int) -> Labels:
    if isinstance(raw, list):
        labels: Labels = {}
        for item in raw:
            if not isinstance(item, str) or not item.strip():
                got = "a blank name" if isinstance(item, str) else json_type(item)
                raise DataError(path, line, f"labels list must hold non-empty strings, got {got}",
                                reason="bad labels")
            _require_unicode(item, "a label name", path, line)
            # trimmed, as a CSV cell's names are: " earn" in a JSONL file is the topic earn, not another one
            labels[item.strip()] = 1.0
        return labels
    if isinstance(raw, dict):
        labels = {}
        for given, conf in raw.items():
            if not given.strip():  # a label no one can name in --labels, a report or a threshold
                raise DataError(path, line, f"labels object has a blank label name ({given!r})", reason="bad labels")
            _require_unicode(given, "a label name", path, line)
            name = given.strip()
            if name in labels:  # "earn" and "earn " are one label: which of its two confidences holds is unknowable
                raise DataError(path, line, f"labels object names label '{name}' twice (once with spaces around "
                                "it)", reason="bad labels")
            if conf is None:
                labels[name] = None
                continue
            # NaN is only a float: math.isnan of an integer past float's range would raise OverflowError
            if isinstance(conf, bool) or not isinstance(conf, int | float) or (isinstance(conf, float)
                                                                               and math.isnan(conf)):
                raise DataError(
                    path, line, f"confidence of label '{name}' must be a number in [0, 1] or null, "
                    f"got {json_type(conf)}", reason="bad labels",
                )
            if not 0.0 <= conf <= 1.0:
                big = isinstance(conf, int) and abs(conf) >= 10**15  # no float shows it
                shown = f"a {len(str(abs(conf)))}-digit number" if big else conf
                raise DataError(path, line, f"confidence of label '{name}' is {shown}, outside [0, 1]",
                                reason="bad labels")
            labels[name] = float(conf)
        return labels
    raise DataError(
        path, line, f"labels must be a list of names or an object of label -> confidence, got {json_type(raw)}",
        reason="bad labels",
    )
