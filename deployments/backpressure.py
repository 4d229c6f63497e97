"""The in-flight limit of one ingress replica: a request past it is answered 503 at once."""

import logging
from collections import Counter

from starlette.types import ASGIApp, Receive, Scope, Send

from . import metrics
from .json_answers import busy

log = logging.getLogger("ray.serve")


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
            await busy(message + "try again in a moment.")(scope, receive, send)
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
