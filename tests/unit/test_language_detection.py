"""`lang_src: auto`: each block's language is detected (lingua, among the languages the server can
translate) and the block goes to the translation model for that language; a block in the
destination language, or without letters, is shown as read."""

import asyncio

import pytest

from core import language_id
from core.boxes import Block, Box
from core.errors import BadRequest, Forbidden, NotFound
from core.settings import Limits, WeightSources
from core.slots import chosen
from models_registry import Registry
from service.jobs import Overrides
from tests.support.images import THREE_LANGUAGES, encode, render, three_languages_page
from tests.support.services import in_process_service
from tests.support.tiny_hf import MARIAN, build_marian, tiny_entries

# The project's own sample lines: what its tests render and its README shows, and lines of the kind
# readers meet on manga pages, signs and screenshots.
SAMPLE_LINES = {
    "en": ["The quick brown fox jumps over the lazy dog today.", "Hello world, this is a test of paragraph detection.",
           "The dog eats bread.", "My house is big and beautiful.", "Where are you going tonight?",
           "Please close the door behind you.", "I can't believe you did that!", "Press any key to continue.",
           "Open daily from nine to five.", "We have to leave before the train does."],
    "es": ["El perro come pan.", "Mi casa es grande y bonita.", "¿Adónde vas esta noche?",
           "Por favor, cierra la puerta detrás de ti.", "¡No puedo creer que hicieras eso!",
           "Pulsa cualquier tecla para continuar.", "Abierto todos los días de nueve a cinco.",
           "Tenemos que salir antes que el tren.", "La biblioteca está cerrada por obras.",
           "Gracias por tu ayuda, amigo mío."],
    "fr": ["Le chien mange du pain.", "Ma maison est grande et belle.", "Où vas-tu ce soir ?",
           "Merci de fermer la porte derrière vous.", "Je n'arrive pas à croire que tu as fait ça !",
           "Appuyez sur une touche pour continuer.", "Ouvert tous les jours de neuf heures à dix-sept heures.",
           "Nous devons partir avant le train."],
    "de": ["Der Hund isst Brot.", "Mein Haus ist groß und schön.", "Wohin gehst du heute Abend?",
           "Bitte schließen Sie die Tür hinter sich.", "Ich kann nicht glauben, dass du das getan hast!",
           "Drücken Sie eine beliebige Taste, um fortzufahren.", "Täglich geöffnet von neun bis fünf Uhr.",
           "Wir müssen vor dem Zug losfahren."],
    "ja": ["吾輩は猫である。名前はまだ無い。", "日本語の文章を読む", "今夜はどこへ行くの？", "ドアを閉めてください。",
           "そんなことをしたなんて信じられない！", "何かキーを押して続けてください。",
           "毎日九時から五時まで営業しています。", "電車より先に出ないといけない。"],
}
MIN_ACCURACY = 0.95


def test_the_identifier_tells_the_sample_lines_apart():
    candidates = frozenset(SAMPLE_LINES)
    wrong = [(line, found) for code, lines in SAMPLE_LINES.items()
             for line, found in zip(lines, language_id.identify(lines, candidates), strict=True) if found != code]
    total = sum(len(lines) for lines in SAMPLE_LINES.values())
    accuracy = 1 - len(wrong) / total
    print(f"language identification: {total - len(wrong)} of {total} sample lines right ({accuracy:.0%})")
    assert accuracy >= MIN_ACCURACY, wrong


def test_the_identifier_keeps_to_its_candidates():
    assert language_id.identify(["El perro come pan.", "The dog eats bread."], frozenset({"es", "en"})) == ["es", "en"]
    # Japanese among English and Spanish only: no language to name, rather than a wrong one
    assert language_id.identify(["吾輩は猫である。"], frozenset({"es", "en"})) == [None]
    assert language_id.identify(["12:30", "!?", "Hola"], frozenset({"es", "en"})) == [None, None, "es"]
    assert language_id.identify(["anything at all", "..."], frozenset({"es"})) == ["es", None]  # one candidate
    assert language_id.identify(["text"], frozenset()) == [None]
    assert language_id.detectable(frozenset({"en", "zht", "xx"})) == {"en", "zht"}  # zht as Chinese
    assert language_id.detectable(frozenset({"zh", "zht"})) == {"zh"}  # lingua tells one Chinese
    assert language_id.identify(["我们今天去公园散步。"], frozenset({"zht", "en"})) == ["zht"]


# -- the service, with fake model stages ---------------------------------------------------------------
LINES = {"en": "The dog eats bread.", "es": "El perro come pan.", "ja": "吾輩は猫である。", "none": "12:30"}
BOXES = [Box(0, 40 * i, 100, 40 * i + 20) for i in range(len(LINES))]


class FakeStages:
    """Four blocks per image, read as LINES in order; a translation names its model and languages."""

    def __init__(self):
        self.translated: list[tuple[str, str, str, tuple[str, ...]]] = []
        self.read_with: list[tuple[str, str]] = []

    async def detect(self, model_id, image, lang, options):
        return [Block(box, [[box]]) for box in BOXES]

    async def read(self, model_id, crops, lang, options):
        self.read_with.append((model_id, lang))
        return list(LINES.values())[:len(crops)]

    async def translate(self, model_id, texts, src, dst, options, glossary):
        self.translated.append((model_id, src, dst, tuple(texts)))
        return [f"{model_id}:{src}>{dst}:{text}" + (f" {glossary.as_dict()}" if glossary else "") for text in texts]

    async def warm(self, kind, model_id):
        pass


@pytest.fixture(scope="module")
def tiny_registry(tmp_path_factory):
    """The built-in entries and a tiny Japanese->English model (its weights here, so it can be routed to)."""
    models, entries = tmp_path_factory.mktemp("models"), tmp_path_factory.mktemp("entries")
    build_marian(models / MARIAN, seed=0)
    (entries / "tiny.yaml").write_text(tiny_entries())
    return Registry.load([entries], WeightSources(models_dirs=[models]))


@pytest.fixture
def service(tmp_path, tiny_registry):
    return in_process_service(tmp_path, FakeStages(), registry=tiny_registry, limits=Limits(max_image_pixels=1_000_000))


def select_auto(service, tsl="apertium/spa-eng"):
    asyncio.run(service.catalogue.set_lang("auto", "en"))
    asyncio.run(service.catalogue.set_models(chosen(box="easyocr/craft", ocr="tesseract/jpn+eng+spa", tsl=tsl)))


def run(service, contents=None, md5=None, **overrides):
    return [block.model_dump(mode="json") for block in asyncio.run(service.pipeline.run_ocrtsl(
        contents=contents, md5=md5, force=False, given_options=None, overrides=Overrides(**overrides, any_model=True)))]


def test_the_handshake_offers_detection_as_a_source_only(service):
    hello = asyncio.run(service.catalogue.handshake())
    assert hello.Languages_src[0] == hello.Languages[0] == "auto" and "auto" not in hello.Languages_dst
    assert hello.Languages_hr[hello.Languages.index("auto")] == "Detect automatically"
    with pytest.raises(BadRequest, match="'auto' detects the source language"):
        asyncio.run(service.catalogue.set_lang("en", "auto"))
    asyncio.run(service.catalogue.set_lang("auto", "en"))
    hello = asyncio.run(service.catalogue.handshake())
    # readers of several languages at once; any-script detectors; translators into English
    assert {"tesseract/jpn+eng+spa", "tesseract/jpn+eng", "rapidocr/ppocr-v4-rec"} <= set(hello.OCRModels)
    assert "tesseract/eng" not in hello.OCRModels and "easyocr/en" not in hello.OCRModels
    assert {"easyocr/craft", "rapidocr/ppocr-v4-det"} <= set(hello.BOXModels)
    assert {"apertium/spa-eng", MARIAN} <= set(hello.TSLModels) and "apertium/eng-spa" not in hello.TSLModels
    with pytest.raises(BadRequest, match="does not support the selected languages"):
        asyncio.run(service.catalogue.set_models(chosen(ocr="tesseract/eng")))


def test_each_block_goes_to_the_model_for_its_detected_language(service):
    select_auto(service)
    contents, md5 = encode(render([((10, 10), "any image")]))
    result = run(service, contents, md5)
    assert [block["lang_src"] for block in result] == ["en", "es", "ja", None]
    assert [block["tsl"] for block in result] == [
        LINES["en"],  # already English: shown as read
        f"apertium/spa-eng:es>en:{LINES['es']}",  # the selected model, where it translates the language
        f"{MARIAN}:ja>en:{LINES['ja']}",  # another model here for the language the selected one cannot
        LINES["none"],  # no letters: no language, shown as read
    ]
    stages = service.pipeline.stages
    assert stages.read_with == [("tesseract/jpn+eng+spa", "auto")]
    assert sorted(stages.translated) == [("apertium/spa-eng", "es", "en", (LINES["es"],)),
                                         (MARIAN, "ja", "en", (LINES["ja"],))]
    # The md5-only call finds the same answer (translations are stored under the detected languages).
    assert run(service, md5=md5) == result
    assert len(stages.translated) == 2
    # A fixed source reuses what detection stored: the Spanish text is not translated again.
    [block] = [b for b in run(service, contents, md5, lang_src="es") if b["ocr"] == LINES["es"]]
    assert block["tsl"] == f"apertium/spa-eng:es>en:{LINES['es']}" and "lang_src" not in block


def run_anonymously(service, contents=None, md5=None):
    """A client without the API token: only the selected models and `security.override_models`."""
    return [block.model_dump(mode="json") for block in asyncio.run(service.pipeline.run_ocrtsl(
        contents=contents, md5=md5, force=False, given_options=None, overrides=Overrides()))]


def test_detection_never_widens_the_models_an_anonymous_client_may_run(service):
    """The Japanese block of a page read with auto: the selected Spanish translator does not translate it,
    and the tiny Japanese model is neither selected nor allowed by the operator, so it is not loaded: the
    block is shown as read, saying why. The operator's `security.override_models` allows it."""
    select_auto(service)
    contents, md5 = encode(render([((10, 10), "any image")]))
    english, spanish, japanese, _ = run_anonymously(service, contents, md5)
    assert (japanese["lang_src"], japanese["tsl"]) == ("ja", LINES["ja"])  # still detected as Japanese
    assert "No translator of Japanese" in japanese["untranslated"] and "override_models" in japanese["untranslated"]
    assert spanish["tsl"] == f"apertium/spa-eng:es>en:{LINES['es']}" and "untranslated" not in spanish
    assert "untranslated" not in english
    assert [model for model, *_ in service.pipeline.stages.translated] == ["apertium/spa-eng"]
    with pytest.raises(Forbidden, match="Japanese, which no translation model this request may use"):
        asyncio.run(service.pipeline.run_tsl(LINES["ja"], Overrides(), None))
    asyncio.run(service.catalogue.set_models(chosen(ocr="tesseract/jpn+eng")))  # Japanese and English only
    with pytest.raises(BadRequest, match="No model you may use here translates"):  # only MARIAN would
        run_anonymously(service, contents, md5)
    asyncio.run(service.catalogue.set_models(chosen(ocr="tesseract/jpn+eng+spa")))

    service.pipeline.jobs.override_models = frozenset({MARIAN})
    japanese = run_anonymously(service, contents, md5)[2]
    assert japanese["tsl"] == f"{MARIAN}:ja>en:{LINES['ja']}" and "untranslated" not in japanese


def test_an_answer_with_a_given_source_keeps_the_extensions_keys(service):
    select_auto(service)
    contents, md5 = encode(render([((10, 10), "any image")]))
    asyncio.run(service.catalogue.set_lang("es", "en"))
    assert all(set(block) == {"ocr", "tsl", "box"} for block in run(service, contents, md5))


def test_the_glossary_of_each_detected_pair_applies(service):
    select_auto(service)
    asyncio.run(service.manual.set_glossary_term("perro", "hound", "es", "en"))
    asyncio.run(service.manual.set_glossary_term("猫", "cat", "ja", "en"))
    contents, md5 = encode(render([((10, 10), "any image")]))
    tsl = {block["lang_src"]: block["tsl"] for block in run(service, contents, md5)}
    assert tsl["es"].endswith("{'perro': 'hound'}") and tsl["ja"].endswith("{'猫': 'cat'}")
    with pytest.raises(BadRequest, match="name it in 'lang_src'"):
        asyncio.run(service.manual.glossary())


def test_only_languages_some_model_translates_are_detected(service):
    """Without a Japanese translator the Japanese block is not called English or Spanish: it has no
    language among the candidates and is shown as read."""
    select_auto(service)
    asyncio.run(service.catalogue.manage_plugins({"huggingface": False}))
    contents, md5 = encode(render([((10, 10), "any image")]))
    [_, spanish, japanese, _] = run(service, contents, md5)
    assert spanish["lang_src"] == "es" and (japanese["lang_src"], japanese["tsl"]) == (None, LINES["ja"])


def test_detection_needs_a_model_for_some_language_read(service):
    """PP-OCRv4 reads Chinese and English; nothing here translates Chinese, and English is the destination."""
    select_auto(service)
    with pytest.raises(BadRequest, match="No model here translates any language the OCR model reads into English"):
        run(service, *encode(render([((10, 10), "x")])), models=chosen(ocr="rapidocr/ppocr-v4-rec", tsl=MARIAN))


def test_manual_translations_follow_the_detected_language(service):
    select_auto(service)
    contents, md5 = encode(render([((10, 10), "any image")]))
    run(service, contents, md5)
    asyncio.run(service.manual.set_manual_translation(LINES["es"], "The dog eats its bread."))
    assert asyncio.run(service.manual.get_translations(LINES["es"]))[0].text == "The dog eats its bread."
    assert service.store.translations_of(LINES["es"], "es", "en")[0] == ("manual", "The dog eats its bread.")
    assert [b["tsl"] for b in run(service, md5=md5) if b["lang_src"] == "es"] == ["The dog eats its bread."]
    with pytest.raises(NotFound, match="never translated into English"):  # shown as read: nothing to replace
        asyncio.run(service.manual.set_manual_translation(LINES["en"], "x"))
    assert asyncio.run(service.manual.get_translations(LINES["en"])) == []


def test_run_tsl_detects_the_text_language(service):
    select_auto(service)
    text = asyncio.run(service.pipeline.run_tsl("Mi casa es grande y bonita.", Overrides(), None))
    assert text == "apertium/spa-eng:es>en:Mi casa es grande y bonita."
    assert asyncio.run(service.pipeline.run_tsl("Already English here.", Overrides(), None)) == "Already English here."


def test_the_pass_through_is_never_routed_to(service, tiny_registry):
    translators = service.catalogue.translators_for_detection("apertium/spa-eng", "en",
                                                              tiny_registry.get("tesseract/jpn+eng+spa"), frozenset())
    assert translators == {"es": "apertium/spa-eng", "ja": MARIAN}
    chosen_original = service.catalogue.translators_for_detection("original", "en", None, frozenset())
    assert set(chosen_original.values()) == {"original"}  # the reader chose no translation


def test_a_page_in_three_languages_over_http(live):
    """English, Spanish and Japanese lines on one rendered page, read by Tesseract with the three
    languages: each block tagged with its language and translated by that language's model."""
    lines = THREE_LANGUAGES
    contents, md5 = encode(three_languages_page())
    request = {"contents": contents, "md5": md5, "lang_src": "auto", "lang_dst": "en",
               "box_model_id": "easyocr/craft", "ocr_model_id": "tesseract/jpn+eng+spa",
               "tsl_model_id": "apertium/spa-eng"}
    response = live.http.post("/run_ocrtsl/", json=request)
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert [block["lang_src"] for block in result] == ["en", "es", "ja"], result
    english, spanish, japanese = result
    assert english["ocr"] == english["tsl"] == lines[0]
    assert (spanish["ocr"], spanish["tsl"]) == (lines[1], "The dog eats bread.")  # Apertium spa-eng
    # The Japanese block: the tiny Japanese->English model's translation of what was read.
    direct = live.http.post("/run_tsl/", json={"text": japanese["ocr"], "lang_src": "ja", "lang_dst": "en",
                                                "tsl_model_id": MARIAN})
    assert direct.status_code == 200, direct.text
    assert japanese["tsl"] == direct.json()["text"] and "猫" in japanese["ocr"]
    lazy = live.http.post("/run_ocrtsl/", json={key: value for key, value in request.items() if key != "contents"})
    assert lazy.status_code == 200 and lazy.json()["result"] == result
