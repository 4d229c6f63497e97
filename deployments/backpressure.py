"""The in-flight limit of one ingress replica: a request past it is answered 503 at once."""

import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Receive, Scope, Send

from service.profiles import Reader

from . import metrics
from .json_answers import busy

log = logging.getLogger("ray.serve")


@dataclass
class InFlight:
    """The requests one replica works on now, in all, per client address and per reader profile (by its
    short id, never its key): the limit's own counts, which the ingress's `stats` shows."""

    total: int = 0
    by_client: Counter[str] = field(default_factory=Counter)
    by_profile: Counter[str] = field(default_factory=Counter)


class InFlightLimit:
    """Answer 503 at once when this replica already works on `limit` requests, or on its share of them
    for one sender, instead of queueing without bound: the browser retries after `Retry-After`, the
    server stays responsive, and one sender's flood leaves room for the others. A sender is a reader
    profile under its address (`per_profile`, wherever its requests come from: many readers behind one
    NAT are many profiles), else a client address (`per_client`; a key no profile has included)."""

    def __init__(self, app: ASGIApp, limit: int, per_client: int, per_profile: int, counts: InFlight,
                 profile_of: Callable[[Scope], Awaitable[Reader | None]]):
        self.app = app
        self.limit = limit
        self.per_client = per_client
        self.per_profile = per_profile
        self.counts = counts
        self.profile_of = profile_of
        """The reader profile a request's path names (`ApiContext.profile_of`), None for other requests."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.counts.total >= self.limit:  # full already: not even a key's lookup in the store
            await self._busy(False, 0, None)(scope, receive, send)
            return
        reader = await self.profile_of(scope)  # before the counts: no await between their check and change
        counts = self.counts
        if reader is None:
            held, sender, share = counts.by_client, (scope.get("client") or ("", 0))[0], self.per_client
        else:
            held, sender, share = counts.by_profile, reader.short_id, self.per_profile
        mine = held[sender] >= share
        if mine or counts.total >= self.limit:
            await self._busy(mine, held[sender], reader)(scope, receive, send)
            return
        counts.total += 1
        held[sender] += 1
        try:
            await self.app(scope, receive, send)
        finally:
            counts.total -= 1
            held[sender] -= 1
            if not held[sender]:
                del held[sender]

    def _busy(self, mine: bool, held: int, reader: Reader | None) -> ASGIApp:
        """The 503, logged and counted by reason: the sender's share, or the replica's limit."""
        sender = "this client" if reader is None else f"profile {reader.short_id}"
        log.warning("answering 503: %d requests in flight, %d of them from %s", self.counts.total, held, sender)
        if not mine:
            metrics.request_rejected("in_flight")
            message = f"The server is busy with {self.counts.total} requests; "
        elif reader is None:
            metrics.request_rejected("client_in_flight")
            message = f"You have {held} requests in flight, the most one client may; "
        else:
            metrics.request_rejected("profile_in_flight")
            message = f"This reader profile has {held} requests in flight, its share of the server; "
        return busy(message + "try again in a moment.")
