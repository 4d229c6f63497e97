"""Batching across requests, counted in forward passes with a batch that fires when it is full.

A second application (tests/support/declared_apps.py) gets OCRReader's or Translator's batching set through
Serve's `user_config` to `max_batch_size` = the number of items a test sends and a wait far longer
than any test: the batch fires when its last item arrives, never on a clock, so the counts are exact
(a wrong count does not depend on timing; a test that fails may just take BATCH_HOLD_S longer). Each
test sets the batching back in `finally`.

A batch may mix requests with different languages and options: it is split into groups of alike
items, one backend call (forward pass) each, and every item must get its own answer back, also
after the items of a group are sorted by length.
"""

import concurrent.futures
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from core.options import resolve
from models_registry import Registry
from tests.support.declared_apps import DeclaredApp, counted, declared_app, full_batches
from tests.support.images import CJK_FONT, char_error_rate, render
from tests.support.live import direct
from tests.support.tiny_hf import MARIAN

APP = "batching"
OCR_MODEL = "rapidocr/ppocr-v4-rec"
"""Reads Chinese and English: one multiplexed model, so one Serve batch, for both languages."""
PASS_THROUGH = "original"
"""Its translation is the pre-processed text joined for the target language, so every item's own
text, options (break_chars, ignore_chars) and target language (word separator) show in its answer."""


@pytest.fixture(scope="module")
def app(live, tmp_path_factory) -> Iterator[DeclaredApp]:
    with declared_app(live, tmp_path_factory.mktemp("batching_data"), APP) as declared:
        yield declared


def translate_concurrently(app: DeclaredApp, bodies: list[dict[str, Any]]) -> list[str]:
    def send(body: dict[str, Any]) -> str:
        response = app.http.post("/run_tsl/", json=body)
        assert response.status_code == 200, response.text
        return response.json()["text"]

    with concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(send, bodies))


def line(text: str, font_path: str | None = None) -> np.ndarray:
    extra = {"font_path": font_path} if font_path else {}
    return np.array(render([((10, 8), text)], size=(30 * len(text) + 20, 50), **extra))


def read_concurrently(app: DeclaredApp, crops: list[tuple[np.ndarray, str]]) -> list[str]:
    """Each crop as its own request to OCRReader, all in flight together (as the ingress sends the
    crops of concurrent images); the detector's blocks do not enter."""
    options = resolve(Registry.load().get(OCR_MODEL).option_specs, None)
    return read_with_options(app, OCR_MODEL, [(crop, lang, options) for crop, lang in crops])


def read_with_options(app: DeclaredApp, model_id: str, crops: list[tuple[np.ndarray, str, dict[str, Any]]]
                      ) -> list[str]:
    """As `read_concurrently`, each crop with its own language and options."""
    handle = app.handle("OCRReader").options(multiplexed_model_id=model_id)
    responses = [handle.read.remote([crop], lang, options) for crop, lang, options in crops]
    return [text for response in responses for text in response.result()]


def test_translation_batches_fire_when_full_one_forward_pass_each(live, app):
    k = 6
    bodies = [{"text": f"batched sentence number {i}" + " again" * (i % 3), "lang_src": "ja", "lang_dst": "en",
               "tsl_model_id": MARIAN} for i in range(2 * k)]
    translate_concurrently(app, [{**bodies[0], "text": "load the model"}])
    with full_batches(app, "Translator", k):
        answers, calls, items = counted(app, "Translator", MARIAN, lambda: translate_concurrently(app, bodies))
    # 2k texts of one model, languages and options: two full batches, one forward pass each.
    assert (calls, items) == (2, 2 * k)
    assert answers == [direct(live, MARIAN, body["text"]) for body in bodies]


# (text, source, target, options) -> what the pass-through answers for exactly that item.
MIXED_TRANSLATIONS = [
    ("a much longer first text of this batch", "en", "es", {}, "a much longer first text of this batch"),
    ("one.two.three", "en", "ja", {"break_chars": "."}, "one.two.three"),
    ("b", "en", "es", {}, "b"),
    ("one.two.three", "en", "es", {"break_chars": "."}, "one. two. three"),
    ("axbxc", "en", "es", {"ignore_chars": "x"}, "abc"),
    ("medium sized text", "en", "es", {}, "medium sized text"),
    ("猫です。犬です。", "ja", "en", {"break_chars": "。"}, "猫です。 犬です。"),
    ("x.y", "en", "es", {"break_chars": "."}, "x. y"),
]
MIXED_GROUPS = len({(src, dst, tuple(sorted(options.items()))) for _, src, dst, options, _ in MIXED_TRANSLATIONS})


def test_a_translation_batch_mixing_languages_and_options_answers_each_item_its_own(app):
    bodies = [{"text": text, "lang_src": src, "lang_dst": dst, "tsl_model_id": PASS_THROUGH,
               "options": {PASS_THROUGH: options}} for text, src, dst, options, _ in MIXED_TRANSLATIONS]
    translate_concurrently(app, [{**bodies[0], "text": "load the model"}])
    with full_batches(app, "Translator", len(bodies)):
        answers, calls, items = counted(app, "Translator", PASS_THROUGH, lambda: translate_concurrently(app, bodies))
    assert answers == [expected for *_, expected in MIXED_TRANSLATIONS]
    assert items == len(bodies)
    assert calls == MIXED_GROUPS == 5  # one backend call per (source, target, options) group, in one batch


ENGLISH = ["ok", "Seven lanterns", "reading text in images", "a much longer line of words to read here",
           "blue", "Numbers 12345", "short one", "the last line of the batch"]
CHINESE = ["你好", "中文识别测试", "今天天气很好我们去公园"]


def assert_each_read_its_own(texts: list[str], truths: list[str]) -> None:
    for text, truth in zip(texts, truths, strict=True):
        errors = {other: char_error_rate(text, other) for other in truths}
        assert errors[truth] <= 0.15 and min(errors, key=errors.get) == truth, (text, truth)


def test_ocr_batches_fire_when_full_one_forward_pass_each(app):
    k = len(ENGLISH) // 2
    read_concurrently(app, [(line("warm up"), "en")])
    with full_batches(app, "OCRReader", k):
        texts, calls, items = counted(app, "OCRReader", OCR_MODEL,
                                      lambda: read_concurrently(app, [(line(text), "en") for text in ENGLISH]))
    assert (calls, items) == (2, 2 * k)
    assert_each_read_its_own(texts, ENGLISH)


def test_an_ocr_batch_mixing_languages_answers_each_crop_its_own(app):
    # Widths in no order, the two languages interleaved: the recognizer sorts a group's crops by width.
    crops = [(line(ENGLISH[3]), "en"), (line(CHINESE[0], CJK_FONT), "zh"), (line(ENGLISH[0]), "en"),
             (line(CHINESE[2], CJK_FONT), "zh"), (line(ENGLISH[2]), "en"), (line(CHINESE[1], CJK_FONT), "zh"),
             (line(ENGLISH[1]), "en")]
    truths = [ENGLISH[3], CHINESE[0], ENGLISH[0], CHINESE[2], ENGLISH[2], CHINESE[1], ENGLISH[1]]
    read_concurrently(app, [(line("warm up"), "en")])
    with full_batches(app, "OCRReader", len(crops)):
        texts, calls, items = counted(app, "OCRReader", OCR_MODEL, lambda: read_concurrently(app, crops))
    assert_each_read_its_own(texts, truths)
    assert (calls, items) == (2, len(crops))  # one batch, one backend call per language


TESSERACT = "tesseract/eng"
"""Reads a whole crop with Tesseract's page segmentation mode `psm` (6: a block of lines, 7: one
line), so a crop's text shows which options it was read with."""


def lines(*texts: str) -> np.ndarray:
    width = 30 * max(len(text) for text in texts) + 20
    return np.array(render([((10, 8 + 50 * i), text) for i, text in enumerate(texts)], size=(width, 50 * len(texts))))


def test_an_ocr_batch_mixing_options_answers_each_crop_its_own(app):
    reader = Registry.load().load_backend(TESSERACT, "ocr")
    block, line_only = (resolve(reader.entry.option_specs, {"psm": psm}) for psm in (6, 7))
    two_lines, other_two, one = lines("Seven lanterns", "reading text"), lines("Numbers 12345", "short one"), line("ok")
    # The options interleaved, two crops read both ways: each crop must come back read with its own.
    crops = [(two_lines, "en", line_only), (one, "en", block), (two_lines, "en", block),
             (other_two, "en", line_only), (other_two, "en", block)]
    alone = [reader.read([crop], "eng", options)[0] for crop, _, options in crops]
    assert alone[0] != alone[2] and alone[3] != alone[4]  # the options change what a crop reads
    assert "Seven lanterns" in alone[2] and "reading text" in alone[2]
    read_with_options(app, TESSERACT, [(line("warm up"), "en", block)])
    with full_batches(app, "OCRReader", len(crops)):
        texts, calls, items = counted(app, "OCRReader", TESSERACT, lambda: read_with_options(app, TESSERACT, crops))
    assert texts == alone
    assert (calls, items) == (2, len(crops))  # one batch, one backend call per options
