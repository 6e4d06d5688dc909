"""The FastAPI app of `mlcls serve`.

    POST /v1/predict  {"records": [{"id": ..., "text": ...}, ...], "top_k"?, "threshold"?, "min_labels"?, "scores"?}
                      -> {"predictions": [one row per record, in order: exactly the line `mlcls predict` writes]}
    GET  /v1/labels   the label vocabulary
    GET  /v1/model    the run: name, encoder, record format, decision rule, validation metrics, config, limits
    GET  /health      the process answers (never needs the token)
    GET  /ready       the model is loaded and the batcher takes work (503 while starting or draining); the records
                      scored so far and in how many batches
    GET  /docs, /openapi.json   FastAPI's interactive docs and OpenAPI schema

Records are read as `mlcls predict` reads a JSONL line (data.records.parse_record, with the run's field names),
so a server answer equals the file answer. The body is parsed here, not by pydantic: every bad input is a 4xx
JSON error {"error": {"status", "message", "field", "index"}} naming the field and the record, never a 500.
"""

from __future__ import annotations

import hmac
import json
from contextlib import asynccontextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from mlcls.data.records import FieldSpec, Record, json_type, parse_record
from mlcls.decision.rules import DecisionRule, with_overrides
from mlcls.errors import DataError, MlclsError
from mlcls.inference.loading import LoadedRun
from mlcls.inference.predict import parse_scores_mode, prediction_row
from mlcls.inference.scoring import inference_batch_size
from mlcls.run.layout import METRICS
from mlcls.serving.batcher import DynamicBatcher, NotRunning
from mlcls.serving.settings import Limits, ServeSettings

OPTIONS = ("records", "top_k", "threshold", "min_labels", "scores")


class ApiError(Exception):
    """A request we refuse: status, a message for the client, the field (and record index) at fault."""

    def __init__(self, status: int, message: str, field: str | None = None, index: int | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.field, self.index, self.headers = status, message, field, index, headers


def error_response(status: int, message: str, field: str | None = None, index: int | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"status": status, "message": message, "field": field, "index": index}},
                        status_code=status, headers=headers)


@dataclass
class PredictRequest:
    records: list[Record]
    rule: DecisionRule
    mode: int | str


def scorer(run: LoadedRun, batch_size: int | None):
    """The scoring function the batcher calls on its worker thread: records -> probabilities (records, labels),
    through the same code as `mlcls predict` (scoring.score_records: tokenize, length-sorted batches, the
    lexical blend where the run has one)."""
    from mlcls.inference import scoring  # looked up at each call: a test may count the calls

    def score(records: list[Record]) -> np.ndarray:
        parts = [probs for _, probs in scoring.score_records(run, records, batch_size, max(1, len(records)))]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    return score


async def warm_up(batcher: DynamicBatcher, run: LoadedRun, max_batch: int) -> None:
    """The largest call the batcher can make (max_batch records of max_length tokens), before the first request:
    its peak working set is taken now, on the worker thread, so memory stays flat under load, and the first full
    batch of real requests does not pay for it. A failure here (out of memory, say) is a warning: single
    records were scored at start already."""
    import sys

    longest = " ".join(["warm-up"] * run.config.model.max_length)
    records = [Record(id=f"warm-up-{i}", text=longest, labels=None, line=i + 1) for i in range(max_batch)]
    try:
        await batcher.warm_up(records)
    except Exception as exc:
        print(f"warning: scoring one full batch ({max_batch} records of {run.config.model.max_length} tokens) "
              f"failed ({type(exc).__name__}: {exc}); a smaller --max-batch or --batch-size may be needed",
              file=sys.stderr)


def create_app(run: LoadedRun, settings: ServeSettings | None = None) -> FastAPI:
    settings = settings or ServeSettings()
    limits = settings.limits
    labels = run.labels.labels
    fields = FieldSpec.from_config(run.config.data)
    batcher = DynamicBatcher(scorer(run, settings.batch_size), settings.max_batch, settings.max_wait_ms / 1000)
    card = model_card(run, settings)
    state = {"draining": False}

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        await batcher.start()
        if settings.warm_up:
            await warm_up(batcher, run, settings.max_batch)
        try:
            yield
        finally:
            state["draining"] = True
            await batcher.stop()

    app = FastAPI(
        title="mlcls serve",
        summary=f"Multi-label text classification with the run {run.path.name}",
        description="Tags records (an `id` and text fields, as in mlcls's record format) with zero, one or "
                    "many labels. Requests that arrive together are scored together. Errors: "
                    '`{"error": {"status", "message", "field", "index"}}`.',
        version="1",
        lifespan=lifespan,
    )
    app.state.batcher = batcher
    app.state.serving = state

    auth: list[Any] = []
    if settings.token is not None:
        expected = settings.token.encode()
        bearer = Depends(HTTPBearer(auto_error=False, description="The token of `mlcls serve --token-file`."))

        def require_token(credentials: HTTPAuthorizationCredentials | None = bearer) -> None:
            if credentials is None or not hmac.compare_digest(credentials.credentials.encode(), expected):
                raise ApiError(401, "missing or wrong bearer token: send 'Authorization: Bearer TOKEN'",
                               field="Authorization", headers={"WWW-Authenticate": "Bearer"})

        auth = [Depends(require_token)]

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.field, exc.index, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        return error_response(422, f"{where}: {first.get('msg', 'invalid request')}", where or None)

    @app.exception_handler(Exception)
    async def _internal_error(_request: Request, exc: Exception) -> JSONResponse:  # a bug of ours, still JSON
        return error_response(500, f"internal error: {type(exc).__name__}: {exc}")

    @app.post("/v1/predict", dependencies=auth, tags=["predict"], openapi_extra=PREDICT_OPENAPI,
              responses=ERROR_RESPONSES)
    async def predict(request: Request) -> JSONResponse:
        """Tag a batch of records: one prediction per record, in order, exactly as `mlcls predict` writes it."""
        payload = parse_json(await read_body(request, limits.max_body_bytes))
        asked = parse_predict_request(payload, fields, limits, run.thresholds)
        try:
            probs = await batcher.score(asked.records)
        except NotRunning as exc:
            raise ApiError(503, str(exc)) from None
        chosen = asked.rule.apply(probs, labels)
        rows = [prediction_row(record, probs[i], chosen[i], labels, asked.mode)
                for i, record in enumerate(asked.records)]
        return JSONResponse({"predictions": rows})

    @app.get("/v1/labels", dependencies=auth, tags=["model"], responses=ERROR_RESPONSES)
    async def labels_() -> dict[str, Any]:
        """The label vocabulary of the run, in the order of `--scores all`."""
        return {"labels": labels, "count": len(labels)}

    @app.get("/v1/model", dependencies=auth, tags=["model"], responses=ERROR_RESPONSES)
    async def model() -> dict[str, Any]:
        """The run: encoder, record format, decision rule, validation metrics, config, and the server's limits."""
        return card

    @app.get("/health", tags=["service"])
    async def health() -> dict[str, str]:
        """The process answers. No token needed."""
        return {"status": "ok"}

    @app.get("/ready", dependencies=auth, tags=["service"], responses={503: {"description": "Not ready"}})
    async def ready() -> JSONResponse:
        """The model is loaded and predictions are taken (503 while starting or draining); with the records
        scored so far, the number of scoring calls (batches) they took, and the records waiting now."""
        scored = {"records": batcher.stats.records, "batches": batcher.stats.calls, "queued": batcher.queued}
        if batcher.running and not state["draining"]:
            return JSONResponse({"ready": True, "run": run.path.name, "scored": scored})
        return JSONResponse({"ready": False, "run": run.path.name, "scored": scored}, status_code=503)

    return app


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
        "config": _jsonable(config.to_dict()),
        "serving": {"max_batch": settings.max_batch, "max_wait_ms": settings.max_wait_ms,
                    "batch_size": inference_batch_size(run.device, settings.batch_size), **asdict(settings.limits),
                    "token_required": settings.token is not None},
    }


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


# ------------------------------------------------------------------ reading a request


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused (413) past `limit` bytes: at once by its Content-Length, else while it streams in."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise ApiError(400, f"Content-Length {declared!r} is not a number", field="Content-Length")
        if int(declared) > limit:
            raise ApiError(413, f"body: {int(declared)} bytes, more than the limit of {limit}", field="body")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"body: more than the limit of {limit} bytes", field="body")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(body: bytes) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"body: not valid UTF-8 (byte {exc.start + 1})", field="body") from None
    text = text.lstrip("\ufeff")
    if not text.strip():
        raise ApiError(400, 'body: empty; expected a JSON object {"records": [...]}', field="body")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"body: invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
                       field="body") from None
    except RecursionError:
        raise ApiError(400, "body: invalid JSON: nested too deeply", field="body") from None
    except ValueError as exc:  # a number too long to convert (more than 4300 digits)
        raise ApiError(400, f"body: invalid JSON: {str(exc).split(';')[0]}", field="body") from None


def parse_predict_request(payload: Any, fields: FieldSpec, limits: Limits, rule: DecisionRule) -> PredictRequest:
    if not isinstance(payload, dict):
        raise ApiError(422, f'body: expected a JSON object {{"records": [...]}}, got {json_type(payload)}',
                       field="body")
    unknown = [key for key in payload if key not in OPTIONS]
    if unknown:
        raise ApiError(422, f"unknown field '{unknown[0]}' (expected: {', '.join(OPTIONS)})", field=str(unknown[0]))
    if "records" not in payload:
        raise ApiError(422, "records: missing (a list of records, each with an id and text fields)", field="records")
    rows = payload["records"]
    if not isinstance(rows, list):
        raise ApiError(422, f"records: must be a list of record objects, got {json_type(rows)}", field="records")
    if not rows:
        raise ApiError(422, "records: empty list; send at least one record", field="records")
    if len(rows) > limits.max_records:
        raise ApiError(413, f"records: {len(rows)} records, more than the limit of {limits.max_records} per request",
                       field="records")
    top_k = _option_int(payload, "top_k", 1, None)
    min_labels = _option_int(payload, "min_labels", 0, 1)
    threshold = payload.get("threshold")
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, int | float)
                                  or not 0.0 <= threshold <= 1.0):
        raise ApiError(422, f"threshold: must be a number in [0, 1], got {_shown(threshold)}", field="threshold")
    if threshold is not None and top_k is not None:
        raise ApiError(422, "threshold and top_k are two different rules: give one of them", field="threshold")
    scores = payload.get("scores", "predicted")
    mode: int | str | None = None
    if isinstance(scores, str):
        with suppress(MlclsError):
            mode = parse_scores_mode(scores)
    if mode is None:
        raise ApiError(422, f"scores: expected predicted, all or top-N (e.g. top-5), got {_shown(scores)}",
                       field="scores")
    records = [parse_request_record(row, index, fields, limits) for index, row in enumerate(rows)]
    return PredictRequest(records, with_overrides(rule, threshold, top_k, min_labels), mode)


def parse_request_record(row: Any, index: int, fields: FieldSpec, limits: Limits) -> Record:
    """One record, read as `mlcls predict` reads a JSONL line (a missing id becomes its position, from 1, as a
    line number does in a file); a bad one is a 422 naming records[index] and the field."""
    where = f"records[{index}]"
    try:
        record = parse_record(row, Path("records"), index + 1, fields, require_labels=False)
    except DataError as exc:
        field = _field_at_fault(row, fields, exc)
        raise ApiError(422, f"{where}: {exc.problem}", field=f"{where}.{field}" if field else where,
                       index=index) from None
    try:  # (parse_record refuses a text with one already)
        record.id.encode("utf-8")
    except UnicodeEncodeError as exc:  # JSON's "\ud800" escapes decode to lone surrogates, which are not text
        raise ApiError(422, f"{where}: id holds a lone surrogate ({record.id[exc.start]!a}), not text",
                       field=f"{where}.{fields.id_field}", index=index) from None
    if len(record.text) > limits.max_text_chars:
        raise ApiError(413, f"{where}: text of {len(record.text)} characters, more than the limit of "
                       f"{limits.max_text_chars}", field=f"{where}.{fields.text_fields[-1]}", index=index)
    return record


def _field_at_fault(row: Any, fields: FieldSpec, exc: DataError) -> str | None:
    if not isinstance(row, dict):
        return None
    if exc.reason == "bad id":
        return fields.id_field
    for name in fields.text_fields:  # the first text field that is there and not a string
        if row.get(name) is not None and not isinstance(row[name], str):
            return name
    return "|".join(fields.text_fields)  # missing or empty text: the text field(s)


def _option_int(payload: dict, name: str, low: int, high: int | None) -> int | None:
    value = payload.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bounds = f"{low} or {high}" if high == low + 1 else f"an integer >= {low}" if high is None else \
            f"an integer in [{low}, {high}]"
        raise ApiError(422, f"{name}: must be {bounds}, got {_shown(value)}", field=name)
    return value



def _shown(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


# ------------------------------------------------------------------ OpenAPI: the body is read by hand, described here

_RECORD_SCHEMA = {
    "type": "object",
    "description": "A record as in mlcls's record format: an id and the run's text fields (see /v1/model, "
                   "record_format; by default `title` and `text`, one of them may be missing). Labels are ignored. "
                   "Without an id, the record's position in the list (from 1) stands in.",
    "properties": {"id": {"type": ["string", "integer"]}, "title": {"type": "string"}, "text": {"type": "string"}},
    "additionalProperties": True,
}
PREDICT_OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {
            "schema": {
                "type": "object",
                "required": ["records"],
                "additionalProperties": False,
                "properties": {
                    "records": {"type": "array", "items": _RECORD_SCHEMA, "minItems": 1},
                    "top_k": {"type": "integer", "minimum": 1, "description": "The K best labels per record "
                              "instead of the run's rule."},
                    "threshold": {"type": "number", "minimum": 0, "maximum": 1,
                                  "description": "One fixed cut-off instead of the run's rule."},
                    "min_labels": {"type": "integer", "enum": [0, 1],
                                   "description": "1: a record left empty gets its best label."},
                    "scores": {"type": "string", "default": "predicted", "description": "Scores returned: "
                               "predicted, all, or top-N (e.g. top-5)."},
                },
            },
            "example": {"records": [{"id": "n1", "title": "Cocoa prices fell", "text": "Cocoa prices fell ..."}],
                        "scores": "predicted"},
        }},
    },
}
_ERROR_SCHEMA = {"content": {"application/json": {"schema": {"type": "object", "properties": {"error": {
    "type": "object", "properties": {"status": {"type": "integer"}, "message": {"type": "string"},
                                     "field": {"type": ["string", "null"]}, "index": {"type": ["integer", "null"]}},
}}}}}}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "Not UTF-8, not JSON", **_ERROR_SCHEMA},
    401: {"description": "Missing or wrong bearer token", **_ERROR_SCHEMA},
    413: {"description": "Over a limit: body size, records per request, text size", **_ERROR_SCHEMA},
    422: {"description": "A wrong type, missing text, an empty list, a bad option", **_ERROR_SCHEMA},
}
