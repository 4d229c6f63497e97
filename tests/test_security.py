"""The API token guard: who must send it, and how it is compared."""

import pytest
from starlette.requests import Request

from core.errors import Unauthorized
from core.settings import token_problem
from deployments.ingress import TokenGuard


def request_from(host: str, authorization: str | None = None, host_header: str = "127.0.0.1:4000",
                 **extra: str) -> Request:
    headers = [(b"host", host_header.encode())] + [(k.replace("_", "-").encode(), v.encode()) for k, v in extra.items()]
    if authorization:
        headers.append((b"authorization", authorization.encode()))
    return Request({"type": "http", "method": "POST", "path": "/set_lang/", "headers": headers,
                    "client": (host, 51234), "scheme": "http", "server": ("127.0.0.1", 4000), "query_string": b""})


def test_without_a_token_nothing_is_required():
    TokenGuard(None, "everyone").check(request_from("203.0.113.7"))


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.1", "::1"])
def test_loopback_clients_are_trusted_in_remote_mode(host):
    TokenGuard("s3cret", "remote").check(request_from(host))


@pytest.mark.parametrize("host", ["192.168.1.20", "10.0.0.3", "203.0.113.7", "fe80::1", "testclient"])
def test_other_clients_need_the_token_in_remote_mode(host):
    guard = TokenGuard("s3cret", "remote")
    with pytest.raises(Unauthorized):
        guard.check(request_from(host))
    with pytest.raises(Unauthorized):
        guard.check(request_from(host, "Bearer s3cre"))
    guard.check(request_from(host, "Bearer s3cret"))
    guard.check(request_from(host, "bearer  s3cret"))


@pytest.mark.parametrize("host_header,extra", [
    ("attacker.example:4000", {}), ("localhost.evil.com", {}), ("127.0.0.1:4000", {"x_forwarded_for": "10.1.1.1"}),
    ("localhost", {"forwarded": "for=10.1.1.1"}), ("[::1]:4000", {"x_real_ip": "10.1.1.1"}),
])
def test_loopback_peers_behind_a_proxy_or_a_foreign_name_need_the_token(host_header, extra):
    guard = TokenGuard("s3cret", "remote")
    with pytest.raises(Unauthorized):
        guard.check(request_from("127.0.0.1", host_header=host_header, **extra))
    guard.check(request_from("127.0.0.1", "Bearer s3cret", host_header=host_header, **extra))


@pytest.mark.parametrize("http_host,token,refused", [
    ("127.0.0.1", None, False), ("localhost", None, False), ("::1", None, False), ("0.0.0.0", None, True),
    ("192.168.1.5", None, True), ("::", None, True), ("0.0.0.0", "s3cret", False),
])
def test_a_server_reachable_from_other_machines_needs_a_token(http_host, token, refused):
    assert (token_problem(http_host, token) is not None) == refused


def test_everyone_mode_asks_loopback_too():
    with pytest.raises(Unauthorized):
        TokenGuard("s3cret", "everyone").check(request_from("127.0.0.1", "Basic s3cret"))


def test_model_loads_are_rate_limited_per_replica():
    from core.errors import TooManyRequests
    from deployments.model_host import LoadRate

    now = [1000.0]
    rate = LoadRate(3, clock=lambda: now[0])
    for model in ("a", "b", "c"):
        rate.take(model)
    with pytest.raises(TooManyRequests, match="'d' is not loaded"):
        rate.take("d")
    now[0] += 61
    rate.take("d")  # a minute later the oldest load no longer counts
