"""JSON request bodies validated straight from the bytes.

FastAPI decodes a declared body model with the standard `json` module and then validates the
resulting objects: two passes over every message of a conversation. `read_json_body` lets
pydantic-core parse and validate in one pass (about half the CPU for our bodies) and answers as
FastAPI does: a 422 with field errors under `body`, or a 400 when the bytes are not UTF-8 or
nest too deeply to parse. `json_body_doc` keeps the model in the OpenAPI document, and
`validation_details` renders field errors safely, whatever the client sent.
"""

from __future__ import annotations

import email.message
import math
from collections.abc import Sequence
from typing import Any, TypeVar

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)

#: Where `json_body_doc` declares the schemas; `add_body_schemas` puts them there.
_REF = "#/components/schemas/{model}"
_DOCUMENTED: list[type[BaseModel]] = []


def json_body_doc(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` of a route that reads `model` with `read_json_body`."""
    _DOCUMENTED.append(model)
    schema = {"$ref": _REF.format(model=model.__name__)}
    return {"requestBody": {"content": {"application/json": {"schema": schema}}, "required": True}}


def validation_error_doc(description: str) -> dict[str, Any]:
    """The documented `422` of a route that reads its body with `read_json_body` (FastAPI
    declares it only for the bodies it validates itself)."""
    return {
        "description": description,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}
        },
    }


def add_body_schemas(document: dict[str, Any]) -> dict[str, Any]:
    """Add the models of `json_body_doc` routes (and the models they use) to `document`."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for model in _DOCUMENTED:
        schema = model.model_json_schema(ref_template=_REF, mode="validation")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return document


async def read_json_body(
    request: Request, model: type[M], context: dict[str, Any] | None = None
) -> M:
    """`model` from the request's bytes; `context` reaches the model's validators."""
    body = await request.body()
    if not body:
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
        )
    if not _is_json(request.headers.get("content-type")):
        raise RequestValidationError(
            [
                {
                    "type": "model_attributes_type",
                    "loc": ("body",),
                    "msg": "Input should be a valid dictionary or object to extract fields from",
                    "input": None,
                }
            ]
        )
    try:
        return model.model_validate_json(body, context=context)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
    if errors and errors[0]["type"] == "json_invalid":
        if _unparseable(body, errors[0]["msg"]):
            raise HTTPException(400, "There was an error parsing the body")
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body",),
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": errors[0]["msg"].removeprefix("Invalid JSON: ")},
                }
            ]
        )
    raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors])


def _is_json(content_type: str | None) -> bool:
    """application/json or application/*+json, parameters allowed (as FastAPI decides)."""
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    if message.get_content_maintype() != "application":
        return False
    subtype = message.get_content_subtype()
    return subtype == "json" or subtype.endswith("+json")


def _unparseable(body: bytes, reason: str) -> bool:
    """Not a syntax error the client can fix field by field: bad UTF-8, or nested too deep."""
    if "recursion limit" in reason:
        return True
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


_MAX_ECHO_CHARS = 200


def validation_details(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """FastAPI's field-level 422 details, made safe to render whatever the client sent.

    The default handler echoes each invalid input in full, and fails (a 500) on what JSON
    cannot carry: unpaired surrogates, NaN, integers beyond 64 bits, very deep nesting. Here
    scalar inputs are echoed (long strings cut short), containers are not, and every string is
    made valid UTF-8.
    """
    details = []
    for error in errors:
        item: dict[str, Any] = {
            "type": safe_text(str(error.get("type", "value_error"))),
            "loc": [p if isinstance(p, int) else safe_text(str(p)) for p in error.get("loc", ())],
            "msg": safe_text(str(error.get("msg", ""))),
        }
        if "input" in error and _is_scalar(error["input"]):
            item["input"] = _scalar(error["input"])
        ctx = error.get("ctx")
        if isinstance(ctx, dict):
            item["ctx"] = {
                safe_text(str(k)): _scalar(v) if _is_scalar(v) else safe_text(str(v))
                for k, v in ctx.items()
            }
        details.append(item)
    return details


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float)


def _scalar(value: Any) -> Any:
    if isinstance(value, str):
        return safe_text(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**63 else safe_text(str(value))
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def safe_text(value: str) -> str:
    """`value` cut to 200 characters and made valid UTF-8: safe to echo in an answer."""
    if len(value) > _MAX_ECHO_CHARS:
        value = value[:_MAX_ECHO_CHARS] + "…"
    return value.encode("utf-8", "backslashreplace").decode("utf-8")
