"""The endpoints of `mlcls serve`, at module level: each handler reads what it needs from `request.app.state`,
which create_app fills (run, settings, fields, batcher, card, draining).

Two routers, so that create_app can put the bearer token on every endpoint but /health (a load balancer's probe
carries no token): `guarded` takes the token's dependency when the server has a token, `public` never does.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from mlcls.inference.predict import prediction_row
from mlcls.serving.api_errors import ERROR_RESPONSES, GUARDED_RESPONSES, ApiError
from mlcls.serving.batcher import NotRunning
from mlcls.serving.drain import RETRY_AFTER_SECONDS, finished_before
from mlcls.serving.request import (
    PREDICT_OPENAPI,
    PREDICTIONS_RESPONSE,
    parse_json,
    parse_predict_request,
    read_body,
    require_json,
)

T = TypeVar("T")
guarded = APIRouter()
public = APIRouter()

# auto_error=False: a missing token is our 401 in the one error shape, not FastAPI's 403
_bearer = HTTPBearer(auto_error=False, description="The token of `mlcls serve --token-file`.")


def require_token(request: Request,
                  credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    """The dependency create_app puts on `guarded` when the server has a token."""
    expected = request.app.state.settings.token.encode()
    # compare_digest: the time taken does not tell how much of a guessed token was right
    if credentials is None or not hmac.compare_digest(credentials.credentials.encode(), expected):
        raise ApiError(401, "missing or wrong bearer token: send 'Authorization: Bearer TOKEN'",
                       field="Authorization", headers={"WWW-Authenticate": "Bearer"})


@guarded.post("/v1/predict", tags=["predict"], openapi_extra=PREDICT_OPENAPI,
               responses={200: PREDICTIONS_RESPONSE, **ERROR_RESPONSES})
async def predict(request: Request) -> JSONResponse:
    """Tag a batch of records: one prediction per record, in order, exactly as `mlcls predict` writes it."""
    state = request.app.state
    limits = state.settings.limits
    require_json(request.headers.get("content-type"))
    payload = parse_json(await read_body(request, limits.max_body_bytes))
    asked = parse_predict_request(payload, state.fields, limits, state.run.thresholds)
    try:
        # the connection as the source: a client that asks again on each answer is waited for (batcher.py)
        probs = await while_connected(request, state.batcher.score(asked.records, source=request.client))
    except ClientGone:  # nobody to answer: its records still queued were dropped, not scored
        return JSONResponse({"error": {"status": 499, "message": "the client closed the connection"}},
                            status_code=499)
    except NotRunning as exc:
        raise ApiError(503, str(exc), headers={"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
    labels = state.run.labels.labels
    chosen = asked.rule.apply(probs, labels)
    rows = [prediction_row(record, probs[i], chosen[i], labels, asked.mode) for i, record in enumerate(asked.records)]
    return JSONResponse({"predictions": rows})


class ClientGone(Exception):
    """The client of a request closed its connection before the answer."""


async def while_connected(request: Request, work: Awaitable[T]) -> T:
    """`work`'s result, or ClientGone once the client hangs up first; `work` is then cancelled, which drops its
    records still queued in the batcher. uvicorn does not cancel a handler whose client left: without this, a
    client that timed out and asked again had its records scored twice, and everyone else waited behind them.
    The request's body is read by then, so the next ASGI message is the disconnect (or the end of the answer)."""
    task = asyncio.ensure_future(work)

    async def disconnect() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    if await finished_before(task, disconnect()):
        return task.result()
    raise ClientGone


@guarded.get("/v1/labels", tags=["model"], responses=GUARDED_RESPONSES)
async def labels(request: Request) -> dict[str, Any]:
    """The label vocabulary of the run, in the order of `--scores all`."""
    vocabulary = request.app.state.run.labels.labels
    return {"labels": vocabulary, "count": len(vocabulary)}


@guarded.get("/v1/model", tags=["model"], responses=GUARDED_RESPONSES)
async def model(request: Request) -> dict[str, Any]:
    """What a client needs of the run: encoder, record format, decision rule, validation metrics, precision,
    versions, and the server's limits."""
    return request.app.state.card


@guarded.get("/ready", tags=["service"], responses={**GUARDED_RESPONSES, 503: {"description": "Not ready"}})
async def ready(request: Request) -> JSONResponse:
    """The model is loaded and predictions are taken (503 while starting or draining); with the records
    scored so far, the number of scoring calls (batches) they took, the seconds the model spent in them, and the
    records waiting now."""
    state = request.app.state
    batcher = state.batcher
    scored = {"records": batcher.stats.records, "batches": batcher.stats.calls,
              "busy_seconds": round(batcher.stats.busy_seconds, 6), "queued": batcher.queued}
    taking = batcher.running and not state.draining
    return JSONResponse({"ready": taking, "run": state.run.path.name, "scored": scored},
                        status_code=200 if taking else 503)


# HEAD too: some load balancers' probes (and `curl -I`) ask with HEAD, which a GET-only route answers 405. Kept
# out of the OpenAPI schema: the schema's HEAD would be a second operation with nothing to say of its own.
@public.head("/health", include_in_schema=False)
@public.get("/health", tags=["service"])
async def health() -> dict[str, str]:
    """The process answers. No token needed."""
    return {"status": "ok"}
