"""Batches of the model deployments, without Serve: grouping, order, and failures kept per group."""

import numpy as np
import pytest

from core.errors import BadRequest
from core.options import TSL_OPTIONS, resolve
from core.stages import OCRItem, TranslationItem, raise_failure, read_grouped, translate_grouped
from models_registry import Registry


class Echo:
    """A stand-in backend: reads a crop as its width, translates by upper-casing; fails on request."""

    def __init__(self, model_id: str):
        self.entry = Registry.load().get(model_id)
        self.calls = []

    def read(self, crops, lang, options):
        self.calls.append(lang)
        if lang == "ja":
            raise RuntimeError("this group's model call failed")
        return [f"{crop.shape[1]}px" for crop in crops]

    def translate(self, texts, src, dst, options):
        self.calls.append(tuple(texts))
        if options.get("break_newlines"):
            raise BadRequest("no")
        return [text.upper() for text in texts]


def test_a_failing_group_fails_its_own_items_only_and_order_is_kept():
    backend = Echo("tesseract/eng")
    items = [OCRItem(np.zeros((4, width, 3), np.uint8), lang, {}) for width, lang in
             [(10, "en"), (20, "ja"), (30, "en"), (40, "ja")]]
    results, calls = read_grouped(backend, items)
    assert calls == 2 and results[0] == "10px" and results[2] == "30px"
    assert all(isinstance(results[i], RuntimeError) for i in (1, 3))
    with pytest.raises(RuntimeError):
        raise_failure(results[1:2])
    assert raise_failure([results[0], results[2]]) == ["10px", "30px"]


def test_translation_batches_mix_requests_and_map_pieces_back_after_sorting():
    backend = Echo("apertium/eng-spa")
    plain, split = resolve(TSL_OPTIONS, {}), resolve(TSL_OPTIONS, {"break_newlines": True})
    items = [TranslationItem("a long first text", "en", "es", plain),
             TranslationItem("b", "en", "es", plain),
             TranslationItem("other\noptions", "en", "es", split),
             TranslationItem("b", "en", "es", plain)]
    results, calls = translate_grouped(backend, items)
    assert calls == 2
    assert results[0] == "A LONG FIRST TEXT" and results[1] == results[3] == "B"
    assert backend.calls[0] == ("b", "a long first text")  # one call, shortest first, duplicates once
    assert isinstance(results[2], BadRequest)
