"""The API token guard: who must send it, and how it is compared."""

import pytest
from starlette.requests import Request

from core.errors import Unauthorized
from deployments.ingress import TokenGuard


def request_from(host: str, authorization: str | None = None) -> Request:
    headers = [(b"authorization", authorization.encode())] if authorization else []
    return Request({"type": "http", "method": "POST", "path": "/set_lang/", "headers": headers,
                    "client": (host, 51234)})


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


def test_everyone_mode_asks_loopback_too():
    with pytest.raises(Unauthorized):
        TokenGuard("s3cret", "everyone").check(request_from("127.0.0.1", "Basic s3cret"))
