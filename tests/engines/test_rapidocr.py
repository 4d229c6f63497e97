"""PP-OCRv4 on ONNX Runtime (the rapidocr family): boxes and text of rendered images, and threads."""

import numpy as np
import pytest

from core.options import resolve
from inference.detection import detect_blocks
from models_registry import Registry
from models_registry.backends.base import Runtime
from tests.support.images import CJK_FONT, TWO_PARAGRAPHS, assert_same_boxes, char_error_rate, render

DETECTOR, RECOGNIZER = "rapidocr/ppocr-v4-det", "rapidocr/ppocr-v4-rec"




@pytest.fixture(scope="module")
def recognizer(registry):
    return registry.load_backend(RECOGNIZER, "ocr", Runtime("cpu", 1))


def options(registry, model_id, **given):
    return resolve(registry.get(model_id).option_specs, given)


def line_crop(text: str, font_path=None) -> np.ndarray:
    extra = {"font_path": font_path} if font_path else {}
    return np.array(render([((10, 8), text)], size=(32 * len(text) + 20, 50), **extra))


def test_both_models_are_usable_offline(registry):
    for model_id in (DETECTOR, RECOGNIZER):
        assert registry.availability(model_id).usable, registry.availability(model_id).reason


def test_detector_finds_each_line_where_it_was_drawn(registry, detector):
    image = np.array(render(TWO_PARAGRAPHS))
    blocks = detect_blocks(detector, image, "en", options(registry, DETECTOR))
    assert len(blocks) == 2  # one block per paragraph, two lines each
    for block, ((x, y), _text) in zip(blocks, TWO_PARAGRAPHS, strict=True):
        assert len(block.singles) == 2
        l, b, r, t = block.box
        assert abs(l - x) < 12 and abs(b - y) < 12, block.box  # starts where the text was drawn
        assert 40 < t - b < 110 and r - l > 300, block.box  # two lines of 28 px text, a wide paragraph


def test_detector_finds_the_same_boxes_in_one_pass_over_several_images(registry, detector):
    """Images of different sizes on shared canvases (a GPU replica's batch): each image's boxes as
    found alone, every edge within 3 px (only the padding around an image differs)."""
    images = [np.array(render(TWO_PARAGRAPHS)), np.array(render(TWO_PARAGRAPHS, size=(640, 330))),
              np.array(render([((20, 20), "A smaller picture\nwith two lines")], size=(400, 150))),
              np.array(render([((40, 40), "Wide banner text")], size=(900, 120))), np.full((64, 64, 3), 255, np.uint8)]
    given = options(registry, DETECTOR)
    calls = []
    forward = detector.forward
    detector.forward = lambda batch: calls.append(batch.shape[0]) or forward(batch)
    try:
        together = detector.detect_many(images, "en", given)
    finally:
        del detector.forward
    assert len(calls) < len(images) and max(calls) >= 2, calls
    assert together[-1] == []
    for image, boxes in zip(images[:-1], together, strict=False):
        alone = detector.detect(image, "en", given)
        assert alone, "every image but the blank one has text"
        assert_same_boxes(boxes, alone, 3)


def test_detector_options_change_what_is_found(registry, detector):
    image = np.array(render(TWO_PARAGRAPHS))
    strict = options(registry, DETECTOR, box_thresh=0.999)  # no line is that certain
    assert detect_blocks(detector, image, "en", strict) == []
    assert detect_blocks(detector, np.full((200, 300, 3), 255, np.uint8), "en", options(registry, DETECTOR)) == []


def test_recognizer_reads_english_lines_exactly(recognizer):
    lines = ["The quick brown fox jumps", "over the lazy dog today.", "Notice 12: opens at 9:30"]
    assert recognizer.read([line_crop(text) for text in lines], "en", {}) == lines


def test_recognizer_reads_chinese(recognizer):
    lines = ["欢迎光临", "北京火车站出口"]
    texts = recognizer.read([line_crop(text, CJK_FONT) for text in lines], "ch", {})
    assert [char_error_rate(read, truth) for read, truth in zip(texts, lines, strict=True)] == [0, 0], texts


def test_batches_keep_each_crop_in_its_place(registry):
    """Crops are sorted by width and read in batches of `batch_size`: results come back in input order."""
    lines = ["a", "Notice 12: opens at 9:30 daily", "sign", "station exit", "The quick brown fox jumps over"]
    small = Registry.load(model_settings={RECOGNIZER: {"batch_size": 2}}).load_backend(
        RECOGNIZER, "ocr", Runtime("cpu", 1))
    texts = small.read([line_crop(text) for text in lines], "en", {})
    assert all(char_error_rate(read, truth) < 0.2 for read, truth in zip(texts, lines, strict=True)), texts


def test_sessions_use_the_replica_threads(registry):
    backend = registry.load_backend(DETECTOR, "box", Runtime("cpu", 3))
    assert backend.session.get_session_options().intra_op_num_threads == 3
    assert backend.session.get_providers() == ["CPUExecutionProvider"]
