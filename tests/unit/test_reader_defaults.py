"""The server picks the reader (issue 28): `set_lang` selects the reader's own earlier models for the
languages, else the registry's per-language defaults (`models_registry/reading_defaults.yaml`), falling
back along them to what is usable here; the handshake offers only languages that usable models read."""

import asyncio

import pytest
from pydantic import ValidationError

from core.settings import WeightSources
from core.slots import ModelSlots, chosen
from models_registry import Registry
from models_registry.reading_defaults import MeasuredLanguage, reading_defaults
from service.jobs import Overrides
from service.store import Selection
from tests.support.images import TWO_PARAGRAPHS, encode, render
from tests.support.services import FakeStages, in_process_service

SERVED_DEFAULTS = Selection("en", "es",
                            ModelSlots("rapidocr/ppocr-v4-det", "rapidocr/ppocr-v4-rec", "apertium/eng-spa"))
"""configs/local.yaml's default selection: what a fresh `make run` starts with."""


@pytest.fixture
def service(tmp_path):
    fresh = in_process_service(tmp_path, FakeStages())
    fresh.catalogue.start_with_defaults(SERVED_DEFAULTS)
    return fresh


def set_lang(service, src, dst, *profile):
    asyncio.run(service.catalogue.set_lang(src, dst, *profile))
    return service.store.selection(*profile).models


def read_an_image(service):
    contents, md5 = encode(render(TWO_PARAGRAPHS))
    return asyncio.run(service.pipeline.run_ocrtsl(contents=contents, md5=md5, force=False, given_options=None,
                                                   overrides=Overrides()))


def reader(models: ModelSlots[str]) -> tuple[str, str]:
    return models.box, models.ocr


def measured_first(code: str) -> tuple[str, str]:
    pair = reading_defaults().measured[code].pairs[0]
    return pair.box, pair.ocr


def test_a_fresh_server_set_to_japanese_reads_the_next_image_with_the_registrys_japanese_pair(service):
    assert measured_first("ja") == ("easyocr/craft", "tesseract/jpn")  # lowest CER at the best recall
    assert set_lang(service, "ja", "en") == ModelSlots("easyocr/craft", "tesseract/jpn", "original")
    blocks = read_an_image(service)  # answered: no 513
    assert [block.ocr for block in blocks] == ["text 40x20", "text 60x20"]
    assert service.stages.last["detect"][:2] == ("easyocr/craft", "ja")
    assert service.stages.last["read"][:2] == ("tesseract/jpn", "ja")
    assert service.stages.last["translate"][:3] == ("original", "ja", "en")
    hello = asyncio.run(service.catalogue.handshake())
    assert hello.selection_note == "No translation model installed here translates Japanese into English: " \
                                   "'original' shows the text as read."


def test_every_measured_language_gets_its_measured_pair_and_the_servers_defaults_are_no_readers_use(service):
    for code in reading_defaults().measured:
        assert reader(set_lang(service, code, "en")) == measured_first(code), code
    assert service.store.usage("ocr") == {"rapidocr/ppocr-v4-rec": 1}  # the config's, counted as before


def test_a_readers_own_choice_for_a_language_comes_back_with_the_language(service):
    set_lang(service, "ja", "en")
    asyncio.run(service.catalogue.set_models(chosen(box="rapidocr/ppocr-v4-det", ocr="tesseract/jpn_vert")))
    assert reader(set_lang(service, "fr", "en")) == measured_first("fr")  # the reader chose nothing for French
    assert reader(set_lang(service, "ja", "en")) == ("rapidocr/ppocr-v4-det", "tesseract/jpn_vert")
    other = service.store.create_profile("other", "7" * 64).id  # another profile: its own choices, none yet
    assert reader(set_lang(service, "ja", "en", other)) == measured_first("ja")


def test_a_model_that_still_fits_stays_only_as_the_readers_choice_for_the_language(service):
    set_lang(service, "en", "es")
    asyncio.run(service.catalogue.set_models(chosen(ocr="tesseract/jpn+eng")))  # chosen for English
    assert set_lang(service, "ja", "en").ocr == "tesseract/jpn"  # it reads Japanese too, but was not chosen for it
    assert set_lang(service, "en", "es").ocr == "tesseract/jpn+eng"


def test_the_translator_stays_where_it_fits_else_the_readers_own_else_the_first_installed_else_original(service):
    assert set_lang(service, "en", "ca").tsl == "apertium/eng-cat"  # eng-spa does not write Catalan
    asyncio.run(service.catalogue.set_models(chosen(tsl="original")))  # the reader's own, for en->ca
    assert set_lang(service, "en", "es").tsl == "apertium/eng-spa"  # `original` fits, but only for en->ca
    assert set_lang(service, "en", "ca").tsl == "original"
    assert set_lang(service, "es", "en").tsl == "apertium/spa-eng"
    assert set_lang(service, "fr", "en").tsl == "original"  # nothing installed translates French
    assert "translates French into English: 'original' shows" in asyncio.run(
        service.catalogue.handshake()).selection_note


def test_a_default_pair_that_is_not_usable_here_falls_back_along_the_list(service):
    asyncio.run(service.catalogue.manage_plugins({"easyocr": False}))  # CRAFT is gone
    assert reader(set_lang(service, "ja", "en")) == ("rapidocr/ppocr-v4-det", "tesseract/jpn")  # the next pair
    assert read_an_image(service)


def test_a_language_not_measured_gets_its_own_ocr_model_with_the_first_usable_box_detector(service):
    assert "it" not in reading_defaults().measured
    assert set_lang(service, "it", "it") == ModelSlots("easyocr/craft", "tesseract/ita", "original")
    asyncio.run(service.catalogue.manage_plugins({"easyocr": False}))
    assert set_lang(service, "ca", "en") == ModelSlots("rapidocr/ppocr-v4-det", "tesseract/cat", "apertium/cat-eng")


def test_the_measured_pairs_must_follow_the_stated_rule():
    pairs = [{"box": "b", "ocr": "best-recall", "cer": 0.30, "recall": 0.90, "images": 3},
             {"box": "b", "ocr": "close-recall", "cer": 0.20, "recall": 0.86, "images": 3},
             {"box": "b", "ocr": "low-cer", "cer": 0.10, "recall": 0.50, "images": 3}]
    with pytest.raises(ValidationError, match=r"expected \['b \+ close-recall', 'b \+ best-recall', 'b \+ low-cer'\]"):
        MeasuredLanguage(date="2026-12-06", pairs=pairs)
    MeasuredLanguage(date="2026-12-06", pairs=[pairs[1], pairs[0], pairs[2]])
    registry = Registry.load()
    for code, measured in reading_defaults().measured.items():
        for pair in measured.pairs:  # every pair names built-in models that read the language
            assert registry.get(pair.box).reads_language(code) and registry.get(pair.ocr).reads_language(code)


@pytest.mark.parametrize("downloads", [False, True])
def test_the_handshake_offers_only_languages_usable_models_read_and_each_gets_a_whole_selection(
        tmp_path, monkeypatch, downloads):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    weights = WeightSources(hub_downloads=downloads, allow_unpinned_downloads=True, models_dirs=[tmp_path / "none"])
    registry = Registry.load(weights=weights)
    service = in_process_service(tmp_path, FakeStages(), registry=registry)
    hello = asyncio.run(service.catalogue.handshake())
    usable = {kind: registry.usable(kind) for kind in ("box", "ocr", "tsl")}
    for code in hello.Languages_src[1:]:
        assert any(entry.reads_language(code) for entry in usable["ocr"]), code
        assert any(entry.reads_language(code) for entry in usable["box"]), code
    for code in hello.Languages_dst:
        assert any(entry.translates(src, code) for entry in usable["tsl"] for src in hello.Languages_src), code
    assert hello.Languages_src[0] == "auto" and "sw" not in hello.Languages_src  # M2M100 reads none of it
    assert ("nl" in hello.Languages_src) == downloads  # only TrOCR reads Dutch, once downloaded
    assert ("sw" in hello.Languages_dst) == downloads  # M2M100 writes Swahili from English
    for code in hello.Languages_src:
        models = set_lang(service, code, "en" if "en" in hello.Languages_dst else code)
        assert all(model_id for _, model_id in models), (code, models)  # never "No ... model selected"
    if not downloads:
        set_lang(service, "ko", "ko")
        assert read_an_image(service)
