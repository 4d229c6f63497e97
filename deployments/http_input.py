"""What a request sends, read and validated before any handler logic: a JSON body within the size and
time limits (parsed beside the event loop when large), or a query string, into the endpoint's pydantic
model; every problem a 400 (413, 408) that names the key."""

import asyncio
import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from core.errors import BadRequest, PayloadTooLarge, RequestTimeout
from core.settings import Limits

Model = TypeVar("Model", bound=BaseModel)
PARSE_ON_LOOP_BELOW = 64 * 1024
_TYPE_WORDS = {"string_type": "a string", "bool_type": "true or false", "dict_type": "an object"}


def _first_problem(exc: ValidationError, where: str) -> str:
    error = exc.errors()[0]
    key = ".".join(str(part) for part in error["loc"]) or where
    if error["type"] == "extra_forbidden":
        return f"Unknown key {key!r} in the {where}."
    if error["type"] == "missing":
        return f"Missing required key {key!r} in the {where}."
    expected = _TYPE_WORDS.get(error["type"], error["msg"].lower())
    return f"Key {key!r} in the {where} must be {expected}."


async def json_body(request: Request, model: type[Model], limits: Limits) -> Model:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise BadRequest("Content-Type must be application/json.")
    most = limits.max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > most:
        raise PayloadTooLarge(f"Request body is larger than the limit of {most} bytes.")
    body = bytearray()
    try:
        async with asyncio.timeout(limits.body_read_timeout_s):
            async for chunk in request.stream():
                body += chunk
                if len(body) > most:
                    raise PayloadTooLarge(f"Request body is larger than the limit of {most} bytes.")
    except TimeoutError:
        raise RequestTimeout(f"The request body did not arrive within {limits.body_read_timeout_s:g} s.") from None
    try:  # a page's image is megabytes of JSON: parsed beside the event loop, which keeps serving
        data = json.loads(body) if len(body) < PARSE_ON_LOOP_BELOW else await asyncio.to_thread(json.loads, body)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("Request body is not valid JSON.") from None
    except RecursionError:
        raise BadRequest("Request body is nested too deeply.") from None
    if not isinstance(data, dict):
        raise BadRequest("Request body must be a JSON object.")
    return _validated(model, data, "request body")


def query(request: Request, model: type[Model]) -> Model:
    return _validated(model, dict(request.query_params), "query string")


def _validated(model: type[Model], data: dict[str, Any], where: str) -> Model:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise BadRequest(_first_problem(exc, where)) from None
