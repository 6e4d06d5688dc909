"""The body of POST /v1/predict, declared once: OPTIONS (and RECORDS_SCHEMA) are what the parser checks and what
the OpenAPI schema (PREDICT_OPENAPI) says, both made from the same declaration, so the docs cannot drift from
what the server accepts.

    {"records": [{"id": ..., "text": ...}, ...], "top_k"?, "threshold"?, "min_labels"?, "scores"?}

The body is read here by hand, not by pydantic: every bad input is a 4xx JSON error naming the field and the
record (an ApiError), never a 500, and records are read as `mlcls predict` reads a JSONL line
(data.records.parse_record, with the run's field names), so that a server answer equals the file answer.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from fastapi import Request

from mlcls.data.ids import shown_id
from mlcls.data.records import FieldSpec, Record, json_type, parse_record
from mlcls.decision.rules import DecisionRule, with_overrides
from mlcls.errors import DataError
from mlcls.inference.predict import parse_scores_mode
from mlcls.serving.api_errors import ApiError
from mlcls.serving.settings import Limits

_PYTHON_TYPES: dict[str, type | tuple[type, ...]] = {"integer": int, "number": (int, float), "string": str}


@dataclass(frozen=True)
class Option:
    """One optional field of the body. The parser's check (`read`) and the OpenAPI schema (`schema`) are both
    made from these fields: a bound changed here changes both."""

    name: str
    type: str  # JSON Schema's name: "integer", "number" or "string"
    description: str
    minimum: float | None = None
    maximum: float | None = None
    pattern: str | None = None  # the whole string must match (anchored, as JSON Schema's pattern is not)
    default: Any = None  # None: null or absent means "the run's own rule", so null is accepted
    expected: str | None = None  # the error's wording, where the bounds do not say it

    def schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": [self.type, "null"] if self.default is None else self.type,
                                  "description": self.description}
        for key in ("minimum", "maximum", "pattern", "default"):
            if getattr(self, key) is not None:
                schema[key] = getattr(self, key)
        return schema

    def read(self, payload: dict) -> Any:
        """The option's value in `payload` (its default when absent), or a 422 naming it."""
        value = payload.get(self.name, self.default)
        if value is None and self.default is None:
            return None
        if not self.accepts(value):
            raise ApiError(422, f"{self.name}: must be {self.wording()}, got {_shown(value)}", field=self.name)
        return value

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, _PYTHON_TYPES[self.type]):
            return False  # (a JSON true is a Python int: refused as a number)
        # `not value >= minimum` rather than `value < minimum`: NaN (which json.loads reads) is in no range
        if (self.minimum is not None and not value >= self.minimum) or \
                (self.maximum is not None and not value <= self.maximum):
            return False
        return self.pattern is None or re.fullmatch(self.pattern, value) is not None

    def wording(self) -> str:
        if self.expected is not None:
            return self.expected
        low, high = self.minimum, self.maximum
        if self.type == "integer" and low is not None and high == low + 1:
            return f"{low:g} or {high:g}"
        kind = "an integer" if self.type == "integer" else "a number"
        return f"{kind} >= {low:g}" if high is None else f"{kind} in [{low:g}, {high:g}]"


OPTIONS = (
    Option("top_k", "integer", "The K best labels per record instead of the run's rule (not with threshold).",
           minimum=1),
    Option("min_labels", "integer", "1: a record left empty gets its best label.", minimum=0, maximum=1),
    Option("threshold", "number", "One fixed cut-off instead of the run's rule (not with top_k).", minimum=0,
           maximum=1),
    # [0-9], not \d: JSON Schema's patterns are ECMA-262, where \d is ASCII only and Python's is not
    Option("scores", "string", "Scores returned: predicted, all, or top-N (e.g. top-5).",
           pattern="^(predicted|all|top-(?!0+$)[0-9]{1,9})$", default="predicted",
           expected="predicted, all or top-N (e.g. top-5)"),
)
FIELDS = ("records", *(option.name for option in OPTIONS))  # every top-level field the body may have

RECORD_SCHEMA = {
    "type": "object",
    "description": "A record as in mlcls's record format: an id and the run's text fields (see /v1/model, "
                   "record_format; by default `title` and `text`, one of them may be missing). Labels are ignored. "
                   "Without an id, the record's position in the list (from 1) stands in.",
    "properties": {"id": {"type": ["string", "integer"]}, "title": {"type": "string"}, "text": {"type": "string"}},
    "additionalProperties": True,
}
RECORDS_SCHEMA = {"type": "array", "items": RECORD_SCHEMA, "minItems": 1}

# the route's openapi_extra: FastAPI sees a bare Request, so the body is described here, from the declaration
PREDICT_OPENAPI = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": {"type": "object", "required": ["records"], "additionalProperties": False,
               "properties": {"records": RECORDS_SCHEMA, **{option.name: option.schema() for option in OPTIONS}}},
    "example": {"records": [{"id": "n1", "title": "Cocoa prices fell", "text": "Cocoa prices fell ..."}],
                "scores": "predicted"},
}}}}

def record_schema(fields: FieldSpec) -> dict[str, Any]:
    """RECORD_SCHEMA with the run's own field names (data.id_field, data.text_fields): what /openapi.json shows
    for a run whose records are, say, `headline` and `body` (the server refuses a record without its text)."""
    properties = {fields.id_field: {"type": ["string", "integer"]},
                  **{name: {"type": "string"} for name in fields.text_fields}}
    named = " and ".join(f"`{name}`" for name in fields.text_fields)
    return {**RECORD_SCHEMA, "properties": properties,
            "description": f"A record as in mlcls's record format: an id (`{fields.id_field}`) and this run's text "
                           f"fields ({named}{'; one of them may be missing' if len(fields.text_fields) > 1 else ''}"
                           "). Labels are ignored. Without an id, the record's position in the list (from 1) stands "
                           "in."}


def record_example(fields: FieldSpec) -> dict[str, Any]:
    texts = ["Cocoa prices fell", "Cocoa prices fell on Monday as ..."]
    return {fields.id_field: "n1", **{name: texts[min(i, 1)] for i, name in enumerate(fields.text_fields)}}


# its 200 answer, for the schema (the handler answers a JSONResponse built by hand, as `mlcls predict` writes rows)
PREDICTIONS_RESPONSE = {"description": "One prediction per record, in order", "content": {"application/json": {
    "schema": {"type": "object", "required": ["predictions"], "properties": {"predictions": {
        "type": "array", "items": {
            "type": "object", "required": ["id", "labels", "scores"],
            "properties": {"id": {"type": "string"}, "labels": {"type": "array", "items": {"type": "string"}},
                           "scores": {"type": "object", "additionalProperties": {"type": "number"}}}}}}}}}}


@dataclass
class PredictRequest:
    records: list[Record]
    rule: DecisionRule
    mode: int | str


def require_json(content_type: str | None) -> None:
    """A 415 unless the body is declared `application/json` (a `charset` parameter, UTF-8, is allowed). So a web
    page cannot make a browser post to a local server: `text/plain` and form posts are CORS "simple" requests,
    sent without asking the server first, and a JSON one is not."""
    media_type, *parameters = (content_type or "").split(";")
    if media_type.strip().lower() != "application/json":
        shown = f"'{content_type}'" if content_type else "none"
        raise ApiError(415, f"Content-Type: expected application/json, got {shown}", field="Content-Type")
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise ApiError(415, f"Content-Type: the body must be UTF-8 JSON, got charset {value.strip()}",
                           field="Content-Type")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused (413) past `limit` bytes: at once by its Content-Length, else while it streams in."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise ApiError(400, f"Content-Length {declared!r} is not a number", field="Content-Length")
        if int(declared) > limit:
            raise ApiError(413, f"body: {int(declared)} bytes, more than the limit of {limit}", field="body")
    from starlette.requests import ClientDisconnect

    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"body: more than the limit of {limit} bytes", field="body")
            chunks.append(chunk)
    except ClientDisconnect:  # hung up mid-upload: nobody to answer (as a client gone while scored: 499)
        raise ApiError(499, "the client closed the connection", field="body") from None
    return b"".join(chunks)


def parse_json(body: bytes) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"body: not valid UTF-8 (byte {exc.start + 1})", field="body") from None
    text = text.lstrip("\ufeff")
    if not text.strip():
        raise ApiError(400, 'body: empty; expected a JSON object {"records": [...]}', field="body")
    repeated: dict[int, tuple[str, dict]] = {}  # id of an object -> (its first key given twice, the object)
    try:
        payload = json.loads(text, object_pairs_hook=partial(_noting_repeats, repeated))
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"body: invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
                       field="body") from None
    except RecursionError:
        raise ApiError(400, "body: invalid JSON: nested too deeply", field="body") from None
    except ValueError as exc:  # a number too long to convert (more than 4300 digits)
        raise ApiError(400, f"body: invalid JSON: {str(exc).split(';')[0]}", field="body") from None
    # At the top level only: {"records": [A], "records": [B]} would drop A unsaid. Within a record, the last value
    # is kept, as `mlcls predict` keeps it from a JSONL line (the server answers as the file is answered).
    if isinstance(payload, dict) and id(payload) in repeated:
        key = shown_id(repeated[id(payload)][0], 40)
        raise ApiError(400, f"body: the key {key} is given twice (the first would be dropped)", field="body")
    return payload


def _noting_repeats(repeated: dict[int, tuple[str, dict]], pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object as json.loads makes it (a key given twice: its last value), its first repeated key noted with
    the object itself, which stays alive so that no later object takes its id."""
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            repeated.setdefault(id(found), (key, found))
        found[key] = value
    return found


def parse_predict_request(payload: Any, fields: FieldSpec, limits: Limits, rule: DecisionRule) -> PredictRequest:
    rows = _record_rows(payload, limits)
    given = {option.name: option.read(payload) for option in OPTIONS}
    threshold, top_k = given["threshold"], given["top_k"]
    if threshold is not None and top_k is not None:
        raise ApiError(422, "threshold and top_k are two different rules: give one of them", field="threshold")
    records = [parse_request_record(row, index, fields, limits) for index, row in enumerate(rows)]
    # (the pattern of `scores` admits exactly what parse_scores_mode reads)
    return PredictRequest(records, with_overrides(rule, threshold, top_k, given["min_labels"]),
                          parse_scores_mode(given["scores"]))


def _record_rows(payload: Any, limits: Limits) -> list:
    """The body's list of records, before any record is read: an object with known fields only, and a list of
    1 to max_records rows in it."""
    if not isinstance(payload, dict):
        raise ApiError(422, f'body: expected a JSON object {{"records": [...]}}, got {json_type(payload)}',
                       field="body")
    unknown = [key for key in payload if key not in FIELDS]
    if unknown:  # the client's key, shown short and printable (it may be megabytes, or hold a lone surrogate)
        key = unknown[0]
        raise ApiError(422, f"unknown field {shown_id(key, 40)} (expected: {', '.join(FIELDS)})",
                       field=key if len(key) <= 40 else key[:37] + "...")
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
    return rows


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


def _shown(value: Any) -> str:
    try:
        text = json.dumps(value)
    except (RecursionError, ValueError):  # nested as deep as the parser allowed (a few frames more here); an
        return f"a nested {type(value).__name__}"  # integer too long to print
    return text if len(text) <= 40 else text[:37] + "..."
