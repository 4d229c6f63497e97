"""Work claims across ingress replicas sharing a store, on SQLite and PostgreSQL: a dead owner
delays the others by at most its lease, a live one keeps its claim with its heartbeat."""

import asyncio
import time

from service.coalescing import Coalescer, claim_name
from service.store import Store

KEY = ("md5 of an image", "the job", False)


def test_a_dead_owners_claim_delays_the_work_by_at_most_its_lease(database_url):
    store = Store(database_url)
    assert store.claim(claim_name(KEY), "replica-killed-mid-work", lease_s=1.5)
    calls = []

    async def work():
        calls.append("computed")
        return "fresh"

    started = time.monotonic()
    result = asyncio.run(Coalescer(store, lease_s=1.5).once(KEY, work, stored=lambda: None))
    waited = time.monotonic() - started
    assert result == "fresh" and calls == ["computed"]
    assert 1.0 < waited < 1.5 + 1.5, waited  # waited for the lease, then took the work over


def test_a_live_owners_heartbeat_keeps_others_waiting_for_its_result(database_url):
    stored: dict[str, str] = {}
    calls = []

    async def slow_work():
        calls.append("first")
        await asyncio.sleep(2.5)  # longer than the lease: only the heartbeat keeps the claim
        stored["result"] = "computed once"
        return stored["result"]

    async def other_work():
        calls.append("second")
        return "computed twice"

    waiting_store, claims = Store(database_url), []
    claim = waiting_store.claim
    waiting_store.claim = lambda *args: claims.append(args) or claim(*args)  # a spy on the waiter's claims

    async def two_replicas():
        first, second = Coalescer(Store(database_url), lease_s=1.0), Coalescer(waiting_store, lease_s=1.0)
        running = asyncio.create_task(first.once(KEY, slow_work, stored=lambda: stored.get("result")))
        await asyncio.sleep(0.3)
        return await asyncio.gather(running, second.once(KEY, other_work, stored=lambda: stored.get("result")))

    assert asyncio.run(two_replicas()) == ["computed once", "computed once"]
    assert calls == ["first"]
    assert len(claims) == 1  # the waiter watched the claim until it went, not retaking it over and over
    assert not Store(database_url).is_claimed(claim_name(KEY))  # released by its owner


def test_one_ingress_replica_shares_identical_work_without_claims(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/s.db")
    claims = []
    store.claim = lambda *args: claims.append(args) or True  # a spy: any claim taken shows here
    calls = []

    async def work():
        calls.append("computed")
        await asyncio.sleep(0.3)
        return "fresh"

    async def both():
        coalescer = Coalescer(store, across_replicas=False)
        return await asyncio.gather(coalescer.once(KEY, work, lambda: None), coalescer.once(KEY, work, lambda: None))

    assert asyncio.run(both()) == ["fresh", "fresh"]
    assert calls == ["computed"] and claims == []


def test_each_work_call_has_its_own_claim_name_the_same_in_every_replica():
    assert claim_name(KEY) == claim_name(tuple(list(KEY)))
    assert len({claim_name(KEY), claim_name((*KEY[:2], True)), claim_name(("another image", "the job", False))}) == 3
