"""Ingress: the extension's HTTP API as one Starlette routing table, served by a Serve deployment.

Handlers parse and validate the request, call the service's catalogue, pipeline or manual translations
(`service/service.py`), and shape the answer.
Every error is `{"error": "..."}` with the status its exception type carries (`core.errors`).
"""

import asyncio
import contextlib
import dataclasses
import hashlib
import ipaddress
import json
import logging
import re
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from types import MethodType
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import ray
from pydantic import BaseModel, ValidationError
from ray import serve
from ray.exceptions import RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from core.answers import (
    Accepted,
    ActiveOptions,
    Done,
    ErrorAnswer,
    GlossaryAnswer,
    Handshake,
    OcrTslAnswer,
    PluginData,
    StatusAnswer,
    TranslationsAnswer,
    TslAnswer,
)
from core.api_tokens import ApiTokens, audit
from core.boxes import Block
from core.errors import BadRequest, Forbidden, PayloadTooLarge, RequestTimeout, ServeError, Unauthorized
from core.glossary import Glossary
from core.settings import EXTENSION_ORIGIN_REGEX, LOOPBACK_HOST_NAMES, AppArgs, Limits, token_problem
from models_registry import ModelKind, Registry
from service.observe import STAGES, metered, request_timings
from service.pipeline import Overrides
from service.quota import ResultQuota
from service.service import OcrTranslateService
from service.store import Selection, Store

from . import metrics, status, ui
from .http_api import (
    OPENAPI_PATH,
    Endpoint,
    GlossaryDeleteBody,
    GlossaryQuery,
    GlossaryTermBody,
    ManagePluginsBody,
    ManualTranslationBody,
    RunOcrTslBody,
    RunTslBody,
    SetLangBody,
    SetModelsBody,
    TextQuery,
    XuaQuery,
    openapi_document,
)
from .model_downloads import ServeDownloads

log = logging.getLogger("ray.serve")


class ServeStages:
    """The model stages as calls to the model deployments' handles."""

    def __init__(self, box: DeploymentHandle, ocr: DeploymentHandle, tsl: DeploymentHandle):
        self.handles: dict[ModelKind, DeploymentHandle] = {"box": box, "ocr": ocr, "tsl": tsl}

    def _for(self, kind: ModelKind, model_id: str) -> DeploymentHandle:
        return self.handles[kind].options(multiplexed_model_id=model_id)

    async def detect(self, model_id: str, image: np.ndarray, lang: str, options: dict[str, Any]) -> list[Block]:
        image_ref = ray.put(image)  # once, in the object store; the detector reads it by reference
        return await self._for("box", model_id).detect.remote([image_ref], lang, options)

    # One call per image (or text batch) carries all its crops or texts: the replica batches them with
    # those of concurrent requests, and the ingress pays for one Ray call instead of one per line.
    async def read(self, model_id: str, crops: list[np.ndarray], lang: str, options: dict[str, Any]) -> list[str]:
        return await self._for("ocr", model_id).read.remote(crops, lang, options)

    async def translate(self, model_id: str, texts: list[str], src: str, dst: str, options: dict,
                        glossary: Glossary) -> list[str]:
        return await self._for("tsl", model_id).translate.remote(texts, src, dst, options, glossary)

    async def warm(self, kind: ModelKind, model_id: str) -> None:
        await self._for(kind, model_id).warm.remote()


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


_EXTENSION_ORIGIN = re.compile(EXTENSION_ORIGIN_REGEX)
FORWARDING_HEADERS = ("forwarded", "x-real-ip")
"""Besides every `X-Forwarded-*`: headers a proxy adds for a client it relays."""


def _own_origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.headers.get('host', '')}".lower()


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def from_web_page(request: Request) -> bool:
    """A request some web page made (fetch, a form, an image): it names an origin that is neither an
    extension's nor this server's own page, or its browser says another site sent it. Such a page
    may run on this machine (a dev server, a notebook on another localhost port): it is never
    "this machine". The extension's popup sends its extension origin; Firefox's content scripts of
    an extension with host permissions send no Origin and no fetch metadata of a page."""
    origin = request.headers.get("origin")
    if origin is not None:
        return not (_EXTENSION_ORIGIN.match(origin) or origin.lower() == _own_origin(request))
    return request.headers.get("sec-fetch-site") in ("cross-site", "same-site")


def asked_by_a_page(request: Request) -> bool:
    """A GET that a web page could have made by loading an image or following a link: fetch
    metadata says so, or (a browser without it) a foreign Referer or an Accept asking for an image.
    Programs (XUnity.AutoTranslator, curl) send none of these."""
    if from_web_page(request):
        return True
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site not in ("none", "same-origin")
    referer = request.headers.get("referer")
    if referer and _origin_of(referer) != _own_origin(request):
        return True
    return "image/" in request.headers.get("accept", "").lower()


def is_this_machine(request: Request) -> bool:
    """A client of this machine itself: a loopback peer that names a loopback host and comes through
    no proxy, and no web page. A reverse proxy, a mesh sidecar or a rebound DNS name on this host
    also connect from loopback: their forwarding headers or their Host give them away."""
    try:
        loopback_peer = request.client is not None and ipaddress.ip_address(request.client.host).is_loopback
    except ValueError:  # not an IP address (e.g. a test client's name)
        return False
    forwarded = any(name in FORWARDING_HEADERS or name.startswith("x-forwarded-") for name in request.headers)
    host = (request.url.hostname or "").lower()  # from the Host header, IPv6 without its brackets
    return (loopback_peer and not forwarded and (f"[{host}]" if ":" in host else host) in LOOPBACK_HOST_NAMES
            and not from_web_page(request))


class TokenGuard:
    """The API token on the endpoints that change the server's settings or show its internals."""

    def __init__(self, tokens: ApiTokens | str | None, required_from: str):
        self.tokens = tokens if isinstance(tokens, ApiTokens) else ApiTokens(tokens)
        self.required_from = required_from

    def permits(self, request: Request) -> bool:
        """Whether this request may do what needs the token (it sent it, or needs none)."""
        if self.required_from == "remote" and is_this_machine(request):
            return True
        if not self.tokens.configured:  # no token set: a server on loopback, whose clients are this machine's
            return not from_web_page(request)
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and self.tokens.matches(given.strip())

    def check(self, request: Request) -> None:
        if self.permits(request):
            return
        if not self.tokens.configured:
            raise Forbidden("Web pages may not change this server's settings or read its status; "
                            "use the extension or the server's own page (/ui).")
        raise Unauthorized("This endpoint changes the server's settings: send the server's API token "
                           "as 'Authorization: Bearer <token>'.")

    def who(self, request: Request) -> str:
        """A short id of the client for the audit log: a digest of its address (and of the address a
        proxy forwarded for it), and how it was let in; never the token."""
        seen = f"{request.client.host if request.client else ''} {request.headers.get('x-forwarded-for', '')}"
        rights = "local" if self.required_from == "remote" and is_this_machine(request) else (
            "token" if self.tokens.configured else "tokenless")
        return f"{hashlib.sha256(seen.encode()).hexdigest()[:8]}/{rights}"


class Api:
    """The route handlers, bound to one service."""

    def __init__(self, service: OcrTranslateService, limits: Limits, guard: TokenGuard):
        self.service = service
        self.max_body_bytes = limits.max_body_bytes
        self.body_read_timeout_s = limits.body_read_timeout_s
        self.guard = guard
        self.quota = ResultQuota(limits.max_new_results_per_client_per_hour)
        self.openapi_document = openapi_document(ENDPOINTS)

    async def _json_body(self, request: Request, model: type[BaseModel]) -> Any:
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            raise BadRequest("Content-Type must be application/json.")
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise PayloadTooLarge(f"Request body is larger than the limit of {self.max_body_bytes} bytes.")
        body = bytearray()
        try:
            async with asyncio.timeout(self.body_read_timeout_s):
                async for chunk in request.stream():
                    body += chunk
                    if len(body) > self.max_body_bytes:
                        raise PayloadTooLarge(f"Request body is larger than the limit of {self.max_body_bytes} bytes.")
        except TimeoutError:
            raise RequestTimeout(f"The request body did not arrive within {self.body_read_timeout_s:g} s.") from None
        try:  # a page's image is megabytes of JSON: parsed beside the event loop, which keeps serving
            data = json.loads(body) if len(body) < _PARSE_ON_LOOP_BELOW else await asyncio.to_thread(json.loads, body)
        except (ValueError, UnicodeDecodeError):
            raise BadRequest("Request body is not valid JSON.") from None
        except RecursionError:
            raise BadRequest("Request body is nested too deeply.") from None
        if not isinstance(data, dict):
            raise BadRequest("Request body must be a JSON object.")
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise BadRequest(_first_problem(exc, "request body")) from None

    @staticmethod
    def _query(request: Request, model: type[BaseModel]) -> Any:
        try:
            return model.model_validate(dict(request.query_params))
        except ValidationError as exc:
            raise BadRequest(_first_problem(exc, "query string")) from None

    def _overrides(self, request: Request, body: RunTslBody | RunOcrTslBody) -> Overrides:
        return dataclasses.replace(body.overrides(), any_model=self.guard.permits(request))

    async def handshake(self, request: Request) -> Response:
        return _answer(await self.service.catalogue.handshake())

    def _audit(self, request: Request, change: str) -> None:
        audit.info("%s by %s", change, self.guard.who(request))

    async def set_lang(self, request: Request) -> Response:
        body = await self._json_body(request, SetLangBody)
        await self.service.catalogue.set_lang(body.lang_src, body.lang_dst)
        self._audit(request, f"languages set to {body.lang_src}->{body.lang_dst}")
        return _answer(Done())

    async def set_models(self, request: Request) -> Response:
        body = await self._json_body(request, SetModelsBody)
        downloading = await self.service.catalogue.set_models({"box": body.box_model_id, "ocr": body.ocr_model_id,
                                                               "tsl": body.tsl_model_id})
        self._audit(request, "models set to " + ", ".join(
            f"{kind} {model}" for kind, model in (("box", body.box_model_id), ("ocr", body.ocr_model_id),
                                                  ("tsl", body.tsl_model_id)) if model))
        return _answer(Done()) if downloading is None else _answer(Accepted(message=downloading), 202)

    @contextlib.contextmanager
    def _within_quota(self, request: Request) -> Iterator[None]:
        """The new results a client without the token had computed, counted against its hour's share
        (`limits.max_new_results_per_client_per_hour`); past it, a request that needs a model is refused
        (429) before the model runs, and stored results are still answered."""
        if self.guard.permits(request):
            yield
            return
        client = request.client.host if request.client else ""
        with metered(lambda: self.quota.check(client)) as work:
            try:
                yield
            finally:
                self.quota.charge(client, work.results)

    async def run_ocrtsl(self, request: Request) -> Response:
        body = await self._json_body(request, RunOcrTslBody)
        with self._within_quota(request):
            result = await self.service.pipeline.run_ocrtsl(
                contents=body.contents, md5=body.md5, force=body.force, given_options=body.options,
                overrides=self._overrides(request, body))
        return _answer(OcrTslAnswer(result=result))

    async def run_tsl(self, request: Request) -> Response:
        body = await self._json_body(request, RunTslBody)
        with self._within_quota(request):
            text = await self.service.pipeline.run_tsl(body.text, self._overrides(request, body), body.options)
        return _answer(TslAnswer(text=text))

    async def run_tsl_xua(self, request: Request) -> Response:
        if asked_by_a_page(request):  # an <img src> or a link on some web page
            raise Forbidden("run_tsl_xua answers programs (XUnity.AutoTranslator), not web pages.")
        query = self._query(request, XuaQuery)
        with self._within_quota(request):
            text = await self.service.pipeline.run_tsl(query.text, Overrides(lang_src=query.from_, lang_dst=query.to),
                                                       None)
        return PlainTextResponse(text, media_type="text/plain; charset=utf-8")

    async def get_trans(self, request: Request) -> Response:
        query = self._query(request, TextQuery)
        return _answer(TranslationsAnswer(
            translations=await self.service.manual.get_translations(query.text)))

    async def set_manual_translation(self, request: Request) -> Response:
        body = await self._json_body(request, ManualTranslationBody)
        await self.service.manual.set_manual_translation(body.text, body.translation)
        self._audit(request, f"manual translation of text {_digest(body.text)} set")
        return _answer(Done())

    async def get_glossary(self, request: Request) -> Response:
        query = self._query(request, GlossaryQuery)
        return _answer(await self.service.manual.glossary(query.lang_src, query.lang_dst))

    async def set_glossary_term(self, request: Request) -> Response:
        body = await self._json_body(request, GlossaryTermBody)
        await self.service.manual.set_glossary_term(body.term, body.translation, body.lang_src, body.lang_dst)
        self._audit(request, f"glossary term {_digest(body.term)} set")
        return _answer(Done())

    async def delete_glossary_term(self, request: Request) -> Response:
        body = await self._json_body(request, GlossaryDeleteBody)
        await self.service.manual.delete_glossary_term(body.term, body.lang_src, body.lang_dst)
        self._audit(request, f"glossary term {_digest(body.term)} deleted")
        return _answer(Done())

    async def get_active_options(self, request: Request) -> Response:
        return _answer(await self.service.catalogue.active_options())

    async def status(self, request: Request) -> Response:
        report = await status.collect(self.service)
        if "text/html" in request.headers.get("accept", ""):
            return HTMLResponse(status.render_html(report))
        return _answer(report)

    async def get_plugin_data(self, request: Request) -> Response:
        return _answer(await self.service.catalogue.plugin_data())

    async def manage_plugins(self, request: Request) -> Response:
        body = await self._json_body(request, ManagePluginsBody)
        await self.service.catalogue.manage_plugins(body.plugins)
        self._audit(request, "plugins " + ", ".join(f"{name} {'on' if on else 'off'}"
                                                    for name, on in sorted(body.plugins.items())))
        return _answer(Done())

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(self.openapi_document)

    def routes(self) -> list[Route]:
        """The API, endpoint by endpoint as in extension-api.md; each path with and without '/'."""
        routes = [Route(OPENAPI_PATH, _logged(self.openapi), methods=["GET"])]
        for endpoint in ENDPOINTS:
            handler = _logged(MethodType(endpoint.handler, self), self.guard if endpoint.needs_token else None)
            bare = endpoint.path.rstrip("/")
            for variant in {bare or "/", bare + "/"}:
                routes.append(Route(variant, handler, methods=[endpoint.method]))
        return routes


# The API, endpoint by endpoint as in extension-api.md: each row names its handler above.
ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("/", "GET", Api.handshake, "Languages, models and the current selection.", Handshake),
    Endpoint("/set_lang/", "POST", Api.set_lang, "Select the source and target languages.", Done,
             body=SetLangBody, needs_token=True),
    Endpoint("/set_models/", "POST", Api.set_models, "Select (and load) the box, OCR and translation models.", Done,
             body=SetModelsBody, errors=(429,), needs_token=True, accepted=Accepted),
    Endpoint("/run_ocrtsl/", "POST", Api.run_ocrtsl, "Find, read and translate the text of an image.", OcrTslAnswer,
             body=RunOcrTslBody, errors=(401, 403, 406, 429, 502, 504, 512, 513)),
    Endpoint("/run_tsl/", "POST", Api.run_tsl, "Translate a text.", TslAnswer, body=RunTslBody,
             errors=(401, 403, 429, 502, 504, 512, 513)),
    Endpoint("/run_tsl_xua", "GET", Api.run_tsl_xua, "Translate a text, answered as plain text (XUnity).", None,
             query=XuaQuery, errors=(400, 403, 429, 502, 504, 512, 513)),
    Endpoint("/get_trans/", "GET", Api.get_trans, "Every stored translation of a text.", TranslationsAnswer,
             query=TextQuery, errors=(400, 404, 512)),
    Endpoint("/set_manual_translation/", "POST", Api.set_manual_translation, "Store a user's own translation.",
             Done, body=ManualTranslationBody, errors=(404, 512), needs_token=True),
    Endpoint("/get_glossary/", "GET", Api.get_glossary, "The reader's glossary of a language pair.", GlossaryAnswer,
             query=GlossaryQuery, errors=(400, 512)),
    Endpoint("/set_glossary_term/", "POST", Api.set_glossary_term,
             "Add a term to a language pair's glossary (or change its translation): every model follows it.",
             Done, body=GlossaryTermBody, errors=(512,), needs_token=True),
    Endpoint("/delete_glossary_term/", "POST", Api.delete_glossary_term, "Remove a term from a glossary.",
             Done, body=GlossaryDeleteBody, errors=(404, 512), needs_token=True),
    Endpoint("/get_active_options/", "GET", Api.get_active_options, "The selected models' options.", ActiveOptions),
    Endpoint("/get_plugin_data/", "GET", Api.get_plugin_data, "The backend families and their state.", PluginData),
    Endpoint("/manage_plugins/", "POST", Api.manage_plugins, "Enable or disable backend families.", Done,
             body=ManagePluginsBody, needs_token=True),
    Endpoint("/status", "GET", Api.status, "Replicas, the device each uses, loaded models, unavailable models.",
             StatusAnswer, html=True, needs_token=True),
)


RETRY_AFTER_S = 1
REPLACED_RETRY_AFTER_S = 5
"""A dead replica's successor starts and loads its models within seconds."""
STORE_RETRY_AFTER_S = 5
"""A database restarted or failed over answers again within seconds; the pool reconnects by itself."""
RATE_RETRY_AFTER_S = 10
_PARSE_ON_LOOP_BELOW = 64 * 1024


def _digest(text: str) -> str:
    """A reader's text in the audit log: which one, not what it says."""
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def _answer(answer: BaseModel, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(answer.model_dump(mode="json"), status_code=status, headers=headers)


def _error(message: str, status: int, retry_after_s: int | None = None) -> JSONResponse:
    headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else None
    return _answer(ErrorAnswer(error=message), status, headers)


def _busy(message: str, retry_after_s: int = RETRY_AFTER_S) -> JSONResponse:
    return _error(message, 503, retry_after_s)


def _error_response(exc: Exception, request_id: str) -> JSONResponse:
    """Map any failure to the client's JSON error; model-side errors arrive wrapped by Ray. An
    unexpected failure's details go to the log only, under the request id the answer gives."""
    cause = exc.cause if isinstance(exc, RayTaskError) and exc.cause is not None else exc
    if isinstance(cause, ServeError):
        status, message = cause.status, cause.message
    elif isinstance(cause, BackPressureError):
        log.warning("a model deployment's queue is full: %s", cause)
        metrics.request_rejected("queue_full")
        return _busy("The models are busy with other requests; try again in a moment.")
    elif isinstance(cause, RayActorError):
        log.error("request %s failed: a model replica stopped (%s)", request_id, type(cause).__name__)
        return _busy("A model replica stopped and is being replaced; try again in a few seconds.",
                     REPLACED_RETRY_AFTER_S)
    elif isinstance(cause, OperationalError | InterfaceError):  # the database unreachable, restarting, locked
        log.error("request %s failed: the store is unavailable: %s", request_id, cause)
        metrics.request_rejected("store_unavailable")
        return _busy("The server's database is unavailable; try again in a few seconds.", STORE_RETRY_AFTER_S)
    else:
        log.error("request %s failed: %s: %s", request_id, type(cause).__name__, cause, exc_info=cause)
        return _error(f"Internal error; the server's log has the details under request id {request_id}.", 500)
    if status >= 500:
        log.error("request %s failed with %s: %s", request_id, status, message)
    return _error(message, status, {429: RATE_RETRY_AFTER_S, 503: RETRY_AFTER_S}.get(status))


Handler = Callable[[Request], Awaitable[Response]]


def _logged(handler: Handler, guard: TokenGuard | None = None) -> Handler:
    """Error mapping in one place, and one log line per request: id, endpoint, status, stage times.
    The id is Serve's (its proxy takes the client's X-Request-Id or makes one, and answers it)."""
    async def run(request: Request) -> Response:
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex[:12]
        started = time.perf_counter()
        with request_timings() as timings:
            try:
                if guard:
                    guard.check(request)
                response = await handler(request)
            except Exception as exc:
                response = _error_response(exc, request_id)
        stages = "".join(f" {stage}={timings[stage] * 1000:.0f}ms" for stage in STAGES if stage in timings)
        log.info("request %s %s %s -> %s in %.1f ms%s", request_id, request.method, request.url.path,
                 response.status_code, (time.perf_counter() - started) * 1000, stages)
        return response
    return run


async def _http_error(request: Request, exc: HTTPException) -> Response:
    """Routing errors (unknown path, wrong method) in the same JSON shape."""
    messages = {404: f"No endpoint {request.url.path}; GET / lists what this server offers.",
                405: f"Method {request.method} is not allowed on {request.url.path}."}
    return _answer(ErrorAnswer(error=messages.get(exc.status_code, str(exc.detail))), exc.status_code, exc.headers)


class InFlightLimit:
    """Answer 503 at once when this replica already works on `limit` requests, or on `per_client` of
    one client address, instead of queueing without bound: the browser retries after `Retry-After`,
    the server stays responsive, and one client's flood leaves room for the others."""

    def __init__(self, app: ASGIApp, limit: int, per_client: int):
        self.app = app
        self.limit = limit
        self.per_client = per_client
        self.in_flight = 0
        self.by_client: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = (scope.get("client") or ("", 0))[0]
        mine = self.by_client[client] >= self.per_client
        if mine or self.in_flight >= self.limit:
            log.warning("answering 503: %d requests in flight, %d of them from this client",
                        self.in_flight, self.by_client[client])
            metrics.request_rejected("client_in_flight" if mine else "in_flight")
            message = (f"You have {self.by_client[client]} requests in flight, the most one client may; "
                       if mine else f"The server is busy with {self.in_flight} requests; ")
            await _busy(message + "try again in a moment.")(scope, receive, send)
            return
        self.in_flight += 1
        self.by_client[client] += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            self.by_client[client] -= 1
            if not self.by_client[client]:
                del self.by_client[client]


def build_http_app(service: OcrTranslateService, args: AppArgs) -> Starlette:
    if risk := args.security.relay_risk():
        log.warning(risk)
    tokens = ApiTokens.from_environment()
    return Starlette(
        routes=[*Api(service, args.limits, TokenGuard(tokens, args.security.token_required_from)).routes(),
                *ui.routes()],  # the web page at /ui: static, same origin, under its own CSP
        middleware=[
            Middleware(  # outermost, so that 503s carry CORS headers too
                CORSMiddleware,
                allow_origins=args.cors.allow_origins,
                allow_origin_regex=args.cors.allow_origin_regex,
                allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=["Content-Type", "Authorization", "X-Request-Id"],
                expose_headers=["X-Request-Id", "Retry-After"],
            ),
            Middleware(InFlightLimit, limit=args.limits.max_requests_in_flight,
                       per_client=args.limits.max_requests_in_flight_per_client),
            Middleware(TrustedHostMiddleware, allowed_hosts=args.security.allowed_hosts),
        ],
        exception_handlers={HTTPException: _http_error},
    )


async def _http_host() -> str:
    """The address Serve's HTTP proxies listen on (`http_options.host`), from the Serve controller."""
    from ray.serve.context import _get_global_client

    return (await _get_global_client()._controller.get_http_config.remote()).host


@serve.deployment
@serve.ingress()
class Ingress:
    async def __init__(self, args: AppArgs, box: DeploymentHandle, ocr: DeploymentHandle, tsl: DeploymentHandle):
        if problem := token_problem(await _http_host(), ApiTokens.from_environment().configured):
            raise RuntimeError(problem)  # the replica fails, and `serve run` / `serve status` show why
        self.args = args
        self.store = Store(args.resolved_database_url)
        self.registry = Registry.load(args.registry_dirs, args.weight_sources, args.model_settings)
        self.service = OcrTranslateService(self.store, self.registry, ServeStages(box, ocr, tsl), args.limits,
                                           metrics.ServeMetrics(), args.security,
                                           args.retention, args.coalescing.across_replicas,
                                           downloads=ServeDownloads(serve.get_replica_context().app_name)
                                           if args.weights.hub_downloads else None)
        self._maintenance = asyncio.create_task(self.service.pipeline.retention.run())
        self.service.catalogue.start_with_defaults(Selection(**args.default_selection.model_dump()))
        if args.preload_selected_models:  # in the background: the API answers meanwhile
            self._preloading = asyncio.create_task(self.service.catalogue.preload_selection())

    def __serve_build_asgi_app__(self) -> Starlette:
        return build_http_app(self.service, self.args)
