"""The API's answers as JSON responses: a model's, or `{"error": "..."}` with its status and, for a
client that should come back, `Retry-After`. Light (pydantic and Starlette only): Serve's HTTP proxies
import it too (`proxy_errors.py`)."""

from pydantic import BaseModel
from starlette.responses import JSONResponse

from core.answers import ErrorAnswer

RETRY_AFTER_S = 1
REPLACED_RETRY_AFTER_S = 5
"""A dead replica's successor (a model's or the ingress's) starts and loads its models within seconds."""


def answer(body: BaseModel, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body.model_dump(mode="json"), status_code=status, headers=headers)


def error(message: str, status: int, retry_after_s: int | None = None) -> JSONResponse:
    headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else None
    return answer(ErrorAnswer(error=message), status, headers)


def busy(message: str, retry_after_s: int = RETRY_AFTER_S) -> JSONResponse:
    return error(message, 503, retry_after_s)
