"""Batches of the model deployments, without Serve: grouping, order, and failures kept per group."""

import numpy as np
import pytest

from core.boxes import Box
from core.errors import BadRequest
from core.options import TSL_OPTIONS, resolve
from models_registry import Registry
from models_registry.backends.canvas import paste, shared_canvases
from service.stages import (
    DetectionItem,
    OCRItem,
    TranslationItem,
    detect_grouped,
    raise_failure,
    read_grouped,
    translate_grouped,
)


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

    def detect_many(self, images, lang, options):
        """One line across the top of each image, as tall as the image's first pixel says."""
        self.calls.append((lang, len(images)))
        if options.get("fail"):
            raise RuntimeError("this group's model call failed")
        return [[Box(0, 0, image.shape[1], int(image[0, 0, 0]))] for image in images]

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


def test_detection_batches_group_images_by_language_and_options_and_map_blocks_back():
    backend = Echo("rapidocr/ppocr-v4-det")
    plain = resolve(Registry.load().get("rapidocr/ppocr-v4-det").option_specs, {})
    failing = {**plain, "fail": True}
    items = [DetectionItem(np.full((60, width, 3), height, np.uint8), lang, options) for width, height, lang, options in
             [(100, 10, "en", plain), (200, 20, "ja", plain), (300, 30, "en", plain), (400, 40, "en", failing)]]
    results, calls = detect_grouped(backend, items)
    assert calls == 3 and sorted(backend.calls) == [("en", 1), ("en", 2), ("ja", 1)]
    assert [result[0].box for result in results[:3]] == [Box(0, 0, 100, 10), Box(0, 0, 200, 20), Box(0, 0, 300, 30)]
    assert isinstance(results[3], RuntimeError)


def test_shared_canvases_keep_padding_within_the_bound_and_take_every_image_once():
    shapes = [(320, 640), (64, 64), (330, 600), (1600, 1200), (300, 640), (1500, 1100), (90, 70)]
    groups = shared_canvases(shapes, max_padding=0.5)
    assert sorted(i for group in groups for i in group) == list(range(len(shapes)))
    for group in groups:
        height, width = max(shapes[i][0] for i in group), max(shapes[i][1] for i in group)
        used = sum(shapes[i][0] * shapes[i][1] for i in group)
        assert used >= 0.5 * height * width * len(group), group
    assert [0, 2, 4] in groups and [3, 5] in groups  # alike sizes share a canvas
    assert not any(1 in group and 0 in group for group in groups)  # a thumbnail never pads a page
    assert shared_canvases([(10, 10)] * 3, max_padding=0.0) == [[0, 1, 2]]


def test_images_are_pasted_top_left_and_continued_by_their_border():
    small = np.arange(6, dtype=np.float32).reshape(1, 2, 3)
    large = np.ones((1, 3, 4), np.float32)
    canvas = paste([small, large])
    assert canvas.shape == (2, 1, 3, 4) and canvas.dtype == np.float32
    assert (canvas[0, 0, :2, :3] == small[0]).all() and (canvas[1] == large).all()
    assert canvas[0, 0, 2].tolist() == [3, 4, 5, 5] and canvas[0, 0, 0, 3] == 2
