"""An output shard's rows, in the format asked for: the rows of `mlcls predict` (inference.predict.prediction_row:
`id`, `labels`, `scores`), as JSON Lines or CSV by predict's own writers (the same lines, byte for byte), or as
Parquet with the same three fields: `id` a string, `labels` a list of strings, `scores` a map label -> score.

Rows go out chunk by chunk (a Parquet row group per chunk): memory does not grow with the shard.
"""

from __future__ import annotations

from contextlib import suppress
from pathlib import Path
from typing import Any

from mlcls.atomic import close_quietly, open_for_writing
from mlcls.inference.predict import WRITERS


class TextShardWriter:
    """JSON Lines or CSV, through predict's writers."""

    def __init__(self, path: Path, fmt: str, labels: list[str], scores: int | str):
        self.handle = open_for_writing(path)
        self.writer = WRITERS[fmt](self.handle, labels, scores)

    def write_chunk(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            self.writer.write(row)

    def close(self) -> None:
        self.handle.close()

    def abandon(self) -> None:
        close_quietly(self.handle)


class ParquetShardWriter:
    def __init__(self, path: Path, fmt: str, labels: list[str], scores: int | str):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.pa = pa
        self.schema = pa.schema([("id", pa.string()), ("labels", pa.list_(pa.string())),
                                 ("scores", pa.map_(pa.string(), pa.float64()))])
        self.handle = open_for_writing(path, "wb")
        self.writer = pq.ParquetWriter(self.handle, self.schema)

    def write_chunk(self, rows: list[dict[str, Any]]) -> None:
        columns = {"id": [row["id"] for row in rows], "labels": [row["labels"] for row in rows],
                   "scores": [list(row["scores"].items()) for row in rows]}
        self.writer.write_table(self.pa.Table.from_pydict(columns, schema=self.schema))

    def close(self) -> None:
        self.writer.close()  # the footer; the file handle stays ours
        self.handle.close()

    def abandon(self) -> None:
        with suppress(Exception):  # cleanup after an error: the file is removed anyway
            self.writer.close()
        close_quietly(self.handle)


def shard_writer(path: Path, fmt: str, labels: list[str], scores: int | str) -> TextShardWriter | ParquetShardWriter:
    cls = ParquetShardWriter if fmt == "parquet" else TextShardWriter
    return cls(path, fmt, labels, scores)
