"""The in-flight limit of one ingress replica: a request past it is answered 503 at once."""

import logging
from collections import Counter
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Receive, Scope, Send

from . import metrics
from .json_answers import busy

log = logging.getLogger("ray.serve")


@dataclass
class InFlight:
    """The requests one replica works on now, in all and per client address: the limit's own counts,
    which the ingress's `stats` shows."""

    total: int = 0
    by_client: Counter[str] = field(default_factory=Counter)


class InFlightLimit:
    """Answer 503 at once when this replica already works on `limit` requests, or on `per_client` of
    one client address, instead of queueing without bound: the browser retries after `Retry-After`,
    the server stays responsive, and one client's flood leaves room for the others."""

    def __init__(self, app: ASGIApp, limit: int, per_client: int, counts: InFlight):
        self.app = app
        self.limit = limit
        self.per_client = per_client
        self.counts = counts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = (scope.get("client") or ("", 0))[0]
        counts = self.counts
        mine = counts.by_client[client] >= self.per_client
        if mine or counts.total >= self.limit:
            log.warning("answering 503: %d requests in flight, %d of them from this client",
                        counts.total, counts.by_client[client])
            metrics.request_rejected("client_in_flight" if mine else "in_flight")
            message = (f"You have {counts.by_client[client]} requests in flight, the most one client may; "
                       if mine else f"The server is busy with {counts.total} requests; ")
            await busy(message + "try again in a moment.")(scope, receive, send)
            return
        counts.total += 1
        counts.by_client[client] += 1
        try:
            await self.app(scope, receive, send)
        finally:
            counts.total -= 1
            counts.by_client[client] -= 1
            if not counts.by_client[client]:
                del counts.by_client[client]
