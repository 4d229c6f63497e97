"""The endpoints' logic with a real store and registry, and counting fake model stages."""

import asyncio
import logging
import threading
import time
from collections import Counter
from datetime import UTC, datetime

import pytest
import yaml
from PIL import Image
from sqlalchemy import func, select, update

from core.boxes import Block, Box
from core.errors import (
    BadRequest,
    LanguagesNotSet,
    ModelsNotSet,
    NotAcceptable,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
)
from core.options import TSL_OPTIONS
from core.settings import Limits, ProfileSettings, RetentionSettings, SecuritySettings
from core.slots import ModelSlots, chosen
from models_registry import Registry
from models_registry.reading_defaults import reading_defaults
from service import retention
from service.jobs import Overrides
from service.observe import Observer, request_timings
from service.service import OcrTranslateService
from service.store import BoxRunRow, ImageRow, RunKey, Selection, Store, TextRow
from tests.support.images import TWO_PARAGRAPHS, encode, render
from tests.support.services import FakeStages, in_process_service, select_all


@pytest.fixture
def service(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/s.db")
    return OcrTranslateService(store, Registry.load(), FakeStages(), Limits(max_image_pixels=1_000_000))


def rows(service, table) -> int:
    with service.store._session() as session:
        return session.scalar(select(func.count()).select_from(table))


def run(service, **kwargs):
    arguments = {"contents": None, "md5": None, "force": False, "given_options": None, "overrides": Overrides()}
    return [block.model_dump() for block in asyncio.run(service.pipeline.run_ocrtsl(**{**arguments, **kwargs}))]


def test_handshake_offers_the_offline_languages_and_models(service):
    hello = asyncio.run(service.catalogue.handshake()).model_dump()
    assert hello["version"] >= [0, 6, 0]
    assert {"en", "es", "ja"} <= set(hello["Languages"]) and hello["Languages"] == hello["Languages_src"]
    assert hello["Languages_hr"][hello["Languages"].index("es")] == "Spanish"
    assert hello["BOXModels"] == hello["OCRModels"] == hello["TSLModels"] == []
    select_all(service)
    hello = asyncio.run(service.catalogue.handshake()).model_dump()
    assert "easyocr/craft" in hello["BOXModels"]
    assert {"tesseract/eng", "easyocr/en"} <= set(hello["OCRModels"]) and "tesseract/jpn" not in hello["OCRModels"]
    assert hello["OCRModels"][0] == "tesseract/eng"  # the most used first (easyocr/en would come first by name)
    assert hello["TSLModels"][0] == "apertium/eng-spa" and "apertium/spa-eng" not in hello["TSLModels"]
    assert (hello["lang_src"], hello["tsl_selected"]) == ("en", "apertium/eng-spa")
    # The languages chosen before come first (German and Catalan would by name).
    assert (hello["Languages_src"][:2], hello["Languages_dst"][0]) == (["auto", "en"], "es")  # detection stays first


def test_choosing_the_same_languages_again_keeps_the_models_that_fit(service):
    select_all(service)
    asyncio.run(service.catalogue.set_lang("en", "es"))
    selection = service.store.selection()
    assert selection.models == ModelSlots("easyocr/craft", "tesseract/eng", "apertium/eng-spa")


def test_set_lang_rejects_unknown_codes_and_replaces_models_that_no_longer_fit(service):
    with pytest.raises(BadRequest, match="ISO 639-1"):
        asyncio.run(service.catalogue.set_lang("english", "es"))
    with pytest.raises(BadRequest, match="reads"):
        asyncio.run(service.catalogue.set_lang("xh", "es"))
    with pytest.raises(BadRequest, match=r"No installed model translates to Abkhazian \('ab'\)"):
        asyncio.run(service.catalogue.set_lang("en", "ab"))
    select_all(service)
    asyncio.run(service.catalogue.set_lang("ja", "en"))
    selection = service.store.selection()  # Japanese's measured pair; no translator of ja->en is installed here
    assert selection.models == ModelSlots("easyocr/craft", "tesseract/jpn", "original")


def test_set_models_validates_before_loading_and_selects_nothing_on_error(service):
    asyncio.run(service.catalogue.set_lang("en", "es"))
    before = service.store.selection()
    with pytest.raises(BadRequest, match="Unknown model"):
        asyncio.run(service.catalogue.set_models(chosen(box="rapidocr/ppocr-v4-det", ocr="nope")))
    with pytest.raises(BadRequest, match="not a|is a tsl model"):
        asyncio.run(service.catalogue.set_models(chosen(ocr="apertium/eng-spa")))
    with pytest.raises(BadRequest, match="does not support"):
        asyncio.run(service.catalogue.set_models(chosen(ocr="tesseract/jpn")))
    assert service.store.selection() == before
    assert service.stages.calls == Counter()


def test_512_513_and_lazy_then_work_then_lazy_hit(service):
    contents, md5 = encode(render(TWO_PARAGRAPHS))
    with pytest.raises(LanguagesNotSet):
        run(service, md5=md5)
    asyncio.run(service.catalogue.set_lang("en", "es"))
    service.store.update_selection(models=ModelSlots("", "", ""))  # none selected (a plugin disabled since)
    with pytest.raises(ModelsNotSet):
        run(service, md5=md5)
    select_all(service)
    with pytest.raises(NotAcceptable):
        run(service, md5=md5)
    result = run(service, md5=md5, contents=contents)
    assert result == [{"ocr": "text 40x20", "tsl": "TEXT 40X20", "box": [0, 0, 40, 20]},
                      {"ocr": "text 60x20", "tsl": "TEXT 60X20", "box": [0, 30, 60, 50]}]
    assert run(service, md5=md5) == result
    assert run(service, md5=md5.upper()) == result
    # Other options for the translation model: nothing stored for them yet.
    with pytest.raises(NotAcceptable):
        run(service, md5=md5, given_options={"apertium/eng-spa": {"break_newlines": True}})
    assert service.stages.calls == Counter(detect=1, read=2, translate=2, **{
        "warm easyocr/craft": 1, "warm tesseract/eng": 1, "warm apertium/eng-spa": 1})


def test_stages_reuse_stored_results_unless_forced(service):
    select_all(service)
    contents, md5 = encode(render(TWO_PARAGRAPHS))
    run(service, md5=md5, contents=contents)
    run(service, md5=md5, contents=contents)
    assert (service.stages.calls["detect"], service.stages.calls["read"]) == (1, 2)
    run(service, md5=md5, contents=contents, given_options={"apertium/eng-spa": {"break_newlines": "true"}})
    assert (service.stages.calls["detect"], service.stages.calls["translate"]) == (1, 4)
    run(service, md5=md5, contents=contents, force=True)
    calls = service.stages.calls
    assert (calls["detect"], calls["read"], calls["translate"]) == (2, 4, 6)
    # Each stage got its own model, the request's languages, its options and (detection) the image.
    last, image = service.stages.last, render(TWO_PARAGRAPHS)
    assert last["detect"][:2] == ("easyocr/craft", "en") and last["detect"][3] == (image.height, image.width, 3)
    assert last["read"][:2] == ("tesseract/eng", "en") and last["read"][2]["psm"] == 6
    assert last["translate"][:3] == ("apertium/eng-spa", "en", "es") and "favor_manual" in last["translate"][3]
    job = service.pipeline.jobs.resolve(Overrides(), None, True)
    assert last["detect"][2] == job.box.options and "merge_line_gap" in last["detect"][2]
    # The source language's defaults (language_options.yaml) reach the stage: English restores lost spaces.
    assert last["translate"][3]["restore_missing_spaces"] is True and not TSL_OPTIONS["restore_missing_spaces"].default


def test_identical_work_calls_in_flight_compute_once(service):
    select_all(service)
    contents, md5 = encode(render(TWO_PARAGRAPHS))

    async def both():
        call = dict(contents=contents, md5=md5, force=False, given_options=None, overrides=Overrides())
        return await asyncio.gather(service.pipeline.run_ocrtsl(**call), service.pipeline.run_ocrtsl(**call))

    first, second = asyncio.run(both())
    assert first == second and service.stages.calls["detect"] == 1 and service.stages.calls["read"] == 2


class ReadsThePixels(FakeStages):
    """OCR that reads each crop's grey level, so that different images read differently."""

    async def read(self, model_id, crops, lang, options):
        self.calls["read"] += len(crops)
        return [f"grey {round(crop.mean())}" for crop in crops]


def test_two_images_in_flight_together_each_get_their_own_answer(tmp_path):
    """Identical work is shared only for the same image: two images sent at once with the same
    languages and models are each detected and read on their own pixels."""
    service = in_process_service(tmp_path, ReadsThePixels())
    select_all(service)
    images = [encode(Image.new("RGB", (120, 80), (shade,) * 3)) for shade in (40, 200)]

    async def both():
        return await asyncio.gather(*(service.pipeline.run_ocrtsl(
            contents=contents, md5=md5, force=False, given_options=None, overrides=Overrides())
            for contents, md5 in images))

    dark, light = asyncio.run(both())
    assert [block.ocr for block in dark] == ["grey 40"] * 2 and [block.ocr for block in light] == ["grey 200"] * 2
    assert service.stages.calls["detect"] == 2


class NamesTheTarget(FakeStages):
    """Reads an English line; a translation names its languages, so answers in two targets differ."""

    async def read(self, model_id, crops, lang, options):
        self.calls["read"] += len(crops)
        return ["The dog eats bread."] * len(crops)

    async def translate(self, model_id, texts, src, dst, options, glossary):
        self.calls["translate"] += len(texts)
        self.last["translate"] = (model_id, src, dst, options)
        self.last["glossary"] = glossary
        await asyncio.sleep(0.05)
        return [f"{src}>{dst}: {text}" for text in texts]


def with_a_model_of_two_targets(tmp_path, stages, **settings):
    """The built-in models and two language models (metered: the openai family calls a server, which the
    fake stages never do) that write Spanish and French: `llm/many` from English, selected en->es, and
    `llm/ja` from Japanese."""
    entries = tmp_path / "entries"
    entries.mkdir()
    (entries / "llm.yaml").write_text(yaml.safe_dump([{
        "id": model, "kind": "tsl", "backend": "openai", "languages": [src], "languages_dst": ["es", "fr"],
        "settings": {"base_url": "http://127.0.0.1:9/v1", "model": "any"}} for model, src in (("llm/many", "en"),
                                                                                               ("llm/ja", "ja"))]))
    service = in_process_service(tmp_path, stages, registry=Registry.load([entries]), **settings)
    asyncio.run(service.catalogue.set_lang("en", "es"))
    asyncio.run(service.catalogue.set_models(chosen(box="easyocr/craft", ocr="tesseract/jpn+eng+spa", tsl="llm/many")))
    return service


@pytest.mark.parametrize("lang_src", ["en", "auto"])
def test_one_image_asked_in_two_target_languages_at_once_is_translated_into_each(tmp_path, lang_src):
    """Identical work in flight is shared only for the same destination: one model writing both targets,
    the same image and options, asked at once, are two jobs."""
    service = with_a_model_of_two_targets(tmp_path, NamesTheTarget())
    contents, md5 = encode(render(TWO_PARAGRAPHS))

    async def both():
        return await asyncio.gather(*(service.pipeline.run_ocrtsl(
            contents=contents, md5=md5, force=False, given_options=None,
            overrides=Overrides(lang_src=lang_src, lang_dst=dst)) for dst in ("es", "fr")))

    spanish, french = asyncio.run(both())
    assert [block.tsl for block in spanish] == ["en>es: The dog eats bread."] * 2
    assert [block.tsl for block in french] == ["en>fr: The dog eats bread."] * 2


def test_a_detected_languages_route_gets_the_clients_options_checked_as_a_given_sources(tmp_path):
    stages = NamesTheTarget()
    service = with_a_model_of_two_targets(tmp_path, stages)
    asyncio.run(service.catalogue.set_lang("auto", "es"))
    contents, md5 = encode(render(TWO_PARAGRAPHS))
    asked = {"llm/many": {"temperature": 0.7}}

    def run_detecting(trusted):
        return asyncio.run(service.pipeline.run_ocrtsl(contents=contents, md5=md5, force=False, given_options=asked,
                                                       overrides=Overrides(any_model=trusted)))

    no_range = "Setting 'temperature' of llm/many per request needs the server's API token; the operator may allow"
    with pytest.raises(Unauthorized, match=no_range):
        run_detecting(False)  # a metered model: a client without the token keeps the entry's values
    assert [block.tsl for block in run_detecting(True)] == ["en>es: The dog eats bread."] * 2
    model, src, dst, options = stages.last["translate"]
    assert (model, src, dst, options["temperature"]) == ("llm/many", "en", "es", 0.7)
    assert options["restore_missing_spaces"] is True  # the detected language's defaults (English's)


def test_a_detected_language_routed_to_a_metered_model_the_operator_allows_keeps_its_options_checked(tmp_path):
    """The selected model translates no English: English blocks go to `llm/many`, which an anonymous
    client may run (`security.override_models`) with its entry's option values only."""
    stages = NamesTheTarget()
    service = with_a_model_of_two_targets(tmp_path, stages, security=SecuritySettings(override_models=["llm/many"]))
    asyncio.run(service.catalogue.set_lang("auto", "es"))
    asyncio.run(service.catalogue.set_models(chosen(tsl="llm/ja")))
    contents, md5 = encode(render(TWO_PARAGRAPHS))

    def run_anonymously(given_options):
        return asyncio.run(service.pipeline.run_ocrtsl(contents=contents, md5=md5, force=False,
                                                       given_options=given_options, overrides=Overrides()))

    with pytest.raises(Unauthorized, match="Setting 'temperature' of llm/many per request"):
        run_anonymously({"llm/many": {"temperature": 0.7}})
    assert [block.tsl for block in run_anonymously(None)] == ["en>es: The dog eats bread."] * 2
    assert stages.last["translate"][0] == "llm/many"

def test_a_request_with_a_given_source_follows_its_own_profiles_glossary(tmp_path):
    service = in_process_service(tmp_path, FakeStages())
    reader = service.store.create_profile("reader", "1" * 64).id
    for profile in (reader, None):
        named = [profile] if profile else []
        asyncio.run(service.catalogue.set_lang("en", "es", *named))
        asyncio.run(service.catalogue.set_models(chosen(tsl="apertium/eng-spa"), *named))
    asyncio.run(service.manual.set_glossary_term("Naruto", "Naruto-kun", profile=reader))
    asyncio.run(service.pipeline.run_tsl("Naruto went home", Overrides(profile=reader), None))
    assert service.stages.last["glossary"].as_dict() == {"Naruto": "Naruto-kun"}
    asyncio.run(service.pipeline.run_tsl("Naruto went home", Overrides(), None))
    assert not service.stages.last["glossary"]  # the default profile has no terms

def test_a_profile_reading_with_detection_gets_its_own_glossary_and_manual_translations(tmp_path):
    stages = NamesTheTarget()
    allowed = ProfileSettings(allowed_models=["easyocr/craft", "tesseract/jpn+eng+spa", "llm/many"])  # metered
    service = with_a_model_of_two_targets(tmp_path, stages, profiles=allowed)
    reader = service.store.create_profile("reader", "3" * 64).id
    asyncio.run(service.catalogue.set_lang("auto", "es", reader))
    asyncio.run(service.catalogue.set_models(chosen("easyocr/craft", "tesseract/jpn+eng+spa", "llm/many"), reader))
    asyncio.run(service.manual.set_glossary_term("dog", "perro-kun", "en", "es", profile=reader))
    contents, md5 = encode(render(TWO_PARAGRAPHS))

    def read(contents=None):
        return [block.tsl for block in asyncio.run(service.pipeline.run_ocrtsl(
            contents=contents, md5=md5, force=False, given_options=None, overrides=Overrides(profile=reader)))]

    assert read(contents) == ["en>es: The dog eats bread."] * 2
    assert stages.last["glossary"].as_dict() == {"dog": "perro-kun"}  # the detected pair's terms, the reader's
    asyncio.run(service.manual.set_manual_translation("The dog eats bread.", "El perro-kun come pan.", reader))
    assert read() == ["El perro-kun come pan."] * 2  # the stored answer, with the reader's own translation


def test_detection_is_offered_only_with_an_ocr_model_that_reads_several_languages_at_once(service):
    asyncio.run(service.catalogue.manage_plugins({"tesseract": False, "rapidocr": False}))
    assert "auto" not in asyncio.run(service.catalogue.handshake()).Languages_src
    with pytest.raises(BadRequest) as refused:
        asyncio.run(service.catalogue.set_lang("auto", "en"))
    assert refused.value.message == ("Detecting the source language needs an OCR model that reads several languages "
                                     "at once (such as tesseract/jpn+eng+spa): none is installed.")

def test_a_forced_run_for_a_profile_shows_that_profiles_manual_translation(tmp_path):
    service = in_process_service(tmp_path, FakeStages())
    reader = service.store.create_profile("reader", "5" * 64).id
    asyncio.run(service.catalogue.set_lang("en", "es", reader))
    asyncio.run(service.catalogue.set_models(chosen("easyocr/craft", "tesseract/eng", "apertium/eng-spa"), reader))
    contents, md5 = encode(render(TWO_PARAGRAPHS))

    def read(force):
        return asyncio.run(service.pipeline.run_ocrtsl(contents=contents, md5=md5, force=force, given_options=None,
                                                       overrides=Overrides(profile=reader)))

    text = read(False)[0].ocr
    asyncio.run(service.manual.set_manual_translation(text, "La suya.", reader))
    assert read(True)[0].tsl == "La suya."  # computed again, and still the reader's own translation shown

def test_an_operators_range_for_a_metered_option_includes_both_its_ends(tmp_path):
    ranges = SecuritySettings(client_option_ranges={"llm/many": {"temperature": (0.5, 0.9)}})
    service = with_a_model_of_two_targets(tmp_path, FakeStages(), security=ranges)

    def temperature(value):
        job = service.pipeline.jobs.resolve(Overrides(), {"llm/many": {"temperature": value}}, False)
        return job.route.tsl.options["temperature"]

    assert (temperature(0.5), temperature(0.9)) == (0.5, 0.9)
    with pytest.raises(Unauthorized, match=r"\(allowed: 0.5 to 0.9\)"):
        temperature(0.95)

def test_detection_counts_the_destination_among_the_candidates_only_where_the_text_may_be_in_it(tmp_path):
    """An image's blocks are in the destination language only if the OCR model reads it; a text sent to
    run_tsl may be in any."""
    service = with_a_model_of_two_targets(tmp_path, NamesTheTarget())
    detecting = Overrides(lang_src="auto", any_model=True)
    assert "es" in service.pipeline.jobs.resolve(detecting, None, True).detectable  # the OCR model reads Spanish
    into_french = Overrides(lang_src="auto", lang_dst="fr", any_model=True)
    assert "fr" not in service.pipeline.jobs.resolve(into_french, None, True).detectable  # it reads no French
    assert "fr" in service.pipeline.jobs.resolve(into_french, None, False).detectable


def test_the_coalescing_switch_decides_whether_work_claims_are_written(tmp_path):
    """`args.coalescing.across_replicas` reaches the pipeline: on, a computed image is claimed in the
    store for the other ingress replicas (the request, and each stage it missed: boxes, OCR, translations);
    off (one ingress replica), no claim is written."""
    for across, claims_written in ((True, 4), (False, 0)):
        service = in_process_service(f"sqlite:///{tmp_path}/{across}.db", FakeStages(), coalesce_across_replicas=across)
        claims, claim = [], service.store.claim
        service.store.claim = lambda *args, claim=claim, claims=claims: claims.append(args) or claim(*args)
        select_all(service)
        contents, md5 = encode(render(TWO_PARAGRAPHS))
        run(service, contents=contents, md5=md5)
        assert len(claims) == claims_written, across


def test_manual_translation_is_favoured_unless_disabled(service):
    select_all(service)
    contents, md5 = encode(render(TWO_PARAGRAPHS))
    run(service, md5=md5, contents=contents)
    with pytest.raises(NotFound):
        asyncio.run(service.manual.set_manual_translation("never seen", "x"))
    asyncio.run(service.manual.set_manual_translation("text 40x20", "mine"))
    assert run(service, md5=md5)[0]["tsl"] == "mine"
    assert run(service, md5=md5, given_options={"apertium/eng-spa": {"favor_manual": False}})[0]["tsl"] == "TEXT 40X20"
    assert run(service, md5=md5, contents=contents, force=True)[0]["tsl"] == "mine"
    forced_machine = run(service, md5=md5, contents=contents, force=True,
                         given_options={"apertium/eng-spa": {"favor_manual": False}})
    assert forced_machine[0]["tsl"] == "TEXT 40X20"  # forced, and asked for the machine's: the model's
    # A new image whose text was read before: computed up to OCR, and its translation is the reader's.
    other_contents, other_md5 = encode(render([((20, 20), "Another page")]))
    assert run(service, md5=other_md5, contents=other_contents)[0]["tsl"] == "mine"
    [mine, *_] = asyncio.run(service.manual.get_translations("text 40x20"))
    assert mine.model_dump() == {"text": "mine", "model": "manual"}


@pytest.mark.parametrize("kwargs,error,match", [
    ({"contents": "not base64!"}, BadRequest, "base64"),
    ({"contents": "aGVsbG8="}, BadRequest, "not a readable image"),
    ({"md5": "xyz"}, BadRequest, "32 hex"),
    ({"md5": "xyz", "contents": "aGVsbG8="}, BadRequest, "32 hex"),  # checked before the image is decoded
    ({"given_options": ["x"], "md5": "0" * 32}, BadRequest, "'options' must be an object keyed by model id"),
    ({"force": True, "md5": "0" * 32}, BadRequest, "force"),
    ({}, BadRequest, "contents"),
    ({"given_options": {"apertium/eng-spa": {"break_newlines": "sometimes"}}, "md5": "0" * 32}, BadRequest,
     "break_newlines"),
    ({"overrides": Overrides(models=chosen(tsl="apertium/spa-eng"), any_model=True), "md5": "0" * 32}, BadRequest,
     "does not support"),
])
def test_bad_input_gets_a_clear_error_and_stores_nothing(service, kwargs, error, match):
    select_all(service)
    with pytest.raises(error, match=match):
        run(service, **kwargs)
    assert rows(service, ImageRow) == rows(service, BoxRunRow) == rows(service, TextRow) == 0


def test_md5_mismatch_and_huge_images_are_rejected_before_any_work(service):
    select_all(service)
    contents, md5 = encode(render(TWO_PARAGRAPHS))
    with pytest.raises(BadRequest, match="does not match"):
        run(service, contents=contents, md5="0" * 32)
    big, big_md5 = encode(render([], size=(2000, 1000)))
    with pytest.raises(PayloadTooLarge, match="limit"):
        run(service, contents=big, md5=big_md5)
    assert service.stages.calls["detect"] == 0 and rows(service, ImageRow) == 0


def test_images_with_more_blocks_than_the_limit_are_refused_before_ocr(tmp_path):
    limited = in_process_service(tmp_path, FakeStages(),
                                  Limits(max_blocks_per_image=1))
    select_all(limited)
    contents, md5 = encode(render(TWO_PARAGRAPHS))
    with pytest.raises(PayloadTooLarge, match="2 text blocks.*limit of 1"):
        run(limited, contents=contents, md5=md5)
    assert limited.stages.calls["detect"] == 1 and limited.stages.calls["read"] == 0
    assert rows(limited, ImageRow) == rows(limited, BoxRunRow) == 0


def test_images_with_more_lines_than_the_limit_are_refused_before_ocr(tmp_path):
    """Two one-line blocks: refused over a limit of one line, answered at a limit of two lines or blocks."""
    contents, md5 = encode(render(TWO_PARAGRAPHS))
    for limits, refused in ((Limits(max_lines_per_image=1), True), (Limits(max_lines_per_image=2), False),
                            (Limits(max_blocks_per_image=2), False)):
        limited = in_process_service(f"sqlite:///{tmp_path}/{id(limits)}.db", FakeStages(),
                                      limits)
        select_all(limited)
        if refused:
            with pytest.raises(PayloadTooLarge, match="2 lines of text.*limit of 1"):
                run(limited, contents=contents, md5=md5)
            assert limited.stages.calls["read"] == 0
        else:
            assert len(run(limited, contents=contents, md5=md5)) == 2


class TwoLinesInOneBlock(FakeStages):
    """One block of two lines, the first of two pieces: what a line reader is given one crop each."""

    async def detect(self, model_id, image, lang, options):
        self.calls["detect"] += 1
        return [Block(Box(0, 0, 60, 50), [[Box(0, 0, 20, 20), Box(30, 0, 60, 20)], [Box(0, 30, 40, 50)]])]


def test_a_line_reader_reads_each_line_and_its_pieces_join_as_the_language_writes(tmp_path):
    """PP-OCRv4's recognizer reads single lines: each piece is a crop of its own, and the pieces join
    without spaces in Chinese, lines with a newline."""
    service = in_process_service(tmp_path, TwoLinesInOneBlock())
    contents, md5 = encode(render(TWO_PARAGRAPHS))
    overrides = Overrides(lang_src="zh", lang_dst="en", any_model=True,
                          models=chosen(box="easyocr/craft", ocr="rapidocr/ppocr-v4-rec", tsl="original"))
    [block] = run(service, contents=contents, md5=md5, overrides=overrides)
    assert block["ocr"] == "text 20x20text 30x20\ntext 40x20" and service.stages.calls["read"] == 3


def test_images_the_extension_sends_decode(service):
    select_all(service)
    image = render(TWO_PARAGRAPHS, mode="RGBA", background=(0, 0, 0, 0))
    for converted, fmt in [(image, "PNG"), (image.convert("L"), "PNG"), (image.convert("P"), "GIF"),
                           (image.convert("RGB"), "JPEG")]:
        contents, md5 = encode(converted, fmt)
        assert len(run(service, contents=contents, md5=md5)) == 2


def test_run_tsl_needs_only_languages_and_a_translation_model(service):
    with pytest.raises(LanguagesNotSet):
        asyncio.run(service.pipeline.run_tsl("hi", Overrides(), None))
    asyncio.run(service.catalogue.set_lang("en", "es"))
    service.store.update_selection(models=ModelSlots("", "", ""))  # none selected (a plugin disabled since)
    with pytest.raises(ModelsNotSet):
        asyncio.run(service.pipeline.run_tsl("hi", Overrides(), None))
    named = Overrides(models=chosen(tsl="original"), any_model=True)
    assert asyncio.run(service.pipeline.run_tsl("hi", named, None)) == "HI"
    with pytest.raises(BadRequest, match="longer"):
        asyncio.run(service.pipeline.run_tsl("x" * 30_000, named, None))


def test_plugins_can_be_disabled_but_never_installed(service):
    select_all(service)
    data = asyncio.run(service.catalogue.plugin_data()).model_dump()
    assert data["apertium"]["installed"] and data["apertium"]["version"]
    asyncio.run(service.catalogue.manage_plugins({"apertium": False}))
    assert not asyncio.run(service.catalogue.plugin_data()).root["apertium"].installed
    assert service.store.selection().models.tsl == ""
    assert "apertium/eng-spa" not in asyncio.run(service.catalogue.handshake()).TSLModels
    with pytest.raises(BadRequest, match="Unknown plugin"):
        asyncio.run(service.catalogue.manage_plugins({"nope": True}))
    asyncio.run(service.catalogue.manage_plugins({"apertium": True}))
    assert asyncio.run(service.catalogue.plugin_data()).root["apertium"].installed


def test_active_options_of_the_selected_models(service):
    nothing_selected = asyncio.run(service.catalogue.active_options())
    assert nothing_selected.options == {"box_model": {}, "ocr_model": {}, "tsl_model": {}}
    select_all(service)
    active = asyncio.run(service.catalogue.active_options()).model_dump()["options"]
    assert active["box_model"]["merge_line_gap"]["type"] == "float"
    assert active["ocr_model"]["psm"]["default"] == 6
    assert active["tsl_model"]["favor_manual"] == {
        "type": "bool", "default": True, "value": True,
        "description": active["tsl_model"]["favor_manual"]["description"]}


class RecordingObserver(Observer):
    def __init__(self):
        self.lookups = Counter()

    def cache_lookup(self, stage, hits, misses):
        self.lookups[stage, "hit"] += hits
        self.lookups[stage, "miss"] += misses


def test_stage_timings_and_cache_lookups_are_reported(tmp_path):
    observer = RecordingObserver()
    service = in_process_service(tmp_path, FakeStages(), observer=observer)
    select_all(service)
    contents, md5 = encode(render(TWO_PARAGRAPHS))
    with pytest.raises(NotAcceptable):
        run(service, md5=md5)
    with request_timings() as timings:
        run(service, md5=md5, contents=contents)
    assert set(timings) == {"decode", "box", "ocr", "tsl"} and timings["box"] >= 0.05  # FakeStages sleeps
    run(service, md5=md5, contents=contents)
    run(service, md5=md5)
    run(service, md5=md5)
    assert observer.lookups == Counter({
        ("lazy", "miss"): 1, ("lazy", "hit"): 2, ("box", "miss"): 1, ("box", "hit"): 1,
        ("ocr", "miss"): 2, ("ocr", "hit"): 2, ("tsl", "miss"): 2, ("tsl", "hit"): 2})


def test_a_new_store_starts_with_the_default_selection_and_keeps_the_readers_choice(service):
    defaults = Selection("en", "es", ModelSlots("rapidocr/ppocr-v4-det", "rapidocr/ppocr-v4-rec", "apertium/eng-spa"))
    service.catalogue.start_with_defaults(defaults)
    assert service.store.selection() == defaults
    hello = asyncio.run(service.catalogue.handshake()).model_dump()
    assert (hello["box_selected"], hello["ocr_selected"], hello["lang_src"]) == (defaults.models.box,
                                                                               defaults.models.ocr, "en")
    asyncio.run(service.catalogue.set_models(chosen(ocr="tesseract/eng")))
    service.catalogue.start_with_defaults(defaults)  # a restart keeps what the reader chose
    assert service.store.selection().models.ocr == "tesseract/eng"


def test_the_default_selection_is_given_to_the_profile_named_only(service):
    defaults = Selection("en", "es", ModelSlots("rapidocr/ppocr-v4-det", "rapidocr/ppocr-v4-rec", "apertium/eng-spa"))
    reader = service.store.create_profile("reader", "2" * 64).id
    service.catalogue.start_with_defaults(defaults, reader)
    assert (service.store.selection(reader), service.store.selection()) == (defaults, Selection())

def test_defaults_that_do_not_fit_leave_the_languages_own_models(tmp_path, caplog):
    service = in_process_service(tmp_path, FakeStages())
    service.catalogue.start_with_defaults(Selection("en", "es", ModelSlots("rapidocr/ppocr-v4-det", "tesseract/jpn",
                                                                           "")))
    selection = service.store.selection()  # the OCR model and translator of English's defaults (set_lang's)
    english_ocr = reading_defaults().measured["en"].pairs[0].ocr  # the registry's measured first for English
    assert (selection.lang_src, selection.models) == ("en", ModelSlots("rapidocr/ppocr-v4-det", english_ocr,
                                                                       "apertium/eng-spa"))
    assert "the default selection was not applied in full: Model 'tesseract/jpn' does not support" in caplog.text


def test_a_default_source_without_a_target_is_left_out_and_the_default_models_still_apply(service):
    service.catalogue.start_with_defaults(Selection(lang_src="en", models=ModelSlots("easyocr/craft", "", "")))
    assert service.store.selection() == Selection(models=ModelSlots("easyocr/craft", "", ""))


class WarmingStages(FakeStages):
    """Loading a model fails for the OCR model, as when its weights are missing."""

    def __init__(self):
        super().__init__()
        self.warmed = []

    async def warm(self, kind, model_id):
        self.warmed.append((kind, model_id))
        if kind == "ocr":
            raise RuntimeError("no weights here")


def test_preloading_warms_each_usable_selected_model_and_outlives_one_that_fails(tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="service.catalogue")
    store = Store(f"sqlite:///{tmp_path}/s.db")
    catalogue = OcrTranslateService(store, Registry.load(), WarmingStages(), Limits()).catalogue
    store.update_selection(lang_src="en", lang_dst="es", models=chosen(ocr="tesseract/eng", tsl="original"))
    asyncio.run(catalogue.preload_selection())  # no box model selected; the OCR model fails to load
    assert catalogue.stages.warmed == [("ocr", "tesseract/eng"), ("tsl", "original")]
    assert "could not preload the selected ocr model tesseract/eng: no weights here" in caplog.messages
    assert "preloaded the selected tsl model original" in caplog.messages
    store.update_selection(models=chosen(tsl="apertium/eng-spa"))
    store.set_disabled_families(["apertium"])
    catalogue.stages.warmed.clear()
    asyncio.run(catalogue.preload_selection())  # a model of a disabled family is not loaded
    assert catalogue.stages.warmed == [("ocr", "tesseract/eng")]
    store.set_disabled_families([])
    catalogue.stages.warmed.clear()
    on_its_way = {"tesseract/eng": None}  # what _start_downloads answers for a model still downloading
    monkeypatch.setattr(catalogue, "_start_downloads", lambda ids: on_its_way if ids == ["tesseract/eng"] else {})
    asyncio.run(catalogue.preload_selection())  # a model still downloading is skipped, the next kinds load
    assert catalogue.stages.warmed == [("tsl", "apertium/eng-spa")]


class KindRecordingStages(FakeStages):
    def __init__(self):
        super().__init__()
        self.kinds = []

    async def warm(self, kind, model_id):
        self.kinds.append((kind, model_id))


def test_models_chosen_before_the_languages_are_checked_against_the_languages_known(tmp_path):
    stages = KindRecordingStages()
    service = in_process_service(tmp_path, stages, Limits())
    asyncio.run(service.catalogue.set_models(chosen(box="easyocr/craft", ocr="tesseract/jpn")))  # no language yet
    assert stages.kinds == [("box", "easyocr/craft"), ("ocr", "tesseract/jpn")]
    service.store.update_selection(lang_src="en")  # a source, no target yet
    with pytest.raises(BadRequest, match="does not support"):
        asyncio.run(service.catalogue.set_models(chosen(ocr="tesseract/jpn")))
    asyncio.run(service.catalogue.set_models(chosen(tsl="apertium/eng-spa")))  # its target is not known yet
    service.store.set_disabled_families(["apertium"])
    with pytest.raises(BadRequest, match="is not available: "):
        asyncio.run(service.catalogue.set_models(chosen(tsl="apertium/eng-spa")))


def test_with_a_source_but_no_target_language_readers_are_offered_and_translators_not(service):
    service.store.update_selection(lang_src="en")
    hello = asyncio.run(service.catalogue.handshake())
    assert "easyocr/craft" in hello.BOXModels and "tesseract/eng" in hello.OCRModels and hello.TSLModels == []


def test_models_named_per_request_need_trust_or_the_operators_allow_list(tmp_path):
    def service_with(allowed: frozenset[str]) -> OcrTranslateService:
        service = in_process_service(f"sqlite:///{tmp_path}/{len(allowed)}.db", FakeStages(),
                                      Limits(), security=SecuritySettings(override_models=sorted(allowed)))
        select_all(service)
        return service

    strict = service_with(frozenset())
    with pytest.raises(Unauthorized, match="'original' per request"):
        asyncio.run(strict.pipeline.run_tsl("hi", named := Overrides(models=chosen(tsl="original")), None))
    selected = Overrides(models=chosen(tsl="apertium/eng-spa"))
    assert asyncio.run(strict.pipeline.run_tsl("hi", selected, None)) == "HI"
    assert asyncio.run(strict.pipeline.run_tsl("hi", Overrides(models=named.models, any_model=True), None)) == "HI"
    assert asyncio.run(service_with(frozenset({"original"})).pipeline.run_tsl("hi", named, None)) == "HI"


def test_beams_times_tokens_are_bounded_before_any_model_runs(tmp_path):
    service = in_process_service(tmp_path, FakeStages(),
                                  Limits(max_beam_tokens=1000))
    marian = "Helsinki-NLP/opus-mt-ja-en"
    stage = service.pipeline.jobs._stage(marian, {marian: {"num_beams": 3, "max_new_tokens": 300}}, "ja")
    assert stage.options["num_beams"] == 3
    with pytest.raises(BadRequest, match="num_beams x max_new_tokens is 1200"):
        service.pipeline.jobs._stage(marian, {marian: {"num_beams": 4, "max_new_tokens": 300}}, "ja")


def test_beams_times_tokens_may_reach_the_limit_exactly(tmp_path):
    service = in_process_service(tmp_path, FakeStages(), Limits(max_beam_tokens=1000))
    marian = "Helsinki-NLP/opus-mt-ja-en"
    stage = service.pipeline.jobs._stage(marian, {marian: {"num_beams": 4, "max_new_tokens": 250}}, "ja")
    assert (stage.options["num_beams"], stage.options["max_new_tokens"]) == (4, 250)

class SlowReads(FakeStages):
    """OCR that takes a while, so that a forced re-run can replace the blocks being read."""

    slow = True

    async def read(self, model_id, crops, lang, options):
        slow, SlowReads.slow = SlowReads.slow, False
        await asyncio.sleep(1.0 if slow else 0)
        return await super().read(model_id, crops, lang, options)


def test_a_forced_rerun_never_takes_rows_from_under_a_concurrent_request(database_url):
    SlowReads.slow = True
    service = in_process_service(database_url, SlowReads())
    select_all(service)
    contents, md5 = encode(render(TWO_PARAGRAPHS))

    async def both():
        plain = asyncio.create_task(service.pipeline.run_ocrtsl(contents=contents, md5=md5, force=False,
                                                                given_options=None, overrides=Overrides()))
        await asyncio.sleep(0.2)  # the plain request has stored its blocks and is reading them
        forced = await service.pipeline.run_ocrtsl(contents=contents, md5=md5, force=True, given_options=None,
                                                   overrides=Overrides())
        return await plain, forced

    plain, forced = asyncio.run(both())
    assert [block.ocr for block in plain] == [block.ocr for block in forced]
    stored = asyncio.run(service.pipeline.run_ocrtsl(contents=None, md5=md5, force=False, given_options=None,
                                                     overrides=Overrides()))
    assert stored == forced  # the forced run is what stands, with its OCR
    assert service.store.integrity_problems() == []


def test_images_answered_are_marked_used_in_batches_for_retention(service):
    select_all(service)
    contents, md5 = encode(render(TWO_PARAGRAPHS))
    run(service, contents=contents, md5=md5)
    run(service, md5=md5)
    assert service.pipeline.retention._used == {md5}
    with service.store._session() as session:
        session.execute(update(ImageRow).values(last_used=datetime(2000, 1, 1, tzinfo=UTC)))
    service.pipeline.retention.flush()
    with service.store._session() as session:
        assert session.scalar(select(ImageRow.last_used)).year > 2000
    assert service.pipeline.retention.prune()["images"] == 0  # used just now: kept for 180 days


class OneBlankBlock(FakeStages):
    """OCR reads nothing in the wider block (a picture without text)."""

    async def read(self, model_id, crops, lang, options):
        return ["" if crop.shape[1] == 60 else text for crop, text in
                zip(crops, await super().read(model_id, crops, lang, options), strict=True)]


def test_a_block_without_text_is_answered_with_an_empty_translation_from_the_store_too(tmp_path):
    service = in_process_service(tmp_path, OneBlankBlock())
    select_all(service)
    contents, md5 = encode(render(TWO_PARAGRAPHS))
    computed = run(service, md5=md5, contents=contents)
    assert [(block["ocr"], block["tsl"]) for block in computed] == [("text 40x20", "TEXT 40X20"), ("", "")]
    assert run(service, md5=md5) == computed  # the md5-only call: from the store


def test_a_stage_timed_twice_in_a_request_adds_up():
    observer = Observer()
    with request_timings() as timings:
        observer.stage_done("ocr", "m", 0.5, 1)
        observer.stage_done("ocr", "m", 0.25, 2)
    assert timings == {"ocr": 0.75}


def test_run_tsl_takes_texts_up_to_the_limit_and_checks_its_options(tmp_path):
    service = in_process_service(tmp_path, FakeStages(),
                                  Limits(max_text_chars=10))
    select_all(service)
    assert asyncio.run(service.pipeline.run_tsl("x" * 10, Overrides(), None)) == "X" * 10
    with pytest.raises(BadRequest, match="break_newlines"):
        asyncio.run(service.pipeline.run_tsl("hi", Overrides(), {"apertium/eng-spa": {"break_newlines": "sometimes"}}))


def test_texts_that_split_into_more_pieces_than_the_limit_are_refused_before_translating(tmp_path):
    """The count is the translator's own split: by the options and the source language's rules (English
    restores lost spaces, Japanese joins lines without one)."""
    service = in_process_service(tmp_path, FakeStages(),
                                  Limits(max_pieces_per_text=2))

    def tsl(text: str, overrides: Overrides | None = None, given: dict | None = None) -> str:
        return asyncio.run(service.pipeline.run_tsl(text, overrides or Overrides(), given))

    select_all(service)
    by_stop = {"apertium/eng-spa": {"break_chars": "."}}
    assert tsl("One. Two.", given=by_stop) == "ONE. TWO."
    with pytest.raises(PayloadTooLarge, match="3 pieces to translate.*limit of 2: use fewer break_chars"):
        tsl("One. Two. Three.", given=by_stop)
    by_space = {"apertium/eng-spa": {"break_chars": " "}}
    assert tsl("the lazy", given=by_space) == "THE LAZY"
    with pytest.raises(PayloadTooLarge, match="3 pieces"):
        tsl("thelazy dog", given=by_space)  # "the lazy dog" once the lost space is back
    japanese = Overrides(lang_src="ja", lang_dst="en", models=chosen(tsl="original"), any_model=True)
    assert service.stages.calls["translate"] == 2
    tsl("あ。\n。\n。", japanese)  # one piece once its lines are joined without spaces; with spaces, 3
    assert service.stages.calls["translate"] == 3


class DetectsOnceWatched(FakeStages):
    """Detection that finishes only once the other replica is waiting for this one's claim."""

    def __init__(self, watched: threading.Event):
        super().__init__()
        self.watched = watched

    async def detect(self, model_id, image, lang, options):
        deadline = time.monotonic() + 30
        while not self.watched.is_set():
            assert time.monotonic() < deadline, "the other replica never waited for the claim"
            await asyncio.sleep(0.01)
        return await super().detect(model_id, image, lang, options)


def test_a_replica_waits_for_the_same_work_on_another_one_and_answers_its_stored_result(tmp_path):
    """Two ingress replicas on one store, the same image at once: one computes, the other waits for
    its claim to go and answers what it stored, running no stage and reading no stage's rows itself."""
    url, watched = f"sqlite:///{tmp_path}/shared.db", threading.Event()
    replicas = [in_process_service(url, DetectsOnceWatched(watched), observer=RecordingObserver()) for _ in range(2)]
    for replica in replicas:
        is_claimed = replica.store.is_claimed
        replica.store.is_claimed = lambda claim, is_claimed=is_claimed: watched.set() or is_claimed(claim)
    select_all(replicas[0])
    contents, md5 = encode(render(TWO_PARAGRAPHS))

    async def both():
        call = dict(contents=contents, md5=md5, force=False, given_options=None, overrides=Overrides())
        return await asyncio.gather(*(replica.pipeline.run_ocrtsl(**call) for replica in replicas))

    first, second = asyncio.run(both())
    assert first == second and len(first) == 2
    assert sum(replica.stages.calls["detect"] for replica in replicas) == 1
    lookups = sum((replica.pipeline.observer.lookups for replica in replicas), Counter())
    assert lookups == Counter({("box", "miss"): 1, ("ocr", "miss"): 2, ("tsl", "miss"): 2})  # the computing one's


class TranslatesOnceWatched(FakeStages):
    """Translation that finishes only once the other replica is waiting for this one's claim."""

    def __init__(self, watched: threading.Event):
        super().__init__()
        self.watched = watched

    async def translate(self, model_id, texts, src, dst, options, glossary):
        deadline = time.monotonic() + 30
        while not self.watched.is_set():
            assert time.monotonic() < deadline, "the other replica never waited for the claim"
            await asyncio.sleep(0.01)
        return await super().translate(model_id, texts, src, dst, options, glossary)


def test_a_replica_waits_for_the_same_translation_on_another_one_and_answers_its_stored_one(tmp_path):
    """Two ingress replicas on one store, the same text at once for a reader profile: one translates it,
    the other waits for its claim to go and answers the translation it stored (not the default profile's
    manual one)."""
    from service.profiles import Profiles

    url, watched = f"sqlite:///{tmp_path}/shared.db", threading.Event()
    replicas = [in_process_service(url, TranslatesOnceWatched(watched)) for _ in range(2)]
    for replica in replicas:
        is_claimed = replica.store.is_claimed
        replica.store.is_claimed = lambda claim, is_claimed=is_claimed: watched.set() or is_claimed(claim)
    select_all(replicas[0])
    replicas[0].store.set_manual_translation("Good morning", "en", "es", "¡Buenos días!")
    reader = Profiles(replicas[0].store).create("bea")[0].id

    async def both():
        return await asyncio.gather(*(replica.pipeline.run_tsl("Good morning", Overrides(profile=reader), None)
                                      for replica in replicas))

    assert asyncio.run(both()) == ["GOOD MORNING", "GOOD MORNING"]
    assert sum(replica.stages.calls["translate"] for replica in replicas) == 1


def test_reading_or_writing_the_readers_translations_needs_both_languages(service):
    service.store.update_selection(lang_src="en")  # a source language, no target yet
    with pytest.raises(LanguagesNotSet):
        asyncio.run(service.manual.get_translations("text 40x20"))
    with pytest.raises(LanguagesNotSet):
        asyncio.run(service.manual.set_manual_translation("text 40x20", "mine"))
    with pytest.raises(LanguagesNotSet):  # and no image or text is worked on either
        run(service, md5="0" * 32)
    with pytest.raises(LanguagesNotSet):
        asyncio.run(service.pipeline.run_tsl("hi", Overrides(models=chosen(tsl="original"), any_model=True), None))


def _images_used(store: Store, *long_ago: bool) -> None:
    """One stored image per flag: last used in 2000, or just now."""
    for n, old in enumerate(long_ago):
        md5 = f"{n:032x}"
        store.save_blocks(md5, RunKey("box", "en", "{}"), [])
        if old:
            with store._session() as session:
                session.execute(update(ImageRow).where(ImageRow.md5 == md5)
                                .values(last_used=datetime(2000, 1, 1, tzinfo=UTC)))


def test_retention_prunes_by_the_configured_age_and_count_and_says_what_it_forgot(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="service.retention")
    by_age = Store(f"sqlite:///{tmp_path}/age.db")
    _images_used(by_age, True, True, False)
    assert retention.Retention(by_age, RetentionSettings(max_age_days=30)).prune()["images"] == 2
    assert "retention: forgot 2 images, 0 translations, 0 texts" in caplog.messages
    by_count = Store(f"sqlite:///{tmp_path}/count.db")
    _images_used(by_count, False, False, False)
    assert retention.Retention(by_count, RetentionSettings(max_age_days=None, max_images=1)).prune()["images"] == 2
    assert retention.Retention(by_count, RetentionSettings(max_age_days=30)).prune()["images"] == 0
    service = OcrTranslateService(by_count, Registry.load(), FakeStages(), Limits(),
                                  retention=RetentionSettings(max_images=1))
    assert service.pipeline.retention.settings.max_images == 1  # the service hands its settings on


class CountedRetention(retention.Retention):
    """Counts its rounds; the second flush fails, as when the database is briefly unreachable."""

    def __init__(self, store: Store):
        super().__init__(store, RetentionSettings(prune_every_s=3600))
        self.flushes = self.prunes = 0

    def flush(self) -> None:
        self.flushes += 1
        if self.flushes == 2:
            raise ConnectionError("the database is unreachable")
        super().flush()

    def prune(self) -> dict[str, int]:
        self.prunes += 1
        return super().prune()


def test_retention_flushes_every_round_prunes_on_its_schedule_and_outlives_store_errors(tmp_path, monkeypatch,
                                                                                        caplog):
    monkeypatch.setattr(retention, "FLUSH_EVERY_S", 0.01)  # rounds back to back; pruning hourly
    upkeep = CountedRetention(Store(f"sqlite:///{tmp_path}/s.db"))

    async def four_rounds() -> None:
        task = asyncio.create_task(upkeep.run())
        deadline = time.monotonic() + 30
        while upkeep.flushes < 4:
            assert not task.done() and time.monotonic() < deadline, "the maintenance loop stopped"
            await asyncio.sleep(0.01)
        assert not task.done()
        task.cancel()

    asyncio.run(four_rounds())
    assert upkeep.prunes == 1  # at start, then not before the hour is up
    failures = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
    assert failures == ["store maintenance failed; trying again in 0 s"]  # the second flush only


def test_the_handshake_offers_every_language_a_model_reads_or_writes(tmp_path):
    (tmp_path / "entries.yaml").write_text(
        "- {id: my/ja-sw, kind: tsl, backend: original, languages: [ja], languages_dst: [sw]}\n")
    service = in_process_service(tmp_path, FakeStages(), registry=Registry.load([tmp_path]))
    hello = asyncio.run(service.catalogue.handshake()).model_dump()
    assert "sw" in hello["Languages_dst"] and "sw" not in hello["Languages_src"]  # nothing reads Swahili
    assert "sw" in hello["Languages"] and set(hello["Languages_src"]) <= set(hello["Languages"])
    assert hello["Languages_hr"][hello["Languages"].index("sw")].startswith("Swahili")
    asyncio.run(service.catalogue.set_lang("ja", "sw"))  # the pair the extension's menus now offer
