import concurrent.futures
import hashlib
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, func, inspect, select, text, update

from core.boxes import Block, Box
from core.slots import ModelSlots, chosen
from service.store import (
    Base,
    BlockRow,
    BoxRunRow,
    GlossaryRow,
    ImageRow,
    ManualTranslationRow,
    ModelChoiceRow,
    OCRRunRow,
    ProfileRow,
    RunKey,
    Selection,
    SelectionRow,
    SingleBoxRow,
    Store,
    TextRow,
    TranslationKey,
    TranslationRunRow,
    WorkClaimRow,
    _migration_scripts,
    main,
)
from tests.support.paths import ROOT
from tests.support.services import in_process_service
from tests.support.stored import BOX, MD5, OCR, TSL


def block(*boxes: Box) -> Block:
    return Block(box=Box(min(b.l for b in boxes), min(b.b for b in boxes), max(b.r for b in boxes),
                         max(b.t for b in boxes)), lines=[[b] for b in boxes])


def test_selection_and_usage_persist_across_restarts(database_url):
    url = database_url
    store = Store(url)
    store.update_selection(lang_src="ja", lang_dst="en", models=chosen(tsl="m1"))
    store.update_selection(models=chosen(tsl="m2"))
    store.update_selection(models=chosen(tsl="m2"))
    store.set_disabled_families(["apertium", "tesseract"])
    store.close()
    again = Store(url)
    selection = again.selection()
    assert (selection.lang_src, selection.lang_dst, selection.models.tsl) == ("ja", "en", "m2")
    assert again.usage("tsl") == {"m1": 1, "m2": 2}
    assert again.disabled_families() == {"apertium", "tesseract"}


def test_box_run_round_trip_keeps_order_and_lines(database_url):
    store = Store(database_url)
    blocks = [block(Box(0, 0, 10, 5), Box(0, 6, 8, 11)),
              Block(Box(50, 50, 60, 55), [[Box(50, 50, 60, 55)]], vertical=True)]
    saved = store.save_blocks(MD5, BOX, blocks)
    found = store.find_blocks(MD5, BOX)
    assert [s.block for s in found] == blocks and [s.id for s in found] == [s.id for s in saved]
    assert store.find_blocks(MD5, RunKey("box", "en", '{"x":1}')) is None
    assert store.find_blocks(MD5, RunKey("box", "ja", "{}")) is None


def test_forced_box_run_replaces_the_old_one_and_its_ocr(database_url):
    store = Store(database_url)
    first = store.save_blocks(MD5, BOX, [block(Box(0, 0, 10, 5))])
    store.save_ocr({first[0].id: "old"}, OCR)
    unforced = store.save_blocks(MD5, BOX, [block(Box(7, 7, 9, 9))])
    assert [s.id for s in unforced] == [s.id for s in first]  # the stored run stands
    second = store.save_blocks(MD5, BOX, [block(Box(1, 1, 9, 4)), block(Box(20, 20, 30, 30))],
                               replace=True)
    assert len(store.find_blocks(MD5, BOX)) == 2
    assert store.find_ocr([s.id for s in second], OCR) == {}
    with store._session() as session:
        assert session.scalar(select(func.count()).select_from(OCRRunRow)) == 0


def test_a_forced_rerun_replaces_only_its_own_run(database_url):
    """A forced re-run replaces the image's run of its box model, language and options, with its
    blocks, boxes and OCR; the runs of other images, models, languages and options stay."""
    store = Store(database_url)
    others = [(f"{1:032x}", BOX), (MD5, RunKey("other", "en", "{}")), (MD5, RunKey("box", "ja", "{}")),
              (MD5, RunKey("box", "en", '{"x":1}'))]
    for md5, key in others:
        [saved] = store.save_blocks(md5, key, [block(Box(0, 0, 10, 5))])
        store.save_ocr({saved.id: "kept"}, OCR)
    [old] = store.save_blocks(MD5, BOX, [block(Box(0, 0, 10, 5))])
    store.save_ocr({old.id: "old"}, OCR)
    new = [block(Box(1, 1, 9, 4)), block(Box(20, 20, 30, 30))]
    store.replace_run(MD5, BOX, OCR, new, ["new 1", "new 2"])
    for md5, key in others:
        [kept] = store.find_blocks(md5, key)
        assert kept.block == block(Box(0, 0, 10, 5)) and store.find_ocr([kept.id], OCR) == {kept.id: "kept"}
    found = store.find_blocks(MD5, BOX)
    texts = store.find_ocr([s.id for s in found], OCR)
    assert [s.block for s in found] == new and [texts[s.id] for s in found] == ["new 1", "new 2"]
    assert store.integrity_problems() == []


def test_manual_translation_wins_only_when_favoured(database_url):
    store = Store(database_url)
    store.save_translations({"hello": "hola"}, TSL)
    assert store.find_translations(["hello"], TSL, True) == {"hello": "hola"}
    store.set_manual_translation("hello", "en", "es", "¡hola!")
    store.set_manual_translation("hello", "en", "es", "¡buenas!")  # replaces
    assert store.find_translations(["hello"], TSL, True) == {"hello": "¡buenas!"}
    assert store.find_translations(["hello"], TSL, False) == {"hello": "hola"}
    assert store.translations_of("hello", "en", "es") == [("manual", "¡buenas!"), ("tsl", "hola")]
    assert store.translations_of("hello", "en", "fr") == []
    assert store.translations_of("never seen", "en", "es") is None


def test_a_database_of_one_reader_becomes_the_default_profiles(database_url):
    """Migration 0006: the selection, manual translations and glossary that a server stored before
    profiles are the default profile's, found where the bare paths look; another profile starts empty."""
    config, head = _migration_scripts()
    engine = create_engine(database_url)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0005")
        for key, value in {"lang_src": "en", "lang_dst": "es", "tsl_model": "apertium/eng-spa",
                           "disabled_families": "openai"}.items():
            connection.execute(text("INSERT INTO settings (key, value) VALUES (:key, :value)"),
                               {"key": key, "value": value})
        for words in ("hello", "hola", "¡buenas!"):
            connection.execute(text("INSERT INTO texts (sha256, text) VALUES (:sha, :text)"),
                               {"sha": hashlib.sha256(words.encode()).hexdigest(), "text": words})
        for model, result in (("tsl", "hola"), ("manual", "¡buenas!")):
            connection.execute(text(
                "INSERT INTO translation_runs (text_id, model, lang_src, lang_dst, options, result_id, created) "
                "SELECT (SELECT id FROM texts WHERE text = 'hello'), :model, 'en', 'es', :options, "
                "(SELECT id FROM texts WHERE text = :result), :created"),
                {"model": model, "options": "" if model == "manual" else "{}", "result": result,
                 "created": datetime.now(UTC)})
        connection.execute(text("INSERT INTO glossary VALUES ('en', 'es', 'Naruto', 'Naruto-kun')"))
    engine.dispose()
    store = Store(database_url)
    with store.engine.connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() == head
    assert store.selection() == Selection("en", "es", ModelSlots("", "", "apertium/eng-spa"))
    assert store.disabled_families() == {"openai"}
    assert store.find_translations(["hello"], TSL, True) == {"hello": "¡buenas!"}
    assert store.find_translations(["hello"], TSL, False) == {"hello": "hola"}
    assert store.glossary("en", "es").as_dict() == {"Naruto": "Naruto-kun"}
    assert store.counts() == {"images": 0, "machine translations": 1, "manual translations": 1, "glossary terms": 1}
    alice = store.create_profile("alice", "d" * 64)
    assert store.selection(alice.id) == Selection() and store.glossary("en", "es", alice.id).as_dict() == {}
    assert store.find_translations(["hello"], TSL, True, alice.id) == {"hello": "hola"}
    assert store.integrity_problems() == []


def test_a_profiles_own_model_choices_are_kept_per_language_and_go_with_the_profile(database_url):
    """Migration 0007: a database at 0006 keeps its profiles and selections and gains the models each profile
    chose itself, per source language (box, OCR) and language pair (translation); revoking a profile deletes
    its choices; the downgrade drops them and leaves the selections."""
    config, _ = _migration_scripts()
    engine = create_engine(database_url)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0006")
        connection.execute(text("INSERT INTO profiles (name, key_sha256, created) VALUES ('alice', :key, :now)"),
                           {"key": "a" * 64, "now": datetime.now(UTC)})
        connection.execute(text("INSERT INTO selections SELECT id, 'ja', 'en', 'easyocr/craft', 'tesseract/jpn', "
                                "'original' FROM profiles WHERE name = 'alice'"))
    engine.dispose()
    store = Store(database_url)
    alice = store.profile_named("alice").id
    assert store.selection(alice) == Selection("ja", "en", ModelSlots("easyocr/craft", "tesseract/jpn", "original"))
    assert store.own_choices("ja", "en", alice) == ModelSlots("", "", "")  # nothing chosen since
    store.choose_models(chosen(ocr="tesseract/jpn_vert", tsl="my/ja-en"), alice)
    store.update_selection(lang_dst="es", profile=alice)
    store.choose_models(chosen(tsl="my/ja-es"), alice)
    store.choose_models(chosen(tsl="my/ja-es-2"), alice)  # a later choice replaces the pair's
    assert store.own_choices("ja", "en", alice) == ModelSlots("", "tesseract/jpn_vert", "my/ja-en")
    assert store.own_choices("ja", "es", alice) == ModelSlots("", "tesseract/jpn_vert", "my/ja-es-2")
    assert store.own_choices("fr", "en", alice) == ModelSlots("", "", "") == store.own_choices("ja", "en")
    assert store.revoke_profile("alice")
    with store._session() as session:
        assert session.scalar(select(func.count()).select_from(ModelChoiceRow)) == 0
    store.choose_models(chosen(box="rapidocr/ppocr-v4-det"))  # no languages chosen yet: nothing to remember
    store.update_selection("ja", "en")
    store.choose_models(chosen(box="easyocr/craft"))
    store.close()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0006")
        assert "model_choices" not in inspect(connection).get_table_names()
        assert connection.execute(text("SELECT lang_src, box_model FROM selections")).all() == [("ja", "easyocr/craft")]
    engine.dispose()


def test_the_translations_of_a_text_are_its_own_in_its_language_pair_newest_first(database_url):
    store = Store(database_url)
    store.save_translations({"hello": "hola", "bye": "adiós"}, TSL)
    store.save_translations({"hello": "salut"}, TranslationKey("tsl", "en", "fr", "{}"))
    store.save_translations({"hello": "holà"}, TranslationKey("tsl", "ca", "es", "{}"))  # the same text read as Catalan
    store.save_translations({"hello": "buenas"}, TranslationKey("other", "en", "es", "{}"))
    assert store.translations_of("hello", "en", "es") == [("other", "buenas"), ("tsl", "hola")]
    with store._session() as session:  # the newer row made long ago: the time decides, not the row order
        session.execute(update(TranslationRunRow).where(TranslationRunRow.model == "other")
                        .values(created=datetime(2000, 1, 1, tzinfo=UTC)))
    assert store.translations_of("hello", "en", "es") == [("tsl", "hola"), ("other", "buenas")]
    with store._session() as session:  # made at the same moment: the row written last first
        session.execute(update(TranslationRunRow).values(created=datetime(2000, 1, 1, tzinfo=UTC)))
    assert store.translations_of("hello", "en", "es") == [("other", "buenas"), ("tsl", "hola")]


def test_the_manual_translations_of_a_text_are_its_own_in_its_language_pair(database_url):
    store = Store(database_url)
    store.save_translations({"hello": "hola"}, TSL)
    store.set_manual_translation("bye", "en", "es", "¡chao!")
    store.set_manual_translation("hello", "ca", "es", "¡hola, tú!")  # the same text read as Catalan
    store.set_manual_translation("hello", "en", "fr", "salut")
    assert store.translations_of("hello", "en", "es") == [("tsl", "hola")]
    store.set_manual_translation("hello", "en", "es", "¡buenas!")
    assert store.translations_of("hello", "en", "es") == [("manual", "¡buenas!"), ("tsl", "hola")]


def test_a_texts_detected_language_is_the_source_of_its_own_newest_translation(database_url):
    store = Store(database_url)
    store.save_translations({"hello": "hola"}, TranslationKey("tsl", "en", "es", "{}"))
    store.save_translations({"hallo": "hola"}, TranslationKey("tsl", "de", "es", "{}"))  # another text, newer
    assert (store.translated_from("hello", "es"), store.translated_from("hallo", "es")) == ("en", "de")
    assert store.translated_from("hello", "fr") is None and store.translated_from("never seen", "es") is None


def test_texts_are_stored_once(database_url):
    store = Store(database_url)
    store.save_translations({"a": "x", "b": "x"}, TSL)
    store.save_translations({"a": "y"}, TSL)  # a second writer: the first one's stands
    assert store.find_translations(["a", "b"], TSL, False) == {"a": "x", "b": "x"}
    store.save_translations({"a": "y"}, TSL, replace=True)  # a forced re-run replaces in place
    assert store.find_translations(["a", "b"], TSL, False) == {"a": "y", "b": "x"}
    with store._session() as session:
        assert session.scalar(select(func.count()).select_from(TranslationRunRow)) == 2
    assert store.knows_text("x") and store.knows_text("a") and not store.knows_text("z")


def test_migrations_build_exactly_the_models_schema(database_url):
    store = Store(database_url)
    with store.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        revision = MigrationContext.configure(connection).get_current_revision()
    assert differences == []
    assert revision == ScriptDirectory.from_config(_migration_scripts()[0]).get_current_head()
    assert store.integrity_problems() == []


def test_a_database_from_before_migrations_is_adopted_with_its_rows(database_url):
    engine = create_engine(database_url)
    later = {WorkClaimRow.__tablename__, GlossaryRow.__tablename__, ProfileRow.__tablename__,  # tables of
             SelectionRow.__tablename__, ManualTranslationRow.__tablename__,  # later migrations
             ModelChoiceRow.__tablename__}
    before_migrations = [table for table in Base.metadata.sorted_tables if table.name not in later]
    Base.metadata.create_all(engine, tables=before_migrations)  # as the store made them before migrations
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP INDEX ix_images_last_used")  # a column of migration 0004
        connection.exec_driver_sql("ALTER TABLE images DROP COLUMN last_used")
        connection.execute(text("INSERT INTO images (md5, created) VALUES (:md5, :created)"),
                           {"md5": MD5, "created": datetime.now(UTC)})
    engine.dispose()
    store = Store(database_url)
    assert store.has_image(MD5)
    store.save_translations({"hello": "hola"}, TSL)
    assert store.claim("work", "replica-a", lease_s=60)  # the work claims table of the latest migration
    with store.engine.connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() == _migration_scripts()[1]
    store.set_glossary_term("en", "es", "Naruto", "Naruto")  # the glossary of migration 0006


def test_a_database_at_an_earlier_revision_is_migrated_from_it_with_its_rows(database_url):
    """A database that an earlier release with migrations made is upgraded from its own revision, not
    adopted as one from before migrations (migrating it again from 0001 would create tables it has)."""
    config, head = _migration_scripts()
    engine = create_engine(database_url)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0003")
        connection.execute(text("INSERT INTO images (md5, created) VALUES (:md5, :created)"),
                           {"md5": MD5, "created": datetime.now(UTC)})
    engine.dispose()
    store = Store(database_url)
    assert store.has_image(MD5)
    with store.engine.connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() == head


def test_a_sqlite_store_makes_the_folders_of_its_file(tmp_path):
    """A data folder that does not exist yet is made on the first start, however deep."""
    store = Store(f"sqlite:///{tmp_path}/not/yet/store.sqlite3")
    store.save_blocks(MD5, BOX, [])
    assert store.has_image(MD5) and (tmp_path / "not" / "yet" / "store.sqlite3").is_file()


def test_concurrent_identical_writes_store_once_and_never_fail(database_url):
    """What several ingress replicas do when the same image arrives at each at once: one row per
    run, the first writer's, even when the writers' models answered differently (a model that is
    not deterministic, a replica with another version of it)."""
    stores = [Store(database_url) for _ in range(4)]
    blocks = [block(Box(0, 0, 10, 5), Box(0, 6, 8, 11)), block(Box(50, 50, 60, 55))]

    def write(i: int) -> list[int]:
        store = stores[i % len(stores)]
        saved = store.save_blocks(MD5, BOX, [block(Box(i, i, 10 + i, 5 + i))] if i else blocks)
        store.save_ocr({s.id: f"text {s.id} by writer {i}" for s in saved}, OCR)
        store.save_translations({f"text {s.id} by writer 0": f"texto {i}" for s in saved}
                                | {"shared": f"compartido {i}"}, TSL)
        store.update_selection(models=chosen(tsl="tsl"))
        return [s.id for s in saved]

    first = write(0)  # committed before the others start
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(write, range(1, 24)))
    assert all(ids == first for ids in results)  # every writer got the one stored run
    store = stores[0]
    with store._session() as session:
        counts = {table: session.scalar(select(func.count()).select_from(table))
                  for table in (ImageRow, BoxRunRow, OCRRunRow, TranslationRunRow)}
    assert counts == {ImageRow: 1, BoxRunRow: 1, OCRRunRow: 2, TranslationRunRow: 3}
    assert [s.block for s in store.find_blocks(MD5, BOX)] == blocks
    texts = store.find_ocr(first, OCR)
    assert texts == {block_id: f"text {block_id} by writer 0" for block_id in first}
    assert store.find_translations([*texts.values(), "shared"], TSL, False) == {
        **{text: "texto 0" for text in texts.values()}, "shared": "compartido 0"}
    assert store.usage("tsl") == {"tsl": 24}  # no lost update
    assert store.integrity_problems() == []


class _ChangingStages:
    """Fake model stages whose translation changes from one call to the next, as a new model version's would."""

    def __init__(self):
        self.version = 0

    async def detect(self, model_id, image, lang, options):
        return [Block(Box(0, 0, 40, 20), [[Box(0, 0, 40, 20)]])]

    async def read(self, model_id, crops, lang, options):
        return ["line" for _ in crops]

    async def translate(self, model_id, texts, src, dst, options, glossary):
        return [f"{text} translated v{self.version}" for text in texts]

    async def warm(self, kind, model_id):
        pass


def test_a_forced_rerun_replaces_the_stored_ocr_and_translations(database_url):
    """The first writer's rows stand against concurrent writers, but not against a forced re-run."""
    import asyncio

    from core.settings import Limits
    from service.jobs import Overrides
    from tests.support.images import encode, render

    stages = _ChangingStages()
    service = in_process_service(database_url, stages, Limits())
    asyncio.run(service.catalogue.set_lang("en", "es"))
    asyncio.run(service.catalogue.set_models(chosen(box="easyocr/craft", ocr="tesseract/eng", tsl="apertium/eng-spa")))
    contents, md5 = encode(render([((20, 20), "Forced")], size=(200, 80)))

    def run(**kwargs):
        arguments = {"contents": contents, "md5": md5, "force": False, "given_options": None,
                     "overrides": Overrides()} | kwargs
        return [(block.ocr, block.tsl) for block in asyncio.run(service.pipeline.run_ocrtsl(**arguments))]

    assert run() == [("line", "line translated v0")]
    stages.version = 1
    assert run() == run(contents=None) == [("line", "line translated v0")]  # stored, no model ran
    assert run(force=True) == [("line", "line translated v1")]
    assert run(contents=None) == [("line", "line translated v1")]  # what the forced run stored
    stages.version = 2
    assert asyncio.run(service.pipeline.run_tsl("line", Overrides(), None)) == "line translated v1"


def test_a_work_claim_has_one_owner_a_lease_and_a_heartbeat(database_url):
    first, second = Store(database_url), Store(database_url)
    assert first.claim("image-1", "a", lease_s=60)
    assert not second.claim("image-1", "b", lease_s=60) and second.is_claimed("image-1")
    assert second.claim("image-2", "b", lease_s=60)
    second.release("image-1", "b")  # not its claim: nothing happens, and its own claims stay
    assert first.is_claimed("image-1") and second.is_claimed("image-2")
    first.release("image-1", "a")
    assert not second.is_claimed("image-1")
    if time.time() % 1 > 0.45:  # the short claim and its check within one second: a clock that counted whole
        time.sleep(1.01 - time.time() % 1)  # seconds (SQLite's CURRENT_TIMESTAMP) would still see it held
    assert second.claim("image-1", "b", lease_s=0.3)
    first.renew("image-1", "a", lease_s=60)  # not its claim: the lease stays short
    time.sleep(0.4)
    assert not first.is_claimed("image-1")  # its owner stopped renewing: taken over
    assert first.claim("image-1", "a", lease_s=0.3) and first.claim("image-3", "a", lease_s=0.3)
    first.renew("image-1", "a", lease_s=60)  # the heartbeat of one claim: the owner's other claims expire
    time.sleep(0.4)
    assert first.is_claimed("image-1") and not second.claim("image-1", "b", lease_s=60)
    assert not first.is_claimed("image-3")


def _image_with_everything(store: Store, md5: str, text: str) -> None:
    [saved] = store.save_blocks(md5, BOX, [block(Box(0, 0, 10, 5))])
    store.save_ocr({saved.id: text}, OCR)
    store.save_translations({text: text.upper()}, TSL)


def test_retention_forgets_the_least_recently_used_and_keeps_manual_translations(database_url):
    store = Store(database_url)
    for n in range(3):
        _image_with_everything(store, f"{n:032x}", f"text {n}")
    store.set_manual_translation("text 0", "en", "es", "mine")
    store.touch_images([f"{0:032x}"])  # asked for again: now the most recently used
    removed = store.prune(max_images=1)
    assert removed == {"images": 2, "translations": 0, "texts": 0}  # their texts are still translated
    assert [store.has_image(f"{n:032x}") for n in range(3)] == [True, False, False]
    assert store.find_translations(["text 0"], TSL, True) == {"text 0": "mine"}
    with store._session() as session:
        assert session.scalar(select(func.count()).select_from(BlockRow)) == 1  # cascaded to boxes and OCR
        assert session.scalar(select(func.count()).select_from(OCRRunRow)) == 1
    assert store.prune(max_age=timedelta(days=1)) == {"images": 0, "translations": 0, "texts": 0}
    time.sleep(0.05)
    removed = store.prune(max_age=timedelta(seconds=0.01))
    assert removed["images"] == 1 and removed["translations"] == 3 and removed["texts"] > 0
    assert store.find_translations(["text 0"], TSL, True) == {"text 0": "mine"}
    assert store.integrity_problems() == []


def _used_in_2000(store: Store, md5: str, last_used: datetime | None = datetime(2000, 1, 1, tzinfo=UTC)) -> None:
    with store._session() as session:
        session.execute(update(ImageRow).where(ImageRow.md5 == md5).values(
            last_used=last_used, created=datetime(2000, 1, 1, tzinfo=UTC)))


def test_pruning_by_age_and_count_together_counts_both_and_breaks_ties_by_age_of_the_row(database_url):
    store = Store(database_url)
    md5s = [f"{n:032x}" for n in range(5)]
    for md5 in md5s:
        store.save_blocks(md5, BOX, [])
    _used_in_2000(store, md5s[0], last_used=None)  # never marked used (a database from before 0004): its creation
    assert store.prune(max_age=timedelta(days=365 * 10), max_images=5)["images"] == 1
    store.save_blocks(md5s[0], BOX, [])
    _used_in_2000(store, md5s[0])
    _used_in_2000(store, md5s[1])
    moment = datetime(2020, 1, 1, tzinfo=UTC)
    for md5 in md5s[2:]:
        _used_in_2000(store, md5, last_used=moment)  # used at the same moment: the newest row is kept
    removed = store.prune(max_age=timedelta(days=365 * 10), max_images=1)
    assert removed["images"] == 4  # two too old, then two more beyond the count
    assert [store.has_image(md5) for md5 in md5s] == [False, False, False, False, True]


def test_the_operators_commands_in_process(tmp_path, capsys, monkeypatch):
    """`python -m service.store` is `main`: the prune options, the check, and a command required."""
    url = f"sqlite:///{tmp_path}/store.sqlite3"
    store = Store(url)
    for n in range(3):
        _image_with_everything(store, f"{n:032x}", f"text {n}")
    _used_in_2000(store, f"{0:032x}")
    assert main(["prune", "--max-age-days", "30.5", url]) == 0
    assert capsys.readouterr().out == f"pruned {url}: 1 images, 0 translations, 0 texts\n"
    assert main(["prune", "--max-images", "1", url]) == 0
    assert capsys.readouterr().out == f"pruned {url}: 1 images, 0 translations, 0 texts\n"
    assert main(["check", url]) == 0 and capsys.readouterr().out == f"store is consistent: {url}\n{SQLITE_CHECKED}\n"
    monkeypatch.setenv("OCR_SERVE_DATA_DIR", str(tmp_path / "default"))  # what a bare command would open
    for no_command in ([], [url]):
        with pytest.raises(SystemExit):
            main(no_command)


def test_the_operators_commands_refuse_a_count_that_is_not_a_number(tmp_path, capsys):
    """`--max-images` is parsed as a whole number: a word is refused by the parser (exit 2, usage on
    stderr) before anything is opened or deleted."""
    url = f"sqlite:///{tmp_path}/store.sqlite3"
    store = Store(url)
    _image_with_everything(store, f"{0:032x}", "text 0")
    for count in ("all", "1.5"):
        with pytest.raises(SystemExit) as exit_:
            main(["prune", "--max-images", count, url])
        assert exit_.value.code == 2 and "invalid int value" in capsys.readouterr().err
    assert store.has_image(f"{0:032x}")


def test_the_operators_commands_default_to_the_servers_database(tmp_path, capsys, monkeypatch):
    """Without a URL the commands open the server's own store: the environment's URL when it is set."""
    url = f"sqlite:///{tmp_path}/from-environment.sqlite3"
    Store(url)
    monkeypatch.setenv("OCR_SERVE_DATABASE_URL", url)
    assert main(["check"]) == 0 and capsys.readouterr().out == f"store is consistent: {url}\n{SQLITE_CHECKED}\n"
    assert main(["prune", "--max-images", "5"]) == 0
    assert capsys.readouterr().out == f"pruned {url}: 0 images, 0 translations, 0 texts\n"


def test_the_operators_commands_never_print_the_database_password(postgres, capsys):
    """The URL in the commands' output names the database with its password masked (trust
    authentication ignores the password, so the command still connects)."""
    url = postgres.new_database().replace("postgres@", "postgres:s3cret-word@")
    assert main(["check", url]) == 0
    out = capsys.readouterr().out
    assert out == (f"store is consistent: {url.replace('s3cret-word', '***')}\n"
                   f"{SQLITE_CHECKED.replace(SQLITE_ITSELF, '')}\n") and "s3cret" not in out


def test_the_operators_prune_and_check_commands(tmp_path):
    """`python -m service.store prune|check`, as an operator runs them, on a server's SQLite store."""
    url = f"sqlite:///{tmp_path}/store.sqlite3"
    store = Store(url)
    for n in range(3):
        _image_with_everything(store, f"{n:032x}", f"text {n}")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "service.store", *args, url], capture_output=True, text=True,
                              cwd=ROOT, timeout=120)

    pruned = run("prune", "--max-images", "1")
    assert pruned.returncode == 0 and "2 images" in pruned.stdout, pruned.stderr
    assert sum(store.has_image(f"{n:032x}") for n in range(3)) == 1
    checked = run("check")
    assert checked.returncode == 0 and "store is consistent" in checked.stdout
    with sqlite3.connect(tmp_path / "store.sqlite3") as raw:  # a dangling row, as a crash could leave
        raw.execute("INSERT INTO single_boxes (block_id, line, position, l, b, r, t) VALUES (999, 0, 0, 0, 0, 1, 1)")
    broken = run("check")
    assert broken.returncode == 1 and "single_boxes" in broken.stdout


SQLITE_ITSELF = "SQLite's integrity_check, "
SQLITE_CHECKED = (f"checked: {SQLITE_ITSELF}13 foreign keys of 15 tables, runs written in part (blocks, lines, boxes, "
                  "OCR); not: whether stored texts are what the models give now")
"""The check command's last line, saying what it covered (PostgreSQL: the same but SQLite's own check)."""


def check_command(url: str) -> subprocess.CompletedProcess:
    """The operator's `python -m service.store check`, run as the operator runs it."""
    return subprocess.run([sys.executable, "-m", "service.store", "check", url], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def test_the_check_command_finds_half_written_runs_and_dangling_rows(database_url, capsys):
    """What a crash, a restore with its checks off or a hand edit could leave, on either database."""
    store = Store(database_url)
    _image_with_everything(store, f"{1:032x}", "sound")
    checked = check_command(database_url)
    assert checked.returncode == 0 and "store is consistent" in checked.stdout, checked.stdout + checked.stderr
    blocks, singles = BlockRow.__table__, SingleBoxRow.__table__
    with store.engine.begin() as connection:  # a run whose second block and part of its OCR are missing
        image_id = connection.scalar(select(ImageRow.id).where(ImageRow.md5 == f"{1:032x}"))
        run_id = connection.execute(BoxRunRow.__table__.insert().values(
            image_id=image_id, model="half", lang="en", options="{}", created=datetime.now(UTC))
        ).inserted_primary_key[0]
        block_ids = [connection.execute(blocks.insert().values(
            run_id=run_id, position=position, vertical=False, l=0, b=0, r=1, t=1)).inserted_primary_key[0]
            for position in (0, 2)]
        for block_id in block_ids:
            connection.execute(singles.insert().values(block_id=block_id, line=0, position=0, l=0, b=0, r=1, t=1))
        connection.execute(singles.insert().values(block_id=block_ids[1], line=2, position=0, l=0, b=0, r=1, t=1))
        for position in (0, 2):  # line 0 at 0, 0, 2: a box written twice, one missing, as many as 0..2 holds
            connection.execute(singles.insert().values(
                block_id=block_ids[0], line=0, position=position, l=0, b=0, r=1, t=1))
        text_id = connection.scalar(select(TextRow.id).where(TextRow.text == "sound"))
        connection.execute(OCRRunRow.__table__.insert().values(
            block_id=block_ids[0], model="ocr", lang="en", options="{}", text_id=text_id))
    broken = check_command(database_url)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    *problems, checked = broken.stdout.splitlines()
    assert store.integrity_problems() == problems  # the command prints what the store finds, then what it checked
    assert checked == store.coverage() and checked.startswith("checked: ")
    assert main(["check", database_url]) == 1 and capsys.readouterr().out == broken.stdout
    assert f"box run {run_id} is half written: its 2 blocks are at positions 0..2" in broken.stdout
    assert f"box run {run_id} is half written: OCR by ocr for 1 of its 2 blocks" in broken.stdout
    assert f"block {block_ids[1]} is half written: its 2 lines are numbered 0..2" in broken.stdout
    assert f"block {block_ids[0]} is half written: line 0 has 3 boxes at 0..2" in broken.stdout
    assert "store is consistent" not in broken.stdout
    orphans = ["INSERT INTO blocks (run_id, position, vertical, l, b, r, t) VALUES (999999, 0, false, 0, 0, 1, 1)",
               "INSERT INTO single_boxes (block_id, line, position, l, b, r, t) VALUES (999999, 0, 0, 0, 0, 1, 1)"]
    if store.engine.dialect.name == "postgresql":  # rows whose parent is gone, as a restore without checks leaves
        with store.engine.begin() as connection:
            connection.exec_driver_sql("SET LOCAL session_replication_role = replica")
            for orphan in orphans:
                connection.exec_driver_sql(orphan)
    else:
        with sqlite3.connect(store.engine.url.database) as raw:  # foreign keys unchecked, as any SQLite tool
            for orphan in orphans:
                raw.execute(orphan)
    store.close()
    broken = check_command(database_url)
    with store.engine.connect() as connection:
        orphan_block, orphan_box = (connection.scalar(select(func.max(row.id))) for row in (BlockRow, SingleBoxRow))
    assert broken.returncode == 1 and "single_boxes row" in broken.stdout
    problems = Store(database_url).integrity_problems()
    assert f"blocks row {orphan_block} points to a missing box_runs row (run_id)" in problems  # every key's findings
    assert f"single_boxes row {orphan_box} points to a missing blocks row (block_id)" in problems
    assert "points to a missing blocks row (block_id)" in broken.stdout, broken.stdout


_MIGRATE = ("import sys; from service.store import Store; print('ready', flush=True); sys.stdin.readline(); "
            "Store(sys.argv[1]).close(); print('migrated')")


def test_replicas_starting_together_migrate_a_new_database_one_at_a_time(database_url):
    """Several ingress replicas starting at once on one new database: every one starts, and the
    database has one schema at the newest revision (the migration lock lets one migrate at a time)."""
    replicas = [subprocess.Popen([sys.executable, "-c", _MIGRATE, database_url], text=True,
                                 cwd=ROOT,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                for _ in range(6)]
    for replica in replicas:  # each has imported the store and waits: then they all go at once
        assert replica.stdout.readline() == "ready\n", replica.stderr.read()
    for replica in replicas:
        replica.stdin.write("go\n")
    for replica in replicas:
        replica.stdin.flush()
    outcomes = [replica.communicate(timeout=120) for replica in replicas]
    failures = [err for replica, (_, err) in zip(replicas, outcomes, strict=True) if replica.returncode != 0]
    assert not failures, failures[0]
    assert all(out.strip() == "migrated" for out, _ in outcomes)
    engine = create_engine(database_url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).all() == [
            (ScriptDirectory.from_config(_migration_scripts()[0]).get_current_head(),)]
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    engine.dispose()


def test_a_glossarys_term_limit_counts_the_terms_of_its_own_profile_and_pair_only(database_url, monkeypatch):
    """The store's own count (the one that holds against concurrent writers): each profile's glossary of
    each pair has its own `MAX_TERMS`, and the term past it is undone."""
    import core.glossary
    from core.errors import PayloadTooLarge

    monkeypatch.setattr(core.glossary, "MAX_TERMS", 2)
    store = Store(database_url)
    other = store.create_profile("other", "0" * 64).id
    for src, dst, profile in (("en", "fr", None), ("fr", "es", None), ("en", "es", other), ("en", "es", None)):
        for term in ("a", "b"):
            store.set_glossary_term(src, dst, term, term.upper(), *([profile] if profile else []))
    with pytest.raises(PayloadTooLarge, match=r"^The en->es glossary has the most terms it may \(2\): delete some"):
        store.set_glossary_term("en", "es", "c", "C")
    assert store.glossary("en", "es").as_dict() == {"a": "A", "b": "B"}
    assert store.glossary("en", "es", other).as_dict() == {"a": "A", "b": "B"}

def test_the_glossary_is_kept_per_language_pair_and_replaced_term_by_term(database_url):
    store = Store(database_url)
    store.set_glossary_term("en", "es", "Naruto", "Naruto-kun")
    store.set_glossary_term("en", "es", "Naruto", "Naruto-san")  # the same term: a new translation
    store.set_glossary_term("en", "es", "Konoha", "la Hoja")
    store.set_glossary_term("en", "ja", "Naruto", "ナルト")
    store.set_glossary_term("ja", "es", "Naruto", "Naruto")
    assert store.glossary("en", "es").as_dict() == {"Konoha": "la Hoja", "Naruto": "Naruto-san"}
    assert store.glossary("en", "ja").as_dict() == {"Naruto": "ナルト"} and not store.glossary("ja", "en")
    assert store.delete_glossary_term("en", "es", "Naruto") and not store.delete_glossary_term("en", "es", "Naruto")
    assert store.glossary("en", "es").as_dict() == {"Konoha": "la Hoja"}
    assert store.glossary("en", "ja").as_dict() == {"Naruto": "ナルト"}  # the same term of the other pairs stays
    assert store.glossary("ja", "es").as_dict() == {"Naruto": "Naruto"}
    assert store.integrity_problems() == []
