"""One table per benchmark in docs/benchmarks.md, between `<!-- NAME:start -->` and `<!-- NAME:end -->`:
a rerun replaces its own block and leaves the text around it alone."""

from __future__ import annotations

import fcntl
import re
from pathlib import Path


def write_block(doc: Path, name: str, table: str, heading: str | None = None) -> None:
    """Put `table` into the block `name` of `doc`; a block not there yet is appended (under `heading`).

    Benchmarks run side by side (on a GPU) may finish together: the read-modify-write holds a lock."""
    with open(doc.with_name(doc.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _write_block(doc, name, table, heading)


def _write_block(doc: Path, name: str, table: str, heading: str | None) -> None:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    block = f"{start}\n{table}\n{end}"
    if start in text:
        text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    elif heading and heading in text:
        # a second block under a heading already there (e.g. another prefix): end of that section, no repeat
        at = text.find("\n## ", text.index(heading) + len(heading))
        at = len(text) if at < 0 else at
        text = text[:at].rstrip("\n") + f"\n\n{block}\n" + text[at:]
    else:
        text += f"\n{heading}\n\n{block}\n" if heading else f"\n{block}\n"
    doc.write_text(text)
