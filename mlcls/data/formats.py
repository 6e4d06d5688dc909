"""Which kind of file an input is, and the readers of what is not one plain line per record.

By suffix: `.jsonl`/`.ndjson`/`.txt` (JSON Lines), `.json` (an array of records, or JSON Lines), `.csv`,
`.tsv` (tab-separated, read like CSV) and `.parquet`; any of them but Parquet may be compressed, named
`NAME.jsonl.gz`, `.bz2` or `.xz`, and is decompressed by the standard library as it is read, a chunk at a
time: memory does not grow with the file. A `.json` array is read the same way, one record at a time.
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import json
import lzma
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from mlcls.atomic import describe_os_error
from mlcls.errors import DataError, first_line

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".txt": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv",
           ".parquet": "parquet"}
COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz"}
SUPPORTED_SUFFIXES = (".jsonl", ".json", ".ndjson", ".txt", ".csv", ".tsv", ".parquet")
_OPENERS = {"gzip": gzip.open, "bz2": bz2.open, "xz": lzma.open}
_DECOMPRESSION_ERRORS = (OSError, EOFError, zlib.error, lzma.LZMAError)
JSON_MEANS = "a .json file holds an array of records, [{...}, {...}], or one record per line (JSON Lines)"


@dataclass(frozen=True)
class InputKind:
    format: str  # jsonl, json, csv, tsv, parquet
    compression: str | None = None  # gzip, bz2, xz


def input_kind(path: Path) -> InputKind:
    """The format and compression of an input file, from its suffixes (`-` is JSON Lines on stdin)."""
    if str(path) == "-":
        return InputKind("jsonl")
    suffixes = [suffix.lower() for suffix in path.suffixes]
    compression = COMPRESSIONS.get(suffixes[-1]) if suffixes else None
    named = suffixes[-2] if compression and len(suffixes) > 1 else "" if compression else "".join(suffixes[-1:])
    fmt = FORMATS.get(named)
    if fmt is None or (compression and fmt == "parquet"):
        shown = "".join(suffixes[-2:]) if compression else named
        raise DataError(path, None, f"unsupported file type '{shown}' (use one of {', '.join(SUPPORTED_SUFFIXES)}; "
                        "all but .parquet may be compressed as NAME.jsonl.gz, .bz2 or .xz)")
    return InputKind(fmt, compression)


def open_input(path: Path, compression: str | None = None) -> IO[bytes]:
    """The file opened for reading (decompressed as it is read); a refusal (permission) is a one-line DataError."""
    try:
        if compression is None:
            return open(path, "rb")  # noqa: SIM115 (the callers close it)
        return _OPENERS[compression](path, "rb")
    except OSError as exc:
        raise DataError(path, None, f"cannot read ({describe_os_error(exc)})") from None


def read_lines(handle: IO[bytes], path: Path, compression: str | None) -> Iterator[bytes]:
    """The lines of `handle`; a file that cannot be read or decompressed further stops here with a one-line
    DataError naming the line it broke off at (whatever the on-error policy: the rest cannot be read)."""
    lines, number = iter(handle), 0
    while True:
        try:
            raw = next(lines)
        except StopIteration:
            return
        except _DECOMPRESSION_ERRORS as exc:
            raise _unreadable(exc, path, compression, number + 1) from None
        number += 1
        yield raw


def _unreadable(exc: BaseException, path: Path, compression: str | None, line: int) -> DataError:
    if compression is None:
        return DataError(path, line, f"cannot read ({describe_os_error(exc)})", reason="cannot read")
    if isinstance(exc, EOFError):
        problem = f"the {compression} data ends early (a truncated file?)"
    else:
        detail = first_line(exc)
        problem = f"not valid {compression} data ({detail})"
    return DataError(path, line, f"cannot decompress: {problem}", reason="cannot decompress")


def first_json_character(path: Path, compression: str | None) -> str | None:
    """The first character of a .json file that is not whitespace (nor a byte-order mark); None: there is none."""
    handle = open_input(path, compression)
    try:
        while True:
            try:
                chunk = handle.read(4096)
            except _DECOMPRESSION_ERRORS as exc:
                raise _unreadable(exc, path, compression, 1) from None
            if not chunk:
                return None
            text = chunk.lstrip(b" \t\r\n\xef\xbb\xbf")  # a byte-order mark's bytes, at the start only in practice
            if text:
                return text[:1].decode("latin-1")
    finally:
        handle.close()


def not_an_array(path: Path, first: str) -> DataError:
    kind = {'"': "a string", "t": "a boolean", "f": "a boolean", "n": "null"}.get(first)
    kind = kind or ("a number" if first in "-0123456789" else "no JSON at all")
    return DataError(path, None, f"{JSON_MEANS}; this one starts with {kind}", reason="not an array of records")


# --------------------------------------------------------------------------- a .json array, streamed

_STRUCTURE = re.compile(r'["\[\]{}]')  # outside a string, what changes the nesting
_IN_STRING = re.compile(r'["\\]')
_SCALAR_END = re.compile(r"[,\]\s]")
_SPACE = re.compile(r"[ \t\r\n]*")
_CHUNK = 1 << 16
_DECODER = json.JSONDecoder()
_UNPARSED = object()


class _Text:
    """The text of a file read a chunk at a time: `buffer[pos:]` is what is not consumed yet; `line` is the
    file's line at `pos`. Bytes that are not UTF-8 are kept as surrogates, for the record that holds them."""

    def __init__(self, handle: IO[bytes], path: Path, compression: str | None):
        self.handle, self.path, self.compression = handle, path, compression
        self.decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
        self.buffer, self.pos, self.line, self.eof = "", 0, 1, False

    def more(self) -> int:
        """Read on (at least as much as is buffered, so that a huge record costs linear time); return by how
        much the offsets into `buffer` moved back, or -1 at the end of the file."""
        if self.eof:
            return -1
        try:
            data = self.handle.read(max(_CHUNK, len(self.buffer) - self.pos))
        except _DECOMPRESSION_ERRORS as exc:
            raise _unreadable(exc, self.path, self.compression, self.line) from None
        self.eof = not data
        shift, self.buffer = self.pos, self.buffer[self.pos:] + self.decoder.decode(data, final=self.eof)
        self.pos = 0
        return shift

    def advance(self, end: int) -> None:
        self.line += self.buffer.count("\n", self.pos, end)
        self.pos = end

    def skip_space(self) -> str | None:
        """Skip whitespace; the next character, None at the end of the file."""
        while True:
            self.advance(_SPACE.match(self.buffer, self.pos).end())
            if self.pos < len(self.buffer):
                return self.buffer[self.pos]
            if self.more() < 0:
                return None

    def parsed_value(self) -> tuple[int | None, Any]:
        """(where the value at `pos` ends, the value) when the buffer holds all of it; else (None, _UNPARSED)."""
        try:
            value, end = _DECODER.raw_decode(self.buffer, self.pos)
        except (ValueError, RecursionError):  # invalid, or cut off by the end of the buffer: value_end says which
            return None, _UNPARSED
        return (end, value) if end < len(self.buffer) or self.eof else (None, _UNPARSED)

    def value_end(self) -> int | None:
        """Where the JSON value at `pos` ends (brackets matched, strings skipped), None: at the end of the file."""
        i, closers, in_string = self.pos, [], False
        scalar = self.buffer[self.pos] not in '{["'
        while True:
            pattern = _SCALAR_END if scalar else _IN_STRING if in_string else _STRUCTURE
            match = pattern.search(self.buffer, i)
            if match is None or (in_string and match.group() == "\\" and match.end() >= len(self.buffer)):
                shift = self.more()
                if shift < 0:
                    return len(self.buffer) if scalar else None
                i -= shift
                continue
            char, i = match.group(), match.end()
            if scalar:
                return i - 1
            if in_string:
                if char == "\\":
                    i += 1  # the escaped character, whatever it is
                    continue
                in_string = False
                if not closers:
                    return i
            elif char == '"':
                in_string = True
            elif char in "[{":
                closers.append("]" if char == "[" else "}")
            elif len(closers) > 1 and closers[-1] == char:
                closers.pop()
            else:  # the value's last bracket, or one that closes nothing open: the value (invalid then) ends here
                return i


def json_array_rows(path: Path, compression: str | None) -> Iterator[tuple[int, Any, bytes]]:
    """(the record's number in the array, from 1; the parsed record or the DataError it is; its text, one line)."""
    handle = open_input(path, compression)
    try:
        text = _Text(handle, path, compression)
        text.skip_space()
        text.buffer, text.pos = text.buffer[text.pos:].lstrip("\ufeff"), 0
        if text.skip_space() != "[":
            raise not_an_array(path, text.buffer[text.pos:text.pos + 1] or "?")
        text.advance(text.pos + 1)
        number, after = 0, "'['"
        while True:
            char = text.skip_space()
            if char == "]" and number == 0:
                raise DataError(path, None, "no records: the array is empty")
            if char is None or char in ",]":
                raise _bad_array(path, text, f"a record after {after}", char)
            number += 1
            end, value = text.parsed_value()
            end = end if end is not None else text.value_end()
            if end is None:
                raise DataError(path, text.line, f"invalid JSON array: record {number} is cut off by the end of the "
                                "file (a truncated file?)", reason="invalid JSON")
            chunk = text.buffer[text.pos:end]
            text.advance(end)
            raw = chunk.replace("\r", " ").replace("\n", " ").encode("utf-8", "surrogateescape")
            yield number, _record(chunk, value, path, number), raw
            char, after = text.skip_space(), f"record {number}"
            if char == "]":
                text.advance(text.pos + 1)
                if text.skip_space() is not None:
                    raise _bad_array(path, text, "nothing after the array's closing ']'", text.buffer[text.pos])
                return
            if char != ",":
                raise _bad_array(path, text, f"',' or ']' after {after}", char)
            text.advance(text.pos + 1)
    finally:
        handle.close()


def _record(chunk: str, value: Any, path: Path, number: int) -> Any:
    """The parsed record (`value`, or `chunk` parsed here), or the DataError that it is."""
    where = f"record {number}"
    try:
        chunk.encode("utf-8")
    except UnicodeEncodeError:  # bytes that are not UTF-8 were decoded to lone surrogates
        return DataError(path, None, f"{where}: not valid UTF-8", reason="not valid UTF-8")
    try:
        value = json.loads(chunk) if value is _UNPARSED else value
    except json.JSONDecodeError as exc:
        return DataError(path, None, f"{where}: invalid JSON: {exc.msg}", reason="invalid JSON")
    except RecursionError:
        return DataError(path, None, f"{where}: invalid JSON: nested too deeply", reason="invalid JSON")
    except ValueError:  # not a JSONDecodeError: an integer of more than 4,300 digits (Python's limit)
        return DataError(path, None, f"{where}: invalid JSON: number too long", reason="invalid JSON")
    if not isinstance(value, dict):
        return DataError(path, None, f"{where}: expected a record (a JSON object), got {json_type(value)}: "
                         f"{JSON_MEANS}", reason="not an object")
    return value


def _bad_array(path: Path, text: _Text, expected: str, found: str | None) -> DataError:
    seen = "the end of the file" if found is None else repr(found)
    return DataError(path, text.line, f"invalid JSON array: expected {expected}, found {seen}",
                     reason="invalid JSON")


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", str: "a string", int: "a number", float: "a number", list: "a list",
            dict: "an object"}.get(type(value), type(value).__name__)
