"""Every answer that is not a success, in the API's JSON shape (`{"error": "..."}`), mapped in one place
from the failure's type: our own errors (`core.errors`) carry their status; Ray's, the database's and
unexpected ones are told here. One log line per request: its id, path, status and stage timings; and
one count, by the kind of path it came by (`PATH_KINDS`)."""

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable

from ray.exceptions import RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from core.answers import ErrorAnswer
from core.errors import ServeError, StoreUnavailable
from service.observe import STAGES, request_timings

from . import metrics
from .access import TokenGuard
from .json_answers import REPLACED_RETRY_AFTER_S, RETRY_AFTER_S, answer, busy, error

log = logging.getLogger("ray.serve")
RATE_RETRY_AFTER_S = 10
PATH_KINDS = ("bare", "profile")
"""How requests are counted (metrics, /status): on the bare paths, or under some reader profile's address."""


def error_response(exc: Exception, request_id: str) -> JSONResponse:
    """Map any failure to the client's JSON error; model-side errors arrive wrapped by Ray. An
    unexpected failure's details go to the log only, under the request id the answer gives."""
    cause = exc.cause if isinstance(exc, RayTaskError) and exc.cause is not None else exc
    if isinstance(cause, StoreUnavailable):  # the database unreachable, restarting, locked
        log.error("request %s failed: the store is unavailable: %s", request_id, cause.__cause__ or cause)
        metrics.request_rejected("store_unavailable")
        return busy(cause.message, cause.retry_after_s)
    if isinstance(cause, ServeError):
        status, message = cause.status, cause.message
    elif isinstance(cause, BackPressureError):
        log.warning("a model deployment's queue is full: %s", cause)
        metrics.request_rejected("queue_full")
        return busy("The models are busy with other requests; try again in a moment.")
    elif isinstance(cause, RayActorError):
        log.error("request %s failed: a model replica stopped (%s)", request_id, type(cause).__name__)
        return busy("A model replica stopped and is being replaced; try again in a few seconds.",
                     REPLACED_RETRY_AFTER_S)
    else:
        log.error("request %s failed: %s: %s", request_id, type(cause).__name__, cause, exc_info=cause)
        return error(f"Internal error; the server's log has the details under request id {request_id}.", 500)
    if status >= 500:
        log.error("request %s failed with %s: %s", request_id, status, message)
    return error(message, status, {429: RATE_RETRY_AFTER_S, 503: RETRY_AFTER_S}.get(status))


Handler = Callable[[Request], Awaitable[Response]]


def logged(handler: Handler, guard: TokenGuard | None = None, shown: str = "") -> Handler:
    """Error mapping in one place, and one log line per request: id, endpoint (`shown`: its route template,
    so a reader profile's key never reaches the log), status, stage times. The id is Serve's (its proxy
    takes the client's X-Request-Id or makes one, and answers it)."""
    async def run(request: Request) -> Response:
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex[:12]
        started = time.perf_counter()
        with request_timings() as timings:
            try:
                if guard:
                    guard.check(request)
                response = await handler(request)
            except Exception as exc:
                response = error_response(exc, request_id)
        stages = "".join(f" {stage}={timings[stage] * 1000:.0f}ms" for stage in STAGES if stage in timings)
        log.info("request %s %s %s -> %s in %.1f ms%s", request_id, request.method, shown or without_key(request),
                 response.status_code, (time.perf_counter() - started) * 1000, stages)
        _count(request)
        return response
    return run


def _count(request: Request) -> None:
    """The request in the metrics and in this replica's counts for /status (`app.state.answered`)."""
    kind = "profile" if "key" in request.path_params else "bare"
    metrics.request_answered(kind)
    request.app.state.answered[kind] += 1


def without_key(request: Request) -> str:
    """The request's path with a reader profile's key replaced by `{key}`: what logs and answers show."""
    return re.sub(r"^/r/[^/]*", "/r/{key}", request.url.path)


async def routing_error(request: Request, exc: HTTPException) -> Response:
    """Routing errors (unknown path, wrong method) in the same JSON shape."""
    path = without_key(request)
    messages = {404: f"No endpoint {path}; GET / lists what this server offers.",
                405: f"Method {request.method} is not allowed on {path}."}
    return answer(ErrorAnswer(error=messages.get(exc.status_code, str(exc.detail))), exc.status_code, exc.headers)
