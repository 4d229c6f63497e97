"""Fake model stages and the endpoints' logic built over them in the test process (no Ray): a real
store and registry, model stages that count their calls."""

import asyncio
from collections import Counter
from pathlib import Path

from core.boxes import Block, Box
from core.settings import Limits
from core.slots import chosen
from models_registry import Registry
from service.service import OcrTranslateService
from service.store import Store


class FakeStages:
    """Two blocks per image; OCR returns the crop size; translation upper-cases."""

    def __init__(self):
        self.calls = Counter()
        self.last = {}
        """What each stage was last called with: model, language(s), options, the image's shape."""

    async def detect(self, model_id, image, lang, options):
        self.calls["detect"] += 1
        self.last["detect"] = (model_id, lang, options, image.shape)
        await asyncio.sleep(0.05)
        return [Block(Box(0, 0, 40, 20), [[Box(0, 0, 40, 20)]]), Block(Box(0, 30, 60, 50), [[Box(0, 30, 60, 50)]])]

    async def read(self, model_id, crops, lang, options):
        self.calls["read"] += len(crops)
        self.last["read"] = (model_id, lang, options)
        return [f"text {crop.shape[1]}x{crop.shape[0]}" for crop in crops]

    async def translate(self, model_id, texts, src, dst, options, glossary):
        self.calls["translate"] += len(texts)
        self.last["translate"] = (model_id, src, dst, options)
        self.last["glossary"] = glossary
        return [text.upper() for text in texts]

    async def warm(self, kind, model_id):
        self.calls[f"warm {model_id}"] += 1


def in_process_service(where: Path | str, stages, limits: Limits | None = None, *, registry: Registry | None = None,
                       **settings) -> OcrTranslateService:
    """The service over a new SQLite store in the folder `where` (or the database URL `where`), the
    built-in registry unless another is given, and `stages` (None: no model stages at all)."""
    url = where if isinstance(where, str) else f"sqlite:///{where}/s.db"
    return OcrTranslateService(Store(url), registry or Registry.load(), stages, limits or Limits(), **settings)


def select_all(service):
    asyncio.run(service.catalogue.set_lang("en", "es"))
    answer = asyncio.run(service.catalogue.set_models(
        chosen(box="easyocr/craft", ocr="tesseract/eng", tsl="apertium/eng-spa")))
    assert answer is None  # selected and loaded: nothing finishes in the background (no 202)


class CopiesUnknownWords:
    """A model that copies what it does not know (as Apertium and most translation models do with
    names): words it knows are translated, others pass through."""

    translates_pages = False
    WORDS = {"hello": "hola", "went": "fue", "to": "a", "the": "la", "city": "ciudad"}

    def __init__(self):
        self.entry = Registry.load().get("apertium/eng-spa")
        self.calls = []

    def translate(self, texts, src, dst, options):
        self.calls.append(list(texts))
        return [" ".join(self.WORDS.get(word.lower(), word) for word in text.split()) for text in texts]
