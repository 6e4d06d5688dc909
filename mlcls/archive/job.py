"""What one archive job is: the run, its decisions and the output's form (what a shard's rows depend on, kept in
the output folder so that a rerun cannot mix two jobs' shards), the bad-input policy, and how it runs (workers,
threads, GPUs, Ray's address: free to change between a run and its rerun)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mlcls.run.files import files_fingerprint

OUTPUT_FORMATS = ("jsonl", "csv", "parquet")


@dataclass(frozen=True)
class ArchiveJob:
    run: Path  # the run directory or ONNX export, resolved: every worker loads this very folder
    output: Path  # the output folder, absolute
    scores: int | str = "predicted"  # --scores: predicted, all, or N (top-N)
    fmt: str = "jsonl"
    threshold: float | None = None
    top_k: int | None = None
    min_labels: int | None = None
    on_error: str = "fail"
    precision: str | None = None  # None: the run's model.inference_precision
    int8: bool = False
    trust_remote_code: bool = False
    batch_size: int | None = None  # None: 16 on a CPU, 64 on a GPU (score_records' default)
    # how it runs
    address: str | None = None  # None: Ray on this machine (or the Ray this process already runs)
    workers: int | None = None  # None: as many as the CPUs (or GPUs) allow
    threads_per_worker: int = 1
    gpus_per_worker: float = 0.0

    def identity(self) -> dict[str, Any]:
        """What the rows of an output shard depend on: a rerun must match it to reuse the shards written. Not
        --on-error: a job stopped by a bad record under fail may go on under skip (its shards are the same)."""
        keys = ("scores", "fmt", "threshold", "top_k", "min_labels", "precision", "int8")
        fields = asdict(self)
        # "model": the run's files, so that a run trained again at the same path is another job (its shards are
        # another model's predictions, not to be mixed with those written)
        return {"run": str(self.run), "model": files_fingerprint(Path(self.run)), **{key: fields[key] for key in keys}}

    def worker_settings(self) -> dict[str, Any]:
        """What a worker needs, as plain values (they travel to other machines)."""
        fields = asdict(self)
        fields.update(run=str(self.run), output=str(self.output))
        for key in ("address", "workers"):
            fields.pop(key)
        return fields

    @property
    def device(self) -> str:
        return "cuda" if self.gpus_per_worker > 0 else "cpu"


OPTION_NAMES = {"run": "--model", "model": "the files of --model (trained again since?)", "scores": "--scores",
                "fmt": "--format", "threshold": "--threshold",
                "top_k": "--top-k", "min_labels": "--min-labels", "precision": "--precision", "int8": "--int8"}
