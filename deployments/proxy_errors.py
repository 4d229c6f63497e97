"""The answer of Serve's HTTP proxy when the ingress replica holding a request dies before answering.

The ingress shapes every error of the API (JSON, Retry-After, CORS), but a request in flight on an
ingress replica that stops (its node lost, its process killed) never reaches it again: Serve's proxy
sends nothing, and its web server falls back to a plain-text 500, which the extension reports as a
server fault and nobody knows to retry. This middleware runs inside every proxy (Serve reads the
environment variable named by PROXY_CALLBACK_ENV when a proxy starts, on every node: set it in the
environment of `ray start` or of the pods) and answers such a request 503 with Retry-After in the
API's JSON shape, as the ingress answers a request whose model replica died.
"""

from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .json_answers import REPLACED_RETRY_AFTER_S, error

PROXY_CALLBACK_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
PROXY_CALLBACK = "deployments.proxy_errors:middlewares"
"""The value of PROXY_CALLBACK_ENV: this module's `middlewares`, importable where the project is installed."""
INGRESS_LOST = "The server replica handling this request stopped before answering; try again in a few seconds."
INGRESS_LOST_RETRY_AFTER_S = REPLACED_RETRY_AFTER_S
"""Serve routes the retry to another ingress replica at once, or starts a new one within seconds."""


class AnswerWhenTheIngressIsLost:
    """Pass every message through; where the app behind ended without starting a response, send the
    API's JSON 503 instead of the web server's plain 500."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, receive, tracked)
        if not started:
            await send_ingress_lost(scope, send)


async def send_ingress_lost(scope: Scope, send: Send) -> None:
    response = error(INGRESS_LOST, 503, INGRESS_LOST_RETRY_AFTER_S)
    origin = dict(scope["headers"]).get(b"origin")
    if origin:  # the ingress's CORS settings are out of reach here; this fixed answer reveals nothing
        response.headers.update({"Access-Control-Allow-Origin": origin.decode("latin-1"),
                                 "Access-Control-Expose-Headers": "Retry-After", "Vary": "Origin"})
    await response(scope, _nothing_to_receive, send)


async def _nothing_to_receive() -> Message:
    return {"type": "http.disconnect"}


def middlewares() -> list[Middleware]:
    """What Serve's proxy calls at start (PROXY_CALLBACK)."""
    return [Middleware(AnswerWhenTheIngressIsLost)]
