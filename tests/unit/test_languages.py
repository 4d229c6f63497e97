"""Language codes (ISO 639-1 and the original's `zht`) and per-language default options."""

import pytest

from core import languages
from core.errors import BadRequest
from models_registry import Registry
from models_registry.schema import language_defaults


def test_traditional_chinese_is_accepted_as_the_original_names_it():
    assert languages.check_code("zht") == "zht"
    assert languages.name_of("zht") == "Chinese (Traditional)"
    assert languages.word_separator("zht") == "" and "zht" in languages.VERTICAL_LANGUAGES
    with pytest.raises(BadRequest):
        languages.check_code("zhx")


def test_traditional_chinese_has_models_that_read_and_translate_it():
    registry = Registry.load()
    assert "tesseract/chi_tra" in [entry.id for entry in registry.entries.values() if entry.reads_language("zht")]
    assert registry.get("facebook/nllb-200-distilled-600M").code_for("zht") == "zho_Hant"
    assert registry.get("Helsinki-NLP/opus-mt-zh-en").translates("zht", "en")


def test_language_defaults_are_the_originals_and_sit_under_the_models_own():
    defaults = language_defaults()
    assert defaults["ja"]["break_chars"] == "!。?！？" and defaults["en"]["restore_missing_spaces"] is True
    registry = Registry.load()
    apertium = registry.get("apertium/eng-spa")
    assert apertium.option_specs_for("en")["restore_missing_spaces"].default is True
    assert apertium.option_specs_for("en")["allowed_start_end"].default.startswith("a-zA-Z0-9")
    assert apertium.option_specs_for("ko")["restore_missing_spaces"].default is False
    marian = registry.get("Helsinki-NLP/opus-mt-ja-en")  # its entry sets break_newlines itself
    assert marian.option_specs_for("ja")["break_chars"].default == "!。?！？"
    assert marian.default_options["break_newlines"] is True
    assert marian.option_specs_for("ja")["break_newlines"].default is True


def test_over_http_traditional_chinese_is_offered_and_english_gets_its_defaults(live):
    from tests.support.live import select_models

    hello = live.http.get("/").json()
    assert "zht" in hello["Languages_src"] and "zht" in hello["Languages"]
    assert live.http.post("/set_lang/", json={"lang_src": "zht", "lang_dst": "en"}).status_code == 200

    select_models(live, {"box_model_id": "rapidocr/ppocr-v4-det", "ocr_model_id": "tesseract/eng",
                         "tsl_model_id": "original"})  # en -> es; `original` answers the pre-processed text
    active = live.http.get("/get_active_options/").json()["options"]["tsl_model"]
    assert active["restore_missing_spaces"]["value"] is True
    response = live.http.post("/run_tsl/", json={"text": "|| Thequick brownfox jumps-\nover thelazy dog."})
    assert response.status_code == 200, response.text
    assert response.json()["text"] == "The quick brown fox jumps over the lazy dog."
    plain = {"original": {"restore_missing_spaces": False, "allowed_start_end": "|a-zA-Z ",
                          "restore_dash_newlines": False}}
    response = live.http.post("/run_tsl/", json={"text": "|| Thequick fox", "options": plain})
    assert response.json()["text"] == "|| Thequick fox"


def test_codes_map_to_iso_639_3_and_spaced_languages_separate_words_with_a_space():
    assert languages.alpha3_of("ja") == "jpn" and languages.alpha3_of("zht") == "zho"
    assert languages.word_separator("en") == " " and languages.word_separator("ja") == ""
    with pytest.raises(BadRequest, match="Unknown language code 'xx'"):
        languages.check_code("xx")
