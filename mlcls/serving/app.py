"""The FastAPI app of `mlcls serve`: create_app wires the run, the settings, the batcher and the routes together.

    POST /v1/predict  {"records": [{"id": ..., "text": ...}, ...], "top_k"?, "threshold"?, "min_labels"?, "scores"?}
                      -> {"predictions": [one row per record, in order: exactly the line `mlcls predict` writes]}
    GET  /v1/labels   the label vocabulary
    GET  /v1/model    the run: name, encoder, record format, decision rule, validation metrics, config, limits
    GET  /health      the process answers (never needs the token)
    GET  /ready       the model is loaded and the batcher takes work (503 while starting or draining); the records
                      scored so far and in how many batches
    GET  /docs, /openapi.json   FastAPI's interactive docs and OpenAPI schema

The handlers are in routes.py, the request body's declaration and parser in request.py, the error shape in
api_errors.py; every bad input is a 4xx JSON error {"error": {"status", "message", "field", "index"}}.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import asdict
from typing import Any

import numpy as np
from fastapi import Depends, FastAPI

from mlcls.data.records import FieldSpec, Record
from mlcls.inference.loading import LoadedRun
from mlcls.inference.scoring import inference_batch_size
from mlcls.run.layout import METRICS
from mlcls.serving import routes
from mlcls.serving.api_errors import EXCEPTION_HANDLERS
from mlcls.serving.batcher import DynamicBatcher
from mlcls.serving.settings import ServeSettings


def create_app(run: LoadedRun, settings: ServeSettings | None = None) -> FastAPI:
    """The app serving `run`; its state (read by the handlers in routes.py) is set here, once."""
    settings = settings or ServeSettings()
    app = FastAPI(
        title="mlcls serve",
        summary=f"Multi-label text classification with the run {run.path.name}",
        description="Tags records (an `id` and text fields, as in mlcls's record format) with zero, one or "
                    "many labels. Requests that arrive together are scored together. Errors: "
                    '`{"error": {"status", "message", "field", "index"}}`.',
        version="1",
        lifespan=lifespan,
        exception_handlers=EXCEPTION_HANDLERS,
    )
    app.state.run = run
    app.state.settings = settings
    app.state.fields = FieldSpec.from_config(run.config.data)
    app.state.batcher = DynamicBatcher(scorer(run, settings.batch_size), settings.max_batch,
                                       settings.max_wait_ms / 1000)
    app.state.card = model_card(run, settings)
    app.state.draining = False  # set from SIGTERM on (server.py): /ready answers 503 while requests finish
    # without a token the dependency is left out altogether, so that the docs show no security scheme
    auth = [Depends(routes.require_token)] if settings.token is not None else []
    app.include_router(routes.guarded, dependencies=auth)
    app.include_router(routes.public)
    return app


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """The batcher runs while the app does; at shutdown (after uvicorn has answered the requests in flight) it
    finishes what is queued and stops."""
    batcher, settings = app.state.batcher, app.state.settings
    await batcher.start()
    if settings.warm_up:
        await warm_up(batcher, app.state.run, settings.max_batch)
    try:
        yield
    finally:
        app.state.draining = True
        await batcher.stop()


def scorer(run: LoadedRun, batch_size: int | None):
    """The scoring function the batcher calls on its worker thread: records -> probabilities (records, labels),
    through the same code as `mlcls predict` (scoring.score_records: tokenize, length-sorted batches, the
    lexical blend where the run has one)."""
    from mlcls.inference import scoring  # looked up at each call, not bound at import: a test may count the calls

    def score(records: list[Record]) -> np.ndarray:
        parts = [probs for _, probs in scoring.score_records(run, records, batch_size, max(1, len(records)))]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    return score


async def warm_up(batcher: DynamicBatcher, run: LoadedRun, max_batch: int) -> None:
    """The largest call the batcher can make (max_batch records of max_length tokens), before the first request:
    its peak working set is taken now, on the worker thread, so memory stays flat under load, and the first full
    batch of real requests does not pay for it. A failure here (out of memory, say) is a warning: single
    records were scored at start already."""
    longest = " ".join(["warm-up"] * run.config.model.max_length)
    records = [Record(id=f"warm-up-{i}", text=longest, labels=None, line=i + 1) for i in range(max_batch)]
    try:
        await batcher.warm_up(records)
    except Exception as exc:
        print(f"warning: scoring one full batch ({max_batch} records of {run.config.model.max_length} tokens) "
              f"failed ({type(exc).__name__}: {exc}); a smaller --max-batch or --batch-size may be needed",
              file=sys.stderr)


def model_card(run: LoadedRun, settings: ServeSettings) -> dict[str, Any]:
    """What /v1/model answers, read once at start-up from the run directory."""
    metrics = None
    with suppress(OSError, ValueError):
        metrics = json.loads((run.path / METRICS).read_text())
    rule = run.thresholds
    config = run.config
    return {
        "name": run.path.name,
        "labels": len(run.labels.labels),
        "encoder": config.model.encoder,
        "max_length": config.model.max_length,
        "device": str(run.device),
        "precision": run.precision,
        "record_format": {"id_field": config.data.id_field, "text_fields": list(config.data.text_fields),
                          "text_separator": config.data.text_separator},
        "decision_rule": {"description": rule.describe(), **asdict(rule)},
        "metrics": metrics,
        "config": json.loads(json.dumps(config.to_dict(), default=str)),  # paths and the like as strings
        "serving": {"max_batch": settings.max_batch, "max_wait_ms": settings.max_wait_ms,
                    "batch_size": inference_batch_size(run.device, settings.batch_size), **asdict(settings.limits),
                    "token_required": settings.token is not None},
    }
