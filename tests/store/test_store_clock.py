"""One clock for every time the store writes or compares (leases, last use, the age of rows): the
database's. Replicas whose own clocks run minutes ahead of or behind it, and of each other, neither
let a live lease lapse, nor keep a dead one, nor prune an image or translation that was just used.

A replica's clock is this process's (`service.store._now`, what the store read before), shifted for
the calls each replica makes. On PostgreSQL the database's clock is the server's; on SQLite it is
the machine's as SQLite reads it, which every process using the file shares (SQLite is one machine):
the shifted clocks in these tests stand for replicas that cannot exist there, and show that nothing
but SQLite's own clock is read. A machine whose clock is wrong moves every time together."""

from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

import service.store
from core.boxes import Block, Box
from service.store import ImageRow, RunKey, Store, TextRow, TranslationRunRow
from tests.support.stored import TSL
from tests.support.waiting import wait_for

SKEW = timedelta(minutes=20)
BOX = RunKey("box", "en", "{}")


class ReplicaClocks:
    """Each `on(offset)` block runs on a replica whose clock is `offset` off the true time."""

    def __init__(self, monkeypatch):
        self.offset = timedelta(0)
        true_now = service.store._now
        monkeypatch.setattr(service.store, "_now", lambda: true_now() + self.offset)

    @contextmanager
    def on(self, offset: timedelta):
        self.offset = offset
        try:
            yield
        finally:
            self.offset = timedelta(0)


@pytest.fixture
def clocks(monkeypatch) -> ReplicaClocks:
    return ReplicaClocks(monkeypatch)


@pytest.mark.parametrize("owner, other", [(-SKEW, SKEW), (SKEW, -SKEW), (-SKEW, timedelta(0))],
                         ids=["owner-behind", "owner-ahead", "owner-behind-other-true"])
def test_a_live_lease_holds_for_every_replica_whatever_their_clocks(database_url, clocks, owner, other):
    owning, watching = Store(database_url), Store(database_url)
    with clocks.on(owner):
        assert owning.claim("work", "owner", lease_s=60)
    with clocks.on(other):
        assert watching.is_claimed("work") and not watching.claim("work", "other", lease_s=60)
    with clocks.on(owner):
        owning.renew("work", "owner", lease_s=60)
    with clocks.on(other):
        assert watching.is_claimed("work") and not watching.claim("work", "other", lease_s=60)


@pytest.mark.parametrize("owner, other", [(SKEW, -SKEW), (SKEW, timedelta(0))], ids=["ahead-behind", "ahead-true"])
def test_a_dead_owners_lease_lapses_for_every_replica_whatever_their_clocks(database_url, clocks, owner, other):
    """The owner (its clock ahead) takes a short lease and dies; the other replica takes the work over
    once the lease has run out on the database's clock, not minutes later."""
    owning, watching = Store(database_url), Store(database_url)
    with clocks.on(owner):
        assert owning.claim("work", "owner", lease_s=0.5)
    with clocks.on(other):
        wait_for(lambda: watching.claim("work", "other", lease_s=60), 30, "the dead owner's lease lapsing",
                 interval_s=0.05)
        assert watching.is_claimed("work")


def test_what_replicas_with_skewed_clocks_just_used_is_not_pruned_and_what_is_stale_is(database_url, clocks):
    """A replica whose clock runs behind stores and uses an image and a translation; a replica whose
    clock runs ahead prunes what was unused for 30 minutes (the skews add up to 40). Rows really 40
    minutes old are pruned, whichever replica prunes."""
    behind, ahead = Store(database_url), Store(database_url)
    block = Block(Box(0, 0, 10, 5), [[Box(0, 0, 10, 5)]])
    with clocks.on(-SKEW):
        for n in range(3):
            behind.save_blocks(f"{n:032x}", BOX, [block])
        behind.touch_images([f"{1:032x}"])
        behind.save_translations({"fresh": "fresca", "stale": "rancia"}, TSL)
    long_ago = datetime.now(UTC) - timedelta(minutes=40)
    with behind._session() as session:
        session.execute(update(ImageRow).where(ImageRow.md5 == f"{2:032x}").values(last_used=long_ago))
        stale = select(TextRow.id).where(TextRow.text == "rancia").scalar_subquery()
        session.execute(update(TranslationRunRow).where(TranslationRunRow.result_id == stale).values(created=long_ago))
    with clocks.on(SKEW):
        removed = ahead.prune(max_age=timedelta(minutes=30))
    assert removed["images"] == 1 and removed["translations"] == 1
    assert [ahead.has_image(f"{n:032x}") for n in range(3)] == [True, True, False]
    assert ahead.find_translations(["fresh", "stale"], TSL, False) == {"fresh": "fresca"}
    with clocks.on(-SKEW):
        assert behind.prune(max_age=timedelta(minutes=30)) == {"images": 0, "translations": 0, "texts": 0}


def test_the_store_never_reads_a_replicas_clock(database_url, monkeypatch):
    """Every write and comparison of times takes the database's: the replica's clock may be anything."""

    def no_clock():
        raise AssertionError("the store read the replica's clock")

    store = Store(database_url)
    monkeypatch.setattr(service.store, "_now", no_clock)
    block = Block(Box(0, 0, 10, 5), [[Box(0, 0, 10, 5)]])
    [saved] = store.save_blocks("0" * 32, BOX, [block])
    store.replace_run("0" * 32, BOX, RunKey("ocr", "en", "{}"), [block], ["text"])
    store.save_translations({"text": "texto"}, TSL)
    store.set_manual_translation("text", "en", "es", "mío")
    store.touch_images(["0" * 32])
    assert store.claim("work", "a", lease_s=60) and store.is_claimed("work")
    store.renew("work", "a", lease_s=60)
    store.release("work", "a")
    assert store.prune(max_age=timedelta(days=1), max_images=10) == {"images": 0, "translations": 0, "texts": 0}
    assert saved.id not in {s.id for s in store.find_blocks("0" * 32, BOX)}
