"""PostgreSQL restarted between two requests: the first request after the restart has completed
succeeds on its first try (the store's pool tests each connection before use, `pool_pre_ping`, and
replaces the ones the restart dropped), through the service the ingress runs, on one node."""

import asyncio

import httpx
from sqlalchemy import select, text

from core.boxes import Block, Box
from core.settings import AppArgs, Limits
from core.slots import chosen
from deployments.http_app import build_http_app
from models_registry import Registry
from service.jobs import Overrides
from service.service import OcrTranslateService
from service.store import RunKey, Store, TranslationKey
from tests.support.http_servers import serving
from tests.support.images import encode, render


class Stages:
    """Model stages without models: one block per image, its OCR text and translation made up."""

    async def detect(self, model_id, image, lang, options):
        return [Block(Box(0, 0, 40, 20), [[Box(0, 0, 40, 20)]])]

    async def read(self, model_id, crops, lang, options):
        return [f"read {crop.shape}" for crop in crops]

    async def translate(self, model_id, texts, src, dst, options, glossary):
        return [text.upper() for text in texts]

    async def warm(self, kind, model_id):
        pass


def _dropped_connections(database_url: str) -> int:
    """Connections the server has to the test's database (after a restart, none until a client reconnects)."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    engine = create_engine(database_url, poolclass=NullPool)
    with engine.connect() as connection:
        count = connection.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                       "AND pid <> pg_backend_pid()"))
    engine.dispose()
    return count


def test_the_first_request_after_postgresql_restarted_succeeds(postgres, tmp_path):
    store = Store(postgres.new_database())
    service = OcrTranslateService(store, Registry.load(), Stages(), Limits())
    asyncio.run(service.catalogue.set_lang("en", "es"))
    asyncio.run(service.catalogue.set_models(chosen(box="easyocr/craft", ocr="tesseract/eng", tsl="apertium/eng-spa")))

    def request(words: str, **kwargs):
        contents, md5 = encode(render([((20, 20), words)], size=(200, 80)))
        arguments = {"contents": contents, "md5": md5, "force": False, "given_options": None,
                     "overrides": Overrides()} | kwargs
        return [(block.ocr, block.tsl) for block in asyncio.run(service.pipeline.run_ocrtsl(**arguments))], md5

    first, md5 = request("before")  # the pool now holds connections to the server that is about to restart
    assert first == [("read (20, 40, 3)", "READ (20, 40, 3)")]
    with store.engine.connect() as connection:  # several pooled connections, as worker threads leave them
        assert connection.scalar(select(1)) == 1
    assert store.engine.pool.checkedin() >= 1

    postgres.restart()
    assert _dropped_connections(store.engine.url.render_as_string(hide_password=False)) == 0
    assert request("after")[0] == first  # a new image: every stage's store reads and writes, and a claim

    postgres.restart()
    lazy = asyncio.run(service.pipeline.run_ocrtsl(contents=None, md5=md5, force=False, given_options=None,
                                                   overrides=Overrides()))
    assert [(block.ocr, block.tsl) for block in lazy] == first  # the md5-only call the extension sends first

    postgres.restart()
    assert request("forced", force=True)[0] == first  # a forced re-run: the replace in one transaction

    postgres.restart()
    assert asyncio.run(service.pipeline.run_tsl("hello", Overrides(), None)) == "HELLO"

    postgres.restart()  # the reader's own work and the operator's upkeep
    store.set_manual_translation("read (20, 40, 3)", "en", "es", "mine")
    assert store.find_translations(["read (20, 40, 3)"], TranslationKey("x", "en", "es", ""), True) == {
        "read (20, 40, 3)": "mine"}
    postgres.restart()
    assert store.find_blocks(md5, RunKey("nothing", "en", "{}")) is None
    assert store.integrity_problems() == []

    # Over HTTP, through the ingress's app: the first request after the restart is answered 200.
    contents, md5 = encode(render([((20, 20), "over http")], size=(200, 80)))
    with serving(build_http_app(service, AppArgs(data_dir=tmp_path))) as port, \
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
        assert http.post("/run_ocrtsl/", json={"md5": md5, "contents": contents}).status_code == 200
        postgres.restart()
        answered = http.post("/run_ocrtsl/", json={"md5": md5})
        assert answered.status_code == 200 and answered.json()["result"][0]["ocr"] == "read (20, 40, 3)"
