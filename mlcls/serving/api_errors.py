"""Every answer of `mlcls serve` that is not a success has one shape, whoever refused the request:

    {"error": {"status": 422, "message": "records[2]: ...", "field": "records[2].text", "index": 2}}

so that a client reads one format for our own refusals (ApiError), FastAPI's (an unknown path, a wrong method,
a parameter FastAPI validates) and a bug of ours (500): a client never has to parse an HTML page or a
`{"detail": ...}`.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


class ApiError(Exception):
    """A request we refuse: status, a message for the client, the field (and record index) at fault."""

    def __init__(self, status: int, message: str, field: str | None = None, index: int | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.field, self.index, self.headers = status, message, field, index, headers


class AsciiJSONResponse(JSONResponse):
    """JSON with every non-ASCII character escaped: an error message may quote what the client sent, a lone
    surrogate included, which UTF-8 cannot encode (the refusal would itself fail, as a 500)."""

    def render(self, content: Any) -> bytes:
        import json

        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def error_response(status: int, message: str, field: str | None = None, index: int | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return AsciiJSONResponse({"error": {"status": status, "message": message, "field": field, "index": index}},
                             status_code=status, headers=headers)


async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
    return error_response(exc.status, exc.message, exc.field, exc.index, exc.headers)


async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return error_response(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))


async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(part) for part in first.get("loc", ()))
    return error_response(422, f"{where}: {first.get('msg', 'invalid request')}", where or None)


async def _internal_error(_request: Request, exc: Exception) -> JSONResponse:  # a bug of ours, still JSON
    return error_response(500, f"internal error: {type(exc).__name__}: {exc}")


# FastAPI(exception_handlers=...): every exception, ours or the framework's, becomes the one error shape
EXCEPTION_HANDLERS: dict[Any, Any] = {
    ApiError: _api_error,
    StarletteHTTPException: _http_error,
    RequestValidationError: _validation_error,
    Exception: _internal_error,
}

_ERROR_SCHEMA = {"content": {"application/json": {"schema": {"type": "object", "properties": {"error": {
    "type": "object", "properties": {"status": {"type": "integer"}, "message": {"type": "string"},
                                     "field": {"type": ["string", "null"]}, "index": {"type": ["integer", "null"]}},
}}}}}}
# the error answers the endpoints document in OpenAPI (the body is read by hand, so FastAPI cannot infer them):
# GUARDED_RESPONSES for every endpoint behind the token, ERROR_RESPONSES for POST /v1/predict
GUARDED_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or wrong bearer token", **_ERROR_SCHEMA},
}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    **GUARDED_RESPONSES,
    400: {"description": "Not UTF-8, not JSON, or a top-level key given twice", **_ERROR_SCHEMA},
    413: {"description": "Over a limit: body size, records per request, text size", **_ERROR_SCHEMA},
    415: {"description": "The body is not declared Content-Type: application/json", **_ERROR_SCHEMA},
    422: {"description": "A wrong type, missing text, an empty list, a bad option", **_ERROR_SCHEMA},
    503: {"description": "Starting, or shutting down (with Retry-After)", **_ERROR_SCHEMA},
}
