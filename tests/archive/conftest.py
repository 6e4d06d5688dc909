"""Shared by the archive tests: the tiny run (tests/conftest.py's `trained`) and an archive of shards made from the
tiny records, in the three input formats."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.conftest import TINY_RECORDS

# 30 articles over three shards of three formats; ids unique across the archive
ARTICLES = [{"id": f"n{i}", "text": record["text"] + (" new" * (i % 4))}
            for i, record in enumerate(TINY_RECORDS * 3)]


def tiny_run(trained) -> Path:
    folder, _, _ = trained
    return folder / "runs" / "tiny"


def write_archive(folder: Path) -> Path:
    """archive/a.jsonl (12 articles), archive/2020/b.csv (9), archive/2020/c.parquet (15), plus files that are
    not input: a README, a hidden file and a `_SUCCESS` marker."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    archive = folder / "archive"
    (archive / "2020").mkdir(parents=True)
    (archive / "a.jsonl").write_text("".join(json.dumps(row) + "\n" for row in ARTICLES[:12]))
    with open(archive / "2020" / "b.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["id", "text"])
        writer.writeheader()
        writer.writerows(ARTICLES[12:21])
    pq.write_table(pa.Table.from_pylist(ARTICLES[21:]), archive / "2020" / "c.parquet")
    (archive / "README.md").write_text("not records\n")
    (archive / ".hidden.jsonl").write_text("{}\n")
    (archive / "_SUCCESS").write_text("")
    return archive


def all_in_one(folder: Path) -> Path:
    """The archive's articles in one JSONL file: what local `mlcls predict` reads."""
    path = folder / "all.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in ARTICLES))
    return path


def read_rows(path: Path) -> list[dict]:
    """An output shard's rows, whatever its format (JSONL, or Parquet with the map read back as a dict)."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return [{"id": row["id"], "labels": row["labels"], "scores": dict(row["scores"])}
                for row in pq.read_table(path).to_pylist()]
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def archive(tmp_path) -> Path:
    return write_archive(tmp_path)
