"""Who a request comes from, and what it may do: this machine's own clients, web pages (never this
machine), programs, holders of the API token. The ingress asks `TokenGuard` before a handler that
changes the server runs; see docs/security.md."""

import hashlib
import ipaddress
import re
from urllib.parse import urlsplit

from starlette.requests import Request

from core.api_tokens import ApiTokens
from core.errors import Forbidden, Unauthorized
from core.settings import EXTENSION_ORIGIN_REGEX, LOOPBACK_HOST_NAMES

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

    def who(self, request: Request, by_key: bool = False) -> str:
        """A short id of the client for the audit log: a digest of its address (and of the address a
        proxy forwarded for it), and how it was let in (`by_key`: a reader profile's key); never a secret."""
        seen = f"{request.client.host if request.client else ''} {request.headers.get('x-forwarded-for', '')}"
        rights = "key" if by_key else "local" if self.required_from == "remote" and is_this_machine(request) else (
            "token" if self.tokens.configured else "tokenless")
        return f"{hashlib.sha256(seen.encode()).hexdigest()[:8]}/{rights}"
