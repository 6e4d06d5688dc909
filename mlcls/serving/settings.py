"""What `mlcls serve`'s options set: batching and limits (standard library only, read before FastAPI loads)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Limits:
    max_records: int = 1000  # records per request
    max_text_chars: int = 100_000  # characters of one record's text (its text fields joined)
    max_body_bytes: int = 10 * 2**20  # bytes of one request body


@dataclass(frozen=True)
class ServeSettings:
    max_batch: int = 64  # records scored together, at most
    max_wait_ms: float = 10.0  # how long the first record of a batch waits for company, at most
    batch_size: int | None = None  # records per forward pass within a scoring call (None: as predict's default)
    limits: Limits = field(default_factory=Limits)
    token: str | None = None  # bearer token required by every endpoint but /health (and the docs)
    warm_up: bool = False  # score one full batch on the worker thread before taking requests (`mlcls serve` does)
    # after SIGTERM, how long the requests in flight get to finish; those still unfinished then are answered 503
    # (JSON, with Retry-After) instead of being cut off
    drain_seconds: float = 30.0
