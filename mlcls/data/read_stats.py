"""What a reader of records saw: counted, so that nothing is dropped without the user being told."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


def header_names(header: bytes) -> bytes:
    """A CSV/TSV header row's names as bytes, however the file began (a UTF-8 byte-order mark) and ended its
    lines: what tells two files' headers apart when their rejects go into one file."""
    return header.removeprefix(b"\xef\xbb\xbf").rstrip(b"\r\n")


@dataclass
class ReadStats:
    """One file's counts, which the notes after a command are made from."""

    records: int = 0
    blank_lines: int = 0
    unit: str = "lines"  # what a record is counted in: "records" for a .json array
    skipped: Counter = field(default_factory=Counter)  # reason -> lines skipped under on_error="skip"
    first_skipped: tuple[int | None, str] | None = None  # the first skipped record's line and problem
    # CSV/TSV rows whose quoted cells run over several lines, and the line the first starts on: legitimate (a
    # text with line breaks), or a '"' never closed that swallowed the rows after it; said either way
    multiline_rows: int = 0
    first_multiline_row: int | None = None
    header: bytes = b""  # a CSV/TSV file's header row as written: the first line of its rows in --rejects

    def count_multiline_row(self, line: int) -> None:
        self.multiline_rows += 1
        self.first_multiline_row = self.first_multiline_row or line

    def multiline_note(self, path: object) -> str | None:
        if not self.multiline_rows:
            return None
        rows = "1 row" if self.multiline_rows == 1 else f"{self.multiline_rows} rows"
        return (f"{rows} of {path} ran over several lines (the first from line {self.first_multiline_row}): a quoted "
                "cell holds line breaks; where none should, a '\"' is not closed on that line and the rows after it "
                "were read into its cell")
