"""The FastAPI app of `mlcls serve`: create_app wires the run, the settings, the batcher and the routes together.

    POST /v1/predict  {"records": [{"id": ..., "text": ...}, ...], "top_k"?, "threshold"?, "min_labels"?, "scores"?}
                      -> {"predictions": [one row per record, in order: exactly the line `mlcls predict` writes]}
    GET  /v1/labels   the label vocabulary
    GET  /v1/model    what a client needs of the run: name, encoder, record format, decision rule, validation
                      metrics, precision, versions, limits (no paths of the machine it was trained on)
    GET  /health      the process answers (never needs the token)
    GET  /ready       the model is loaded and the batcher takes work (503 while starting or draining); the records
                      scored so far and in how many batches
    GET  /docs, /redoc, /openapi.json   the interactive docs (their assets served here: docs_pages.py) and the
                      OpenAPI schema

The handlers are in routes.py, the request body's declaration and parser in request.py, the error shape in
api_errors.py; every bad input is a 4xx JSON error {"error": {"status", "message", "field", "index"}}. Around
it all, drain.py's middleware answers 503 to what SIGTERM's drain time leaves unfinished.
"""

from __future__ import annotations

import asyncio
import copy
import json
import sys
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from dataclasses import asdict
from functools import partial
from pathlib import PurePath
from typing import Any

import numpy as np
from fastapi import Depends, FastAPI

from mlcls import __version__
from mlcls.data.records import FieldSpec, Record
from mlcls.inference.loading import LoadedRun
from mlcls.inference.scoring import inference_batch_size
from mlcls.run.layout import METRICS
from mlcls.serving import routes
from mlcls.serving.api_errors import EXCEPTION_HANDLERS
from mlcls.serving.batcher import DynamicBatcher
from mlcls.serving.docs_pages import add_docs
from mlcls.serving.drain import Drain, DrainDeadline
from mlcls.serving.request import record_example, record_schema
from mlcls.serving.settings import ServeSettings

API_VERSION = "1"


def create_app(run: LoadedRun, settings: ServeSettings | None = None,
               inference: ThreadPoolExecutor | None = None) -> FastAPI:
    """The app serving `run`; its state (read by the handlers in routes.py) is set here, once. `inference`: the
    thread that loaded `run` and runs every scoring call (server.py); None: the batcher starts one of its own."""
    settings = settings or ServeSettings()
    app = FastAPI(
        title="mlcls serve",
        summary=f"Multi-label text classification with the run {run.path.name}",
        description="Tags records (an `id` and text fields, as in mlcls's record format) with zero, one or "
                    "many labels. Requests that arrive together are scored together. Errors: "
                    '`{"error": {"status", "message", "field", "index"}}`.',
        version=API_VERSION,
        lifespan=lifespan,
        exception_handlers=EXCEPTION_HANDLERS,
        docs_url=None,  # docs_pages.add_docs: the same pages, their scripts served here instead of from a CDN
        redoc_url=None,
    )
    app.state.run = run
    app.state.settings = settings
    app.state.fields = FieldSpec.from_config(run.config.data)
    app.state.batcher = DynamicBatcher(scorer(run, settings.batch_size), settings.max_batch,
                                       settings.max_wait_ms / 1000, inference)
    app.state.card = model_card(run, settings)
    app.state.draining = False  # set from SIGTERM on (server.py): /ready answers 503 while requests finish
    app.state.drain = Drain(settings.drain_seconds)  # started by SIGTERM (server.py)
    app.add_middleware(DrainDeadline, drain=app.state.drain)
    # without a token the dependency is left out altogether, so that the docs show no security scheme
    auth = [Depends(routes.require_token)] if settings.token is not None else []
    app.include_router(routes.guarded, dependencies=auth)
    app.include_router(routes.public)
    add_docs(app)
    app.openapi = partial(run_openapi, app, app.openapi)
    return app


def run_openapi(app: FastAPI, base: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """FastAPI's schema, its record made of the run's own field names (the route's declaration is the module's,
    written for the default `title` and `text`): a client built from /openapi.json sends what the server reads."""
    if app.openapi_schema is None:
        schema = copy.deepcopy(base())  # the route's openapi_extra dicts are shared by every app: copied first
        body = schema["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["application/json"]
        body["schema"]["properties"]["records"]["items"] = record_schema(app.state.fields)
        body["example"] = {**body["example"], "records": [record_example(app.state.fields)]}
        app.openapi_schema = schema
    return app.openapi_schema


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """The batcher runs while the app does; at shutdown (after uvicorn has answered the requests in flight) it
    finishes what is queued and stops."""
    batcher, settings = app.state.batcher, app.state.settings
    app.state.drain.bind(asyncio.get_running_loop())
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
    by `mlcls predict`'s own scoring step (scoring.score_chunk: windows sorted by length into forward passes of
    predict's batch size and padding, pooled per article, the lexical blend where the run has one, in order)."""
    from mlcls.inference import scoring  # looked up at each call, not bound at import: a test may count the calls

    def score(records: list[Record]) -> np.ndarray:
        return scoring.score_chunk(run, records, batch_size)

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
    """What /v1/model answers, read once at start-up from the run directory: what a client needs to send records
    and read the answers, never the training machine's paths (the config and provenance files hold the data
    files' absolute paths: they stay in the run directory)."""
    metrics = None
    with suppress(OSError, ValueError):
        metrics = json.loads((run.path / METRICS).read_text())
    rule = run.thresholds
    config = run.config
    return {
        "name": run.path.name,
        "mlcls_version": __version__,
        "api_version": API_VERSION,
        "labels": len(run.labels.labels),
        "encoder": shown_name(str(config.model.encoder)),
        "max_length": config.model.max_length,
        "device": str(run.device),
        "precision": run.precision,
        "record_format": {"id_field": config.data.id_field, "text_fields": list(config.data.text_fields),
                          "text_separator": config.data.text_separator},
        "decision_rule": {"description": rule.describe(), **asdict(rule)},
        "metrics": without_paths(metrics),
        "serving": {"max_batch": settings.max_batch, "max_wait_ms": settings.max_wait_ms,
                    "batch_size": inference_batch_size(run.device, settings.batch_size), **asdict(settings.limits),
                    "drain_seconds": settings.drain_seconds, "token_required": settings.token is not None},
    }


def shown_name(value: str) -> str:
    """A Hub id as it is ("sentence-transformers/all-MiniLM-L6-v2"); a local folder by its last part only."""
    looks_local = value.startswith(("/", "~", ".", "\\")) or PurePath(value).is_absolute() or "\\" in value
    return PurePath(value.replace("\\", "/")).name if looks_local else value


def without_paths(value: Any) -> Any:
    """`value` (parsed JSON) with every absolute path in it cut to its last part."""
    if isinstance(value, dict):
        return {key: without_paths(item) for key, item in value.items()}
    if isinstance(value, list):
        return [without_paths(item) for item in value]
    if isinstance(value, str) and ("/" in value or "\\" in value):
        return shown_name(value)
    return value
