"""Batches of the model deployments, without Serve: grouping, order, and failures kept per group."""

import pickle

import numpy as np
import pytest

from core.boxes import Block, Box
from core.errors import BadRequest, ModelLoadError, ModelRunError
from core.options import TSL_OPTIONS, resolve
from inference.detection import DetectionItem, blocks_of, detect_blocks, detect_grouped
from inference.grouping import raise_failure
from inference.reading import OCRItem, block_texts, crops_for, read_grouped
from inference.translation import TranslationItem, translate_grouped
from models_registry import Registry
from models_registry.backends.canvas import paste, shared_canvases


class Echo:
    """A stand-in backend: reads a crop as its width, translates by upper-casing; fails on request."""

    translates_pages = False

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


class Tagging:
    """A stand-in backend that shows what it was called with: a crop's text names its width and the
    `psm` it was read with, a translation names the codes of its language pair."""

    translates_pages = False

    def __init__(self, model_id: str, answer_fewer: bool = False):
        self.entry = Registry.load().get(model_id)
        self.answer_fewer = answer_fewer
        self.calls = []

    def _answers(self, answers: list) -> list:
        return answers[:-1] if self.answer_fewer else answers

    def read(self, crops, lang, options):
        self.calls.append((lang, options["psm"], len(crops)))
        return self._answers([f"{crop.shape[1]}px psm {options['psm']}" for crop in crops])

    def detect_many(self, images, lang, options):
        self.calls.append((lang, len(images)))
        return self._answers([[Box(0, 0, image.shape[1], image.shape[0])] for image in images])

    def detect(self, image, lang, options):
        self.calls.append(lang)
        return [Box(0, 0, image.shape[1], image.shape[0])]

    def translate(self, texts, src, dst, options):
        self.calls.append((tuple(texts), src, dst))
        return self._answers([f"{src}>{dst} {text}" for text in texts])


def test_ocr_batches_group_crops_by_options_too_and_read_each_group_with_its_own():
    backend = Tagging("tesseract/eng")
    block, line = (resolve(backend.entry.option_specs, {"psm": psm}) for psm in (6, 7))
    items = [OCRItem(np.zeros((4, width, 3), np.uint8), "en", options) for width, options in
             [(10, block), (20, line), (30, block)]]
    results, calls = read_grouped(backend, items)
    assert results == ["10px psm 6", "20px psm 7", "30px psm 6"]
    assert calls == 2 and sorted(backend.calls) == [("en", 6, 2), ("en", 7, 1)]


def test_translation_groups_keep_their_own_language_pair_codes_and_separators():
    backend = Tagging("facebook/nllb-200-distilled-600M")
    plain = resolve(TSL_OPTIONS, {})
    items = [
        # Japanese lines join without a space; the pieces of a Japanese translation too.
        TranslationItem("line one\nline two", "ja", "en", plain),
        TranslationItem("a.b", "en", "ja", resolve(TSL_OPTIONS, {"break_chars": "."})),
        # Two pairs that differ only in their source, two only in their target.
        TranslationItem("hola", "es", "en", plain),
        TranslationItem("hola", "es", "fr", plain),
        # English spaces restored with English word frequencies.
        TranslationItem("thequick", "en", "es", resolve(TSL_OPTIONS, {"restore_missing_spaces": True})),
        # Nothing to translate: no backend call.
        TranslationItem("  ", "en", "de", plain),
    ]
    results, calls = translate_grouped(backend, items)
    assert results == ["jpn_Jpan>eng_Latn line oneline two", "eng_Latn>jpn_Jpan a.eng_Latn>jpn_Jpan b",
                       "spa_Latn>eng_Latn hola", "spa_Latn>fra_Latn hola", "eng_Latn>spa_Latn the quick", ""]
    assert calls == 6 and len(backend.calls) == 5  # the empty text's group calls no model


def test_detection_reads_vertical_columns_in_languages_written_in_columns():
    backend = Tagging("rapidocr/ppocr-v4-det")
    plain = resolve(backend.entry.option_specs, {})
    column = np.zeros((100, 20, 3), np.uint8)  # the backend finds one box the size of the image: a column
    results, _ = detect_grouped(backend, [DetectionItem(column, "ja", plain), DetectionItem(column, "en", plain)])
    assert [blocks[0].vertical for blocks in results] == [True, False]


def test_a_backend_answering_fewer_items_than_it_was_given_is_an_error_not_blank_answers():
    ocr, detector, translator = (Tagging(model_id, answer_fewer=True) for model_id in
                                 ("tesseract/eng", "rapidocr/ppocr-v4-det", "apertium/eng-spa"))
    crops = [OCRItem(np.zeros((4, 10, 3), np.uint8), "en", resolve(ocr.entry.option_specs, {}))] * 2
    with pytest.raises(ValueError):
        read_grouped(ocr, crops)
    images = [DetectionItem(np.zeros((10, 10, 3), np.uint8), "en", resolve(detector.entry.option_specs, {}))] * 2
    assert all(isinstance(result, ValueError) for result in detect_grouped(detector, images)[0])
    texts = [TranslationItem(text, "en", "es", resolve(TSL_OPTIONS, {})) for text in ("one", "two")]
    assert all(isinstance(result, ValueError) for result in translate_grouped(translator, texts)[0])


def test_errors_keep_their_type_and_message_through_pickling():
    """Model replicas raise them; Ray pickles them to the ingress, which maps the type to a status."""
    for error in (BadRequest("bad input"), ModelLoadError("no weights"), ModelRunError("failed")):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and copy.message == error.message and copy.status == error.status


def test_line_readers_read_each_line_box_and_their_texts_join_per_block_in_reading_order():
    image = np.zeros((60, 200, 3), np.uint8)
    image[:, :, 0] = np.arange(200)  # a crop's first red value is its left edge
    blocks = [Block(Box(0, 0, 100, 50), [[Box(0, 0, 40, 20), Box(50, 0, 100, 20)], [Box(0, 30, 60, 50)]]),
              Block(Box(120, 0, 180, 20), [[Box(120, 0, 180, 20)]])]
    registry = Registry.load()
    lines, whole = registry.get("rapidocr/ppocr-v4-rec"), registry.get("tesseract/eng")
    assert [(crop.shape[1], crop[0, 0, 0]) for crop in crops_for(image, blocks, lines)] == [
        (40, 0), (50, 50), (60, 0), (60, 120)]
    assert block_texts(["a", "b  c", "d", "e"], blocks, lines, " ") == ["a b c\nd", "e"]
    assert block_texts(["猫", "です", "犬", "e"], blocks, lines, "") == ["猫です\n犬", "e"]
    # Block readers: one crop per block, its text as read.
    assert [crop.shape[1] for crop in crops_for(image, blocks, whole)] == [100, 60]
    assert block_texts([" one\ntwo ", "three"], blocks, whole, " ") == ["one\ntwo", "three"]


def test_detected_boxes_are_clipped_to_the_image_and_empty_ones_dropped():
    image = np.full((100, 200, 3), 255, np.uint8)
    options = resolve(Registry.load().get("rapidocr/ppocr-v4-det").option_specs, {})
    boxes = [Box(-5, 10, 20, 30), Box(150, 90, 151, 120),  # clipped; one pixel wide or high is still text
             Box(100, 0, 130, 1), Box(60, 50, 60, 70), Box(60, 50, 90, 50), Box(250, 0, 300, 20)]  # empty, outside
    kept = sorted(box for block in blocks_of(boxes, image, "en", options) for box in block.singles)
    assert kept == [Box(0, 10, 20, 30), Box(100, 0, 130, 1), Box(150, 90, 151, 100)]


@pytest.mark.parametrize("option,value,apart,together", [
    # Two lines 10 px (half a line) apart; two words 30 px apart; a line three times as tall as the line above;
    # a word three times as tall as the word beside it.
    ("merge_line_gap", 0.1, [Box(0, 0, 100, 20), Box(0, 30, 100, 50)], None),
    ("merge_word_gap", 0.5, [Box(0, 0, 40, 20), Box(70, 0, 110, 20)], None),
    ("merge_line_height_ratio", 4.0, None, [Box(0, 0, 100, 20), Box(0, 20, 100, 80)]),
    ("merge_height_ratio", 4.0, None, [Box(0, 0, 40, 20), Box(50, 0, 100, 60)]),
])
def test_each_merge_option_of_the_request_is_the_one_used(option, value, apart, together):
    image = np.full((100, 200, 3), 255, np.uint8)
    defaults = resolve(Registry.load().get("rapidocr/ppocr-v4-det").option_specs, {})
    changed = {**defaults, option: value}
    boxes = apart or together
    blocks = {name: len(blocks_of(boxes, image, "en", options)) for name, options in
              (("default", defaults), ("changed", changed))}
    assert blocks == ({"default": 1, "changed": 2} if apart else {"default": 2, "changed": 1})


def test_a_single_image_is_detected_in_its_own_language():
    backend = Tagging("rapidocr/ppocr-v4-det")
    [block] = detect_blocks(backend, np.zeros((100, 20, 3), np.uint8), "ja", resolve(backend.entry.option_specs, {}))
    assert block.vertical and backend.calls == ["ja"]


# -- hosting models on a Ray worker (inference/worker.py), outside Ray ---------------------------------------
class PoolSizes:
    """A stand-in for torch or cv2 in sys.modules: records the thread counts it is given."""

    def __init__(self):
        self.sizes = []

    def set_num_threads(self, threads):
        self.sizes.append(threads)

    def setNumThreads(self, threads):  # noqa: N802 (cv2's name)
        self.sizes.append(threads)


class RuntimeContext:
    def __init__(self, resources):
        self.resources = resources

    def get_assigned_resources(self):
        return self.resources


def test_a_worker_runs_on_the_gpu_ray_gave_it_and_sizes_its_pools_to_its_cpu_share(monkeypatch):
    import ray

    from inference import worker

    monkeypatch.setattr(ray, "get_gpu_ids", lambda: [0])
    assert worker.worker_device() == "cuda"
    monkeypatch.setattr(ray, "get_gpu_ids", lambda: [])
    assert worker.worker_device() == "cpu"
    for resources, cpus in (({"CPU": 2.0}, 2), ({"CPU": 2.5}, 3), ({"CPU": 0.25}, 1), ({}, 1)):
        monkeypatch.setattr(ray, "get_runtime_context", lambda resources=resources: RuntimeContext(resources))
        assert worker.worker_cpus() == cpus, resources

    def outside_a_worker():
        raise RuntimeError("not in a Ray worker")

    monkeypatch.setattr(ray, "get_gpu_ids", outside_a_worker)
    monkeypatch.setattr(ray, "get_runtime_context", outside_a_worker)
    assert (worker.worker_device(), worker.worker_cpus()) == ("cpu", 1)


def test_library_pools_are_sized_only_for_the_libraries_loaded(monkeypatch):
    import sys

    from inference.worker import limit_library_threads

    torch, cv2 = PoolSizes(), PoolSizes()
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "cv2", cv2)
    limit_library_threads(3, torch_computes=True)
    limit_library_threads(3, torch_computes=False)
    assert (torch.sizes, cv2.sizes) == ([3, 1], [3, 3])
    monkeypatch.delitem(sys.modules, "torch")
    monkeypatch.delitem(sys.modules, "cv2")
    limit_library_threads(2, torch_computes=True)  # neither imported: nothing to size, no import
    assert "torch" not in sys.modules and "cv2" not in sys.modules


class Loads:
    """A registry that hands out backends; ids starting with "torch" compute on torch."""

    def __init__(self):
        self.loaded = []

    def load_backend(self, model_id, kind, runtime):
        self.loaded.append((model_id, kind, runtime))
        return type("Backend", (), {"computes_on_torch": model_id.startswith("torch")})()


def test_a_model_worker_loads_on_its_runtime_and_gives_torch_its_share_while_a_torch_model_is_loaded(monkeypatch):
    import sys

    from core.settings import ModelDeploymentSettings
    from inference import worker
    from models_registry.backends.base import Runtime

    torch = PoolSizes()
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.delitem(sys.modules, "cv2", raising=False)
    monkeypatch.setattr(worker, "worker_device", lambda: "cuda")
    monkeypatch.setattr(worker, "worker_cpus", lambda: 2)
    registry = Loads()
    hosted = worker.ModelWorker("ocr", ModelDeploymentSettings(gpu_half_precision=True), registry)
    assert (hosted.kind, hosted.runtime) == ("ocr", Runtime("cuda", 2, True))
    assert worker.ModelWorker("ocr", ModelDeploymentSettings(threads=5), registry).runtime == Runtime("cuda", 5, False)
    hosted.load("onnx-a")
    hosted.load("torch-b")
    hosted.load("onnx-c")  # torch-b is still loaded: torch keeps the share
    hosted.unloaded("torch-b")
    hosted.load("onnx-d")
    assert torch.sizes == [1, 2, 2, 1]
    assert [(model_id, kind) for model_id, kind, _ in registry.loaded] == [
        ("onnx-a", "ocr"), ("torch-b", "ocr"), ("onnx-c", "ocr"), ("onnx-d", "ocr")]
    assert all(runtime is hosted.runtime for *_, runtime in registry.loaded)
