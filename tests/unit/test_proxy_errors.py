"""The proxy middleware that answers a request lost with its ingress replica (deployments/proxy_errors.py),
as an ASGI app in front of stand-ins for Serve's proxy app. Killed ingress replicas under load, through
Serve's real proxy: tests/faults/test_faults.py and tests/cluster/test_multinode.py."""

import asyncio

import httpx
from ray.serve._private.http_util import validate_http_proxy_callback_return
from starlette.responses import JSONResponse

from deployments.proxy_errors import (
    INGRESS_LOST,
    INGRESS_LOST_RETRY_AFTER_S,
    PROXY_CALLBACK,
    PROXY_CALLBACK_ENV,
    AnswerWhenTheIngressIsLost,
    middlewares,
)
from tests.support.paths import ROOT


async def lost(scope, receive, send):
    """Serve's proxy when the ingress replica died under the request: it sends nothing."""


async def answered(scope, receive, send):
    await JSONResponse({"error": "Unknown key 'x'."}, status_code=400)(scope, receive, send)


def post(app, body: dict, headers: dict | None = None) -> httpx.Response:
    async def call() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=AnswerWhenTheIngressIsLost(app)),
                                     base_url="http://127.0.0.1:4000") as http:
            return await http.post("/run_tsl/", json=body, headers=headers)
    return asyncio.run(call())


def test_a_request_the_proxy_leaves_unanswered_gets_the_apis_503():
    response = post(lost, {"text": "hello"})
    assert response.status_code == 503
    assert response.json() == {"error": INGRESS_LOST}
    assert response.headers["content-type"] == "application/json"
    assert response.headers["retry-after"] == str(INGRESS_LOST_RETRY_AFTER_S)
    assert "access-control-allow-origin" not in response.headers  # no Origin, no CORS headers


def test_the_extensions_cross_origin_request_can_read_it():
    origin = "moz-extension://5b0c6f0a-1d7e-4c39-9f8e-3c9e5a1f2b77"
    response = post(lost, {"text": "hello"}, {"Origin": origin})
    assert response.status_code == 503
    assert response.headers["access-control-allow-origin"] == origin
    assert response.headers["access-control-expose-headers"] == "Retry-After"


def test_an_answered_request_passes_unchanged():
    response = post(answered, {"x": 1})
    assert (response.status_code, response.json()) == (400, {"error": "Unknown key 'x'."})
    assert "retry-after" not in response.headers


def test_serve_accepts_the_callback_and_every_way_of_starting_ray_sets_it():
    [middleware] = validate_http_proxy_callback_return(middlewares())  # Serve's own check of the callback
    assert middleware.cls is AnswerWhenTheIngressIsLost
    module, _, name = PROXY_CALLBACK.partition(":")
    assert getattr(__import__(module, fromlist=[name]), name) is middlewares
    assert f"export {PROXY_CALLBACK_ENV} := {PROXY_CALLBACK}\n" in (ROOT / "Makefile").read_text()  # make run
    for manifest in ("rayservice-cpu.yaml", "rayservice-gpu.yaml"):
        assert f"- name: {PROXY_CALLBACK_ENV}\n              value: {PROXY_CALLBACK}\n" in (
            ROOT / "k8s" / manifest).read_text(), manifest
