"""Identical work computed once: within an ingress replica (one shared task), and across the ingress
replicas that share a store (a work claim in the database).

A claim has an owner, a short lease on the database's clock and a heartbeat that renews it while the
work runs: when its replica dies, the others take the work over within one lease. Waiters give up
waiting after a deadline and compute the work themselves.
"""

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

from .off_loop import in_thread
from .store import Store

log = logging.getLogger(__name__)
T = TypeVar("T")

CLAIM_LEASE_S = 20.0
"""A claim not renewed for this long is taken over: its replica is gone."""
POLL_S = 0.1
WAIT_DEADLINE_S = 120.0
"""A waiter computes the work itself after this long, whatever the claim says."""


def claim_name(key: tuple) -> str:
    """The store's name for the work `key` identifies (the same in every replica)."""
    return hashlib.sha256(repr(key).encode()).hexdigest()


class Coalescer:
    def __init__(self, store: Store, lease_s: float = CLAIM_LEASE_S, wait_deadline_s: float = WAIT_DEADLINE_S,
                 across_replicas: bool = True):
        self.store = store
        self.across_replicas = across_replicas
        """Claims in the store share work with the other ingress replicas; off, only this replica's
        identical requests share it (one ingress replica: no claim is written or read)."""
        self.lease_s = lease_s
        self.wait_deadline_s = wait_deadline_s
        self.owner = uuid.uuid4().hex
        """This replica's name on its claims: only it renews or releases them."""
        self._in_flight: dict[tuple, asyncio.Future] = {}

    async def once(self, key: tuple, work: Callable[[], Awaitable[T]],
                   stored: Callable[[], T | None]) -> T:
        """`work()`, unless an identical call is in flight here (its result is shared) or in another
        replica (its stored result, read with `stored()`, is returned once it is done)."""
        if key in self._in_flight:
            log.info("joining an identical request already in flight")
            return await asyncio.shield(self._in_flight[key])
        task = asyncio.ensure_future(self._claimed(claim_name(key), work, stored) if self.across_replicas
                                     else work())
        self._in_flight[key] = task
        task.add_done_callback(lambda _: self._in_flight.pop(key, None))
        return await asyncio.shield(task)

    async def _claimed(self, claim: str, work: Callable[[], Awaitable[T]], stored: Callable[[], T | None]) -> T:
        deadline = time.monotonic() + self.wait_deadline_s
        while True:
            if await in_thread(self.store.claim, claim, self.owner, self.lease_s):
                heartbeat = asyncio.create_task(self._renew(claim))
                try:
                    return await work()
                finally:
                    heartbeat.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await heartbeat
                    await in_thread(self.store.release, claim, self.owner)
            log.info("waiting for another replica computing the same request")
            while await in_thread(self.store.is_claimed, claim):
                if time.monotonic() > deadline:
                    log.warning("gave up waiting for another replica after %.0f s: computing it here",
                                self.wait_deadline_s)
                    return await work()
                await asyncio.sleep(POLL_S)
            result = await in_thread(stored)
            if result is not None:
                return result

    async def _renew(self, claim: str) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 4)
            await in_thread(self.store.renew, claim, self.owner, self.lease_s)

