"""The Ray side of an archive job: the callable class that Ray Data runs in each worker (an actor: the run is loaded
once, in its constructor, then scores shard after shard), and the counter the workers tell their progress to.

This module is light on purpose: the driver imports it (Ray pickles the class by reference), and torch is loaded
in the workers only (shard.py, imported in the constructor).
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any

from mlcls.archive.inputs import ShardTask
from mlcls.errors import MlclsError

TASK_FIELDS = ("index", "input", "output", "rejects", "size", "mtime_ns")


class RecordCounter:
    """Records scored so far, across the workers (made a Ray actor by ray_session.py). Workers add to it after
    every chunk without waiting for an answer; the driver reads it for the progress bar. Each worker also
    leaves its own handle here when it starts: Ray Data does not give the driver its actors, and the driver
    must stop them itself when the job stops (ray_session.stop_workers)."""

    def __init__(self) -> None:
        self.by_shard: dict[str, int] = {}  # a shard's records so far, by its output: a retried shard starts over
        self.joined: list[Any] = []

    def start(self, shard: str) -> None:
        """A shard begins (again, after its worker died): what its first try told is not counted twice."""
        self.by_shard[shard] = 0

    def add(self, shard: str, records: int) -> None:
        self.by_shard[shard] = self.by_shard.get(shard, 0) + records

    def total(self) -> int:
        return sum(self.by_shard.values())

    def join(self, worker: Any) -> None:
        self.joined.append(worker)

    def workers(self) -> list[Any]:
        return self.joined


class ShardPredictor:
    """map_batches' callable class: a batch holds one shard task per row (batch_size=1 in practice); each is
    predicted into its output shard, and its commit record (or its error) comes back as one JSON string."""

    def __init__(self, settings: dict[str, Any], counter: Any = None):
        self.counter = counter
        if counter is not None:
            import ray  # this runs in a Ray worker: ray is there

            counter.join.remote(ray.get_runtime_context().current_actor)
        self.context, self.failure = None, None
        try:
            from mlcls.archive.shard import load_context

            self.context = load_context(settings)
        except MlclsError as exc:  # a broken run: every shard answers with this line, the driver stops on it
            self.failure = str(exc)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        from mlcls.archive.shard import error_status, predict_shard

        statuses = []
        for row in range(len(batch["input"])):
            task = ShardTask(**{key: _plain(batch[key][row]) for key in TASK_FIELDS})
            if self.failure is not None:
                status = error_status(task, self.failure, "run")
            else:
                if self.counter is not None:  # calls from one worker reach the counter in order: start, adds
                    self.counter.start.remote(task.output)
                status = predict_shard(self.context, task, partial(self._tell, task.output))
            statuses.append(json.dumps(status, ensure_ascii=False))
        return {"status": np.array(statuses, dtype=object)}

    def _tell(self, shard: str, records: int) -> None:
        if self.counter is not None:
            self.counter.add.remote(shard, records)


def _plain(value: Any) -> Any:
    """A numpy scalar of a batch as the Python value it was (str, int)."""
    return value.item() if hasattr(value, "item") else value
