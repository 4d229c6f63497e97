"""The store's writes that depend on something read before them, with two requests interleaved at
the store's calls and statements in a fixed order (never by timing), on SQLite and PostgreSQL: a
forced re-run or a prune between a request's read and its write, writers of the same rows, and a
glossary's limit counted before adding to it.

`interleave` runs the first request in a thread until a statement of its own pauses it, then the
second one until it has finished or waits for a lock the first one holds, then lets the first go on.
"""

import concurrent.futures
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import create_engine, event, func, select, text, update
from sqlalchemy.pool import NullPool

from core.boxes import Block, Box
from core.glossary import Glossary
from service.store import (
    BlockRow,
    ImageRow,
    OCRRunRow,
    RunKey,
    Store,
    TextRow,
    TranslationKey,
    TranslationRunRow,
    WorkClaimRow,
)
from tests.support.stored import BOX, MD5, OCR, TSL
from tests.support.waiting import wait_for

OTHER_OCR = RunKey("ocr", "en", '{"psm":6}')
"""A plain request's OCR options that differ from the forced re-run's."""
DEADLINE_S = 60


def block(l: int, b: int, r: int, t: int) -> Block:
    return Block(Box(l, b, r, t), [[Box(l, b, r, t)]])




class _Statements:
    """What a store's connections are executing right now."""

    def __init__(self, store: Store):
        self.running: str | None = None
        event.listen(store.engine, "before_cursor_execute", self._before)
        event.listen(store.engine, "after_cursor_execute", self._after)

    def _before(self, _conn, _cursor, statement, *_rest):
        self.running = statement

    def _after(self, *_args):
        self.running = None

    def writing(self) -> bool:
        return self.running is not None and self.running.lstrip().split(None, 1)[0].upper() in (
            "INSERT", "UPDATE", "DELETE")


def interleave(first: Callable[[], Any], pause_after: str, first_store: Store,
               second: Callable[[], Any], second_store: Store, before: bool = False) -> tuple[Any, Any]:
    """`first()` runs until its store has executed a statement matching `pause_after` (a regular
    expression; `before`: until it is about to execute it), then `second()` runs until it returns or
    is provably waiting for a lock that `first` holds, then `first` goes on. What each returned (an
    exception is raised)."""
    paused, go = threading.Event(), threading.Event()
    holds_sqlite_write_lock = []
    hook = "before_cursor_execute" if before else "after_cursor_execute"

    def pause(_conn, cursor, statement, *_rest):
        if not paused.is_set() and re.search(pause_after, statement):
            if first_store.engine.dialect.name == "sqlite":
                holds_sqlite_write_lock.append(cursor.connection.in_transaction)  # it has written: SQLite's lock
            paused.set()
            assert go.wait(DEADLINE_S), "never told to go on"

    event.listen(first_store.engine, hook, pause)
    statements = _Statements(second_store)
    watcher = (create_engine(second_store.engine.url, poolclass=NullPool)
               if second_store.engine.dialect.name == "postgresql" else None)

    def second_waits() -> bool:
        if watcher is None:  # SQLite: a write while the first one holds the one write lock waits for it
            return bool(holds_sqlite_write_lock and holds_sqlite_write_lock[0]) and statements.writing()
        with watcher.connect() as connection:
            return connection.scalar(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'")) > 0

    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            try:
                ran_first = pool.submit(first)
                wait_for(lambda: paused.is_set() or ran_first.done(), DEADLINE_S, "the first request to pause",
                         interval_s=0.01)
                assert not ran_first.done(), f"the first request never executed {pause_after!r}: {ran_first.result()}"
                ran_second = pool.submit(second)
                wait_for(lambda: ran_second.done() or second_waits(), DEADLINE_S,
                         "the second request to finish or wait", interval_s=0.01)
            finally:
                go.set()
            return ran_first.result(DEADLINE_S), ran_second.result(DEADLINE_S)
    finally:
        event.remove(first_store.engine, hook, pause)
        if watcher is not None:
            watcher.dispose()


def _count(store: Store, row) -> int:
    with store._session() as session:
        return session.scalar(select(func.count()).select_from(row))


# -- OCR texts and a forced re-run of the box run they were read on ------------------------------------------------

OLD = [block(0, 0, 10, 5), block(20, 20, 30, 30)]
NEW = [block(1, 1, 9, 4), block(40, 40, 50, 50)]


def _replaced_under_the_reader(reader: Store, forcer: Store, read, when: str) -> None:
    """The forced re-run replaces the image's blocks after the reader read them, before (or while) the
    reader stores the OCR texts it read on them."""
    forced = lambda: forcer.replace_run(MD5, BOX, OCR, NEW, ["new 0", "new 1"])  # noqa: E731
    saved = lambda: reader.save_ocr({s.id: f"old {n}" for n, s in enumerate(read)}, OTHER_OCR)  # noqa: E731
    if when == "committed":
        forced()
        saved()
    else:  # the re-run has deleted the old blocks and not committed yet when the reader stores its texts
        interleave(forced, r"^DELETE FROM blocks", forcer, saved, reader)


@pytest.mark.parametrize("when", ["committed", "in flight"])
def test_ocr_texts_are_never_stored_on_blocks_a_forced_rerun_made_after_they_were_read(database_url, when):
    """A plain request with other OCR options reads an image's blocks; a forced re-run replaces them;
    the plain request then stores its texts. They must not land on the new blocks (SQLite handed the
    deleted blocks' ids to the new ones: the defect), nor fail the request."""
    reader, forcer = Store(database_url), Store(database_url)
    reader.save_blocks(MD5, BOX, OLD)
    read = reader.find_blocks(MD5, BOX)
    assert reader.find_ocr([s.id for s in read], OTHER_OCR) == {}  # to read: the request runs its OCR model
    _replaced_under_the_reader(reader, forcer, read, when)
    found = reader.find_blocks(MD5, BOX)
    assert [s.block for s in found] == NEW
    assert not {s.id for s in found} & {s.id for s in read}  # never the ids of blocks that were deleted
    assert reader.find_ocr([s.id for s in found], OTHER_OCR) == {}  # the reader's texts: on no block
    assert reader.find_ocr([s.id for s in found], OCR) == {found[0].id: "new 0", found[1].id: "new 1"}
    assert reader.integrity_problems() == []


def test_a_block_id_is_never_handed_out_twice(database_url):
    """Whatever deletes the newest blocks (a forced re-run, a prune), later blocks get new ids, also
    after the store is opened again."""
    store = Store(database_url)
    first = [s.id for s in store.save_blocks(MD5, BOX, OLD)]
    replaced = [s.id for s in store.replace_run(MD5, BOX, OCR, NEW, ["a", "b"])]
    with store._session() as session:
        session.execute(update(ImageRow).values(last_used=datetime(2000, 1, 1, tzinfo=UTC)))
    assert store.prune(max_images=0)["images"] == 1
    store.close()
    again = Store(database_url)
    later = [s.id for s in again.save_blocks(f"{1:032x}", BOX, OLD)]
    assert min(replaced) > max(first) and min(later) > max(replaced)


def test_a_bulk_run_storing_a_run_while_a_forced_rerun_replaces_it_succeeds(database_url):
    """bulk's save_to_store finds the stored run, a forced re-run replaces it, then the bulk run stores
    its OCR texts, all in its one transaction (PostgreSQL aborted the transaction on the texts' dangling
    block ids, then failed the retry in it: the defect)."""
    from bulk.output import Result, save_to_store

    bulk, forcer = Store(database_url), Store(database_url)
    bulk.save_blocks(MD5, BOX, OLD)
    job = SimpleNamespace(box_key=BOX, ocr_key=OTHER_OCR, route=SimpleNamespace(key=TSL))
    result = Result(blocks=OLD, texts=["bulk 0", "bulk 1"], translations=["masa 0", "masa 1"])
    interleave(lambda: save_to_store(bulk, job, MD5, result), r"^SELECT blocks.id, blocks.vertical", bulk,
               lambda: forcer.replace_run(MD5, BOX, OCR, NEW, ["new 0", "new 1"]), forcer)
    found = bulk.find_blocks(MD5, BOX)
    assert [s.block for s in found] == NEW
    assert bulk.find_ocr([s.id for s in found], OCR) == {found[0].id: "new 0", found[1].id: "new 1"}
    assert bulk.find_ocr([s.id for s in found], OTHER_OCR) == {}
    assert bulk.find_translations(["bulk 0", "bulk 1"], TSL, False) == {"bulk 0": "masa 0", "bulk 1": "masa 1"}
    assert bulk.integrity_problems() == []


# -- texts a writer points to and a prune forgetting texts nothing uses -------------------------------------------

def _texts_only_an_old_translation_uses(store: Store) -> None:
    """'hello' and 'hola', used by one machine translation made in 2000: the next prune forgets them."""
    store.save_translations({"hello": "hola"}, TranslationKey("old", "en", "es", "{}"))
    with store._session() as session:
        session.execute(update(TranslationRunRow).values(created=datetime(2000, 1, 1, tzinfo=UTC)))


WRITERS = {
    "translations": lambda store, ids: store.save_translations({"hello": "hola"}, TSL),
    "manual translation": lambda store, ids: store.set_manual_translation("hello", "en", "es", "hola"),
    "ocr": lambda store, ids: store.save_ocr({ids[0]: "hello", ids[1]: "hola"}, OCR),
}


@pytest.mark.parametrize("pause_after", [r"^INSERT INTO texts", r"^SELECT texts.sha256, texts.id"])
@pytest.mark.parametrize("writer", list(WRITERS))
def test_a_prune_never_forgets_a_text_a_writer_is_about_to_point_to(database_url, writer, pause_after):
    """A writer has found the texts it stores (they exist: it inserts none) when a prune forgets them,
    nothing using them yet; the writer then points to them (PostgreSQL: a foreign key error, or a text
    that vanished between its insert and its read: the defect). It must succeed, its texts kept."""
    store, pruner = Store(database_url), Store(database_url)
    ids = [s.id for s in store.save_blocks(MD5, BOX, OLD)]
    _texts_only_an_old_translation_uses(store)
    _, removed = interleave(lambda: WRITERS[writer](store, ids), pause_after, store,
                            lambda: pruner.prune(max_age=timedelta(days=1)), pruner)
    assert removed["translations"] == 1 and removed["images"] == 0
    if writer == "ocr":
        assert store.find_ocr(ids, OCR) == {ids[0]: "hello", ids[1]: "hola"}
    else:
        found = (store.find_translations(["hello"], TSL, False) if writer == "translations"
                 else store.find_manual_translations(["hello"], "en", "es"))
        assert found == {"hello": "hola"}
    assert store.knows_text("hello") and store.knows_text("hola")
    pruner.prune(max_age=timedelta(days=1))  # in use now: kept
    assert store.knows_text("hello") and store.integrity_problems() == []


# -- an image a request stores a new run of, and a prune of stale images -------------------------------------------

def test_a_prune_never_forgets_an_image_a_request_is_storing_a_run_of(database_url):
    """An image last used long ago gets a detection run with another box model: a prune between the
    request finding the image and storing the run must neither fail the request (PostgreSQL: the image
    row gone under it) nor forget the run it just stored (SQLite: the image still looked stale)."""
    store, pruner = Store(database_url), Store(database_url)
    store.save_blocks(MD5, BOX, OLD)
    with store._session() as session:
        session.execute(update(ImageRow).values(last_used=datetime(2000, 1, 1, tzinfo=UTC),
                                                created=datetime(2000, 1, 1, tzinfo=UTC)))
    other_box = RunKey("other", "en", "{}")
    stored, removed = interleave(lambda: store.save_blocks(MD5, other_box, NEW), r"INSERT INTO images", store,
                                 lambda: pruner.prune(max_age=timedelta(days=1)), pruner)
    assert removed["images"] == 0 and [s.block for s in stored] == NEW
    assert [s.block for s in store.find_blocks(MD5, other_box)] == NEW
    assert pruner.prune(max_age=timedelta(days=1))["images"] == 0  # it was just used
    assert store.integrity_problems() == []


# -- work claims ---------------------------------------------------------------------------------------------------

def test_two_replicas_taking_over_one_expired_claim_at_once_get_one_owner(database_url):
    """Both see the dead owner's claim expired: one deletes it and takes it, the other takes nothing."""
    first, second = Store(database_url), Store(database_url)
    assert first.claim("work", "dead", lease_s=-60)  # its lease ran out a minute ago
    taken = interleave(lambda: first.claim("work", "a", lease_s=60), r"^DELETE FROM work_claims", first,
                       lambda: second.claim("work", "b", lease_s=60), second)
    assert taken == (True, False)
    with first._session() as session:
        assert session.execute(select(WorkClaimRow.key, WorkClaimRow.owner)).all() == [("work", "a")]


def test_an_owner_whose_lease_lapsed_renews_and_releases_nothing_of_its_successor(database_url):
    """The old owner is about to renew, the successor takes the claim over, the old owner's renewal and
    release then leave the successor's claim and lease alone."""
    old, successor = Store(database_url), Store(database_url)
    assert old.claim("work", "a", lease_s=-60)

    def renew_then_release():
        old.renew("work", "a", lease_s=3600)
        old.release("work", "a")

    _, taken = interleave(renew_then_release, r"^UPDATE work_claims", old,
                          lambda: successor.claim("work", "b", lease_s=60), successor, before=True)
    assert taken and successor.is_claimed("work")
    with old._session() as session:
        [(owner, expires)] = session.execute(select(WorkClaimRow.owner, WorkClaimRow.expires)).all()
        now = old._database_now(session)
    assert owner == "b" and (expires.replace(tzinfo=UTC) - now).total_seconds() < 120  # not the hour asked


# -- the reader's own rows: manual translations and glossary terms --------------------------------------------------

UPSERTS = {
    "manual translation": (lambda store, word: store.set_manual_translation("hello", "en", "es", word),
                           lambda store: store.translations_of("hello", "en", "es")),
    "glossary term": (lambda store, word: store.set_glossary_term("en", "es", "Naruto", word),
                      lambda store: [(term, translation) for term, translation in
                                     store.glossary("en", "es").as_dict().items()]),
}


@pytest.mark.parametrize("kind", list(UPSERTS))
def test_two_readers_setting_one_term_or_translation_at_once_leave_one_row_the_later_ones(database_url, kind):
    """One statement each, nothing read before it: the second writer waits for the first one's row and
    replaces it."""
    write, rows = UPSERTS[kind]
    first, second = Store(database_url), Store(database_url)
    write(first, "before")
    interleave(lambda: write(first, "first"), r"^INSERT INTO (manual_translations|glossary_terms)", first,
               lambda: write(second, "second"), second)
    assert [row[-1] for row in rows(first)] == ["second"]


def test_two_readers_adding_a_term_each_to_a_nearly_full_glossary_at_once_never_exceed_its_limit(
        database_url, monkeypatch):
    """The glossary endpoint counts the pair's terms, then adds the term: both readers counted before
    either added theirs, and both were let in (the defect). The store counts again in the transaction
    that adds one, after the pair's other writers: one is refused, and changing a term stays allowed."""
    import asyncio

    import core.glossary
    from core.errors import PayloadTooLarge
    from service.manual import ManualTranslations

    monkeypatch.setattr(core.glossary, "MAX_TERMS", 3)
    first, second = ManualTranslations(Store(database_url)), ManualTranslations(Store(database_url))
    for term in ("one", "two"):
        first.store.set_glossary_term("en", "es", term, term.upper())

    def add(glossary: ManualTranslations, term: str):
        try:
            return asyncio.run(glossary.set_glossary_term(term, term.upper(), "en", "es"))
        except PayloadTooLarge as exc:
            return exc

    added = interleave(lambda: add(first, "three"), r"^INSERT INTO glossary", first.store,
                       lambda: add(second, "four"), second.store)
    assert added[0] is None and isinstance(added[1], PayloadTooLarge), added
    assert "most terms it may (3)" in added[1].message
    assert sorted(first.store.glossary("en", "es").as_dict()) == ["one", "three", "two"]
    asyncio.run(second.set_glossary_term("two", "dos", "en", "es"))  # full: a new translation is still fine
    assert first.store.glossary("en", "es").as_dict()["two"] == "dos"


def test_a_translation_made_with_a_glossary_changed_meanwhile_is_stored_for_the_old_glossary(database_url):
    """A request reads the pair's glossary and translates with it; the reader changes the glossary;
    the request stores its translation. It is stored under the old glossary's digest (the key of every
    stored translation of a pair with a glossary), so requests with the new glossary translate again."""
    from service.jobs import Route, StageConfig

    store = Store(database_url)
    store.set_glossary_term("en", "es", "Naruto", "Naruto-kun")
    stage = StageConfig(SimpleNamespace(id="tsl"), {"favor_manual": True}, "{}")
    in_flight = Route("en", "es", stage, store.glossary("en", "es"))
    store.set_glossary_term("en", "es", "Naruto", "Naruto-san")
    store.save_translations({"Naruto runs": "Naruto-kun corre"}, in_flight.key)
    now = Route("en", "es", stage, store.glossary("en", "es"))
    assert now.key != in_flight.key and now.glossary == Glossary.of({"Naruto": "Naruto-san"})
    assert store.find_translations(["Naruto runs"], now.key, False) == {}
    assert store.find_translations(["Naruto runs"], in_flight.key, False) == {"Naruto runs": "Naruto-kun corre"}


def test_the_harness_pauses_where_it_is_told(database_url):
    """`interleave` itself: the second request ran while the first was paused (it saw the first's
    texts not yet committed, on both databases), and both finished."""
    first, second = Store(database_url), Store(database_url)
    seen = interleave(lambda: first.save_translations({"a": "b"}, TSL), r"^INSERT INTO texts", first,
                      lambda: second.knows_text("a"), second)
    assert seen == (None, False) and second.knows_text("a")
    assert _count(first, TextRow) == 2 and _count(first, OCRRunRow) == 0 and _count(first, BlockRow) == 0
