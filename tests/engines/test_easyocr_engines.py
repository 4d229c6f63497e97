"""EasyOCR on ONNX Runtime against EasyOCR on torch, and the conversion cache it builds (no Ray).

Tolerances: CRAFT's score and link maps within 1e-3 (values in [0, 1]), the boxes EasyOCR draws
from them the same in number with every edge within 2 px; the recognizer's logits within 1e-3 of
the float32 torch network that was exported (the torch engine on a CPU quantizes its LSTM and
Linear layers, so its logits differ more) and the text read the same as the torch engine's.
One export of each network is shared by the module; the cache tests copy it.
"""

import logging
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import models_registry.backends.easyocr as easyocr_backend
from core.settings import WeightSources
from models_registry import conversion
from models_registry.backends.base import Runtime
from models_registry.registry import Registry
from tests.support.images import TWO_PARAGRAPHS, assert_same_boxes, render

BOX_OPTIONS = {"text_threshold": 0.7, "low_text": 0.4, "add_margin": 0.1}
OCR_OPTIONS = {"decoder": "greedy"}
LINES = ["The quick brown fox jumps over", "the lazy dog, 1234 times.", "Sphinx of black quartz,",
         "judge my vow!", "Hello world, this is a test"]
EDGE_TOLERANCE_PX = 2
MAP_TOLERANCE = 1e-3
LOGIT_TOLERANCE = 1e-3

IMAGES = {
    "640x330 two paragraphs": render(TWO_PARAGRAPHS, size=(640, 330)),
    "333x120 one line": render([((12, 40), "Small label: 42 kg")], size=(333, 120), font_size=22),
    "1000x700 poster": render([
        ((40, 30), "Reduce your risk of infection:"),
        ((120, 130), "Clean hands with soap and water\nor alcohol-based hand rub"),
        ((60, 300), "Cover nose and mouth when coughing\nand sneezing with a tissue"),
        ((300, 520), "Thoroughly cook meat and eggs"),
    ], size=(1000, 700), font_size=30),
}


@pytest.fixture(scope="module")
def entries():
    registry = Registry.load()
    return {"box": registry.get("easyocr/craft"), "ocr": registry.get("easyocr/en")}


def with_engine(entry, engine):
    return entry.model_copy(update={"settings": {"engine": engine}})


def runtime(converted_dir) -> Runtime:
    return Runtime(threads=1, weights=WeightSources(converted_dir=converted_dir))


@pytest.fixture(scope="module")
def converted_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("converted")


@pytest.fixture(scope="module")
def engines(entries, converted_dir):
    """Both engines of both models; the ONNX ones exported once into the module's cache folder."""
    run = runtime(converted_dir)
    return {
        ("box", "onnx"): easyocr_backend.EasyOCRBoxes(with_engine(entries["box"], "onnx"), run),
        ("box", "torch"): easyocr_backend.EasyOCRBoxes(with_engine(entries["box"], "torch"), run),
        ("ocr", "onnx"): easyocr_backend.EasyOCRLines(with_engine(entries["ocr"], "onnx"), run),
        ("ocr", "torch"): easyocr_backend.EasyOCRLines(with_engine(entries["ocr"], "torch"), run),
    }


@pytest.fixture(scope="module")
def float_recognizer(entries):
    """The float32 torch network the ONNX recognizer was exported from."""
    reader = easyocr_backend._reader(entries["ocr"], "cpu", recognizer=True, langs=["en"], quantize=False)
    return reader.recognizer.eval()  # EasyOCR leaves it in training mode until it reads


def line_image(text: str) -> np.ndarray:
    return np.array(render([((4, 4), text)], size=(12 + 16 * len(text), 40), font_size=26))


def recognizer_input(texts: list[str]) -> torch.Tensor:
    """Lines as EasyOCR feeds its recognizer: grey, 64 px high, in [-1, 1], padded to one width."""
    lines = []
    for text in texts:
        grey = Image.fromarray(line_image(text)).convert("L")
        width = round(grey.width * 64 / grey.height)
        lines.append(np.asarray(grey.resize((width, 64), Image.BICUBIC), dtype=np.float32) / 255)
    width = max(line.shape[1] for line in lines)
    batch = np.stack([np.pad(line, ((0, 0), (0, width - line.shape[1])), mode="edge") for line in lines])
    return torch.from_numpy((batch[:, None] - 0.5) / 0.5)


def onnx_file(folder, model_id: str, name: str):
    (digest_dir,) = [path for path in (folder / "onnx" / model_id.replace("/", "--")).iterdir() if path.is_dir()]
    return digest_dir / name


def test_settings_default_to_auto_and_reject_unknown_engines():
    assert easyocr_backend.EasyOCRBoxes.Settings().engine == "auto"
    assert easyocr_backend.EasyOCRLines.Settings().engine == "auto"
    for settings in (easyocr_backend.EasyOCRBoxes.Settings, easyocr_backend.EasyOCRLines.Settings):
        with pytest.raises(ValueError):
            settings.model_validate({"engine": "tensorrt"})


@pytest.mark.parametrize("engine,device,onnx_cuda,chosen", [
    ("auto", "cpu", False, "onnx"),
    ("auto", "cuda", True, "onnx"),
    ("auto", "cuda", False, "torch"),  # CPU-only ONNX Runtime would leave the replica's GPU idle
    ("onnx", "cuda", False, "onnx"),
    ("torch", "cpu", False, "torch"),
])
def test_auto_runs_onnx_runtime_where_it_can_use_the_replicas_device(engine, device, onnx_cuda, chosen):
    assert easyocr_backend.chosen_engine(engine, device, onnx_cuda) == chosen


def test_the_default_engine_on_a_cpu_is_onnx_runtime(entries, converted_dir):
    backend = easyocr_backend.EasyOCRLines(entries["ocr"], runtime(converted_dir))
    assert backend.engine.startswith("onnxruntime")


def test_onnx_engines_run_onnx_runtime_with_the_replica_threads(engines):
    boxes, lines = engines[("box", "onnx")], engines[("ocr", "onnx")]
    assert isinstance(boxes.reader.detector.network, easyocr_backend._OnnxCraft)
    assert isinstance(lines.reader.recognizer, easyocr_backend._OnnxRecognizer)
    for backend in (boxes, lines):
        assert backend.engine == "onnxruntime float32 on cpu (1 thread)"
    assert boxes.reader.detector.network.session.get_session_options().intra_op_num_threads == 1
    assert engines[("box", "torch")].engine == "torch float32 on cpu"
    assert engines[("ocr", "torch")].engine.startswith("torch")
    assert isinstance(engines[("box", "torch")].reader.detector.network, torch.nn.Module)
    # which engines torch's thread pool is sized for (inference.worker.limit_library_threads)
    assert [engines[(kind, engine)].computes_on_torch for kind in ("box", "ocr") for engine in ("onnx", "torch")] \
        == [False, True, False, True]


@pytest.mark.parametrize("name", list(IMAGES))
def test_craft_on_onnx_finds_the_boxes_torch_finds(engines, name):
    image = np.array(IMAGES[name])
    torch_boxes = engines[("box", "torch")].detect(image, "en", BOX_OPTIONS)
    assert torch_boxes, "the image should have text lines"
    assert_same_boxes(engines[("box", "onnx")].detect(image, "en", BOX_OPTIONS), torch_boxes, EDGE_TOLERANCE_PX)


@pytest.mark.parametrize("engine", ["onnx", "torch"])
def test_craft_finds_the_same_boxes_in_one_pass_over_several_images(engines, engine):
    """Images of different sizes on shared canvases (a GPU replica's batch): each image's boxes as
    found alone, within the same tolerance (only the padding around an image differs)."""
    images = [np.array(image) for image in IMAGES.values()]
    backend = engines[("box", engine)]
    calls = []
    network = backend.reader.detector.network
    backend.reader.detector.network = lambda batch: calls.append(tuple(batch.shape)) or network(batch)
    try:
        together = backend.detect_many(images, "en", BOX_OPTIONS)
    finally:
        backend.reader.detector.network = network
    assert len(calls) < len(images), "the images should share forward passes"
    assert max(shape[0] for shape in calls) >= 2
    for image, boxes in zip(images, together, strict=True):
        assert_same_boxes(boxes, backend.detect(image, "en", BOX_OPTIONS), EDGE_TOLERANCE_PX)


def test_craft_maps_match_torch(engines):
    torch_net = engines[("box", "torch")].reader.detector
    onnx_net = engines[("box", "onnx")].reader.detector
    generator = torch.Generator().manual_seed(0)
    for height, width in [(256, 384), (224, 96)]:
        image = torch.rand(1, 3, height, width, generator=generator) * 4 - 2
        with torch.no_grad():
            expected, _ = torch_net(image)
        found, feature = onnx_net(image)
        assert found.shape == expected.shape == (1, height // 2, width // 2, 2)
        assert feature.shape[-2:] == (height // 2, width // 2)
        assert float((found - expected).abs().max()) <= MAP_TOLERANCE


def test_recognizer_on_onnx_reads_what_torch_reads(engines):
    crops = [line_image(text) for text in LINES]
    onnx_text = engines[("ocr", "onnx")].read(crops, "en", OCR_OPTIONS)
    assert onnx_text == engines[("ocr", "torch")].read(crops, "en", OCR_OPTIONS)
    assert onnx_text == LINES


def test_recognizer_logits_match_the_float_network(engines, float_recognizer):
    onnx_net = engines[("ocr", "onnx")].reader.recognizer
    for texts in (LINES[:1], LINES[1:4]):  # batch sizes 1 and 3, two widths
        batch = recognizer_input(texts)
        with torch.no_grad():
            expected = float_recognizer(batch, None)
        found = onnx_net(batch, None)
        assert found.shape == expected.shape == (len(texts), batch.shape[-1] // 4 - 1, 97)
        assert float((found - expected).abs().max()) <= LOGIT_TOLERANCE


def test_a_second_load_reuses_the_export(entries, engines, converted_dir, caplog):
    path = onnx_file(converted_dir, "easyocr/craft", "craft.onnx")
    before = (path.stat().st_ino, path.stat().st_mtime_ns, path.parent.stat().st_ino)
    caplog.set_level(logging.INFO, logger=conversion.__name__)
    again = easyocr_backend.EasyOCRBoxes(with_engine(entries["box"], "onnx"), runtime(converted_dir))
    assert again.engine.startswith("onnxruntime")
    assert not [record for record in caplog.records if "converting" in record.getMessage()]
    assert (path.stat().st_ino, path.stat().st_mtime_ns, path.parent.stat().st_ino) == before


def copy_recognizer_export(converted_dir, tmp_path):
    """A cache folder holding the module's recognizer export (so no test re-exports it needlessly)."""
    source = converted_dir / "onnx" / "easyocr--en"
    shutil.copytree(source, tmp_path / "onnx" / "easyocr--en")
    return onnx_file(tmp_path, "easyocr/en", "recognizer.onnx")


def test_changed_weights_are_exported_again(entries, engines, converted_dir, tmp_path, monkeypatch, caplog):
    old_file = copy_recognizer_export(converted_dir, tmp_path / "converted")
    # A weights folder whose recognizer differs from the packaged one by one class's bias.
    weights = tmp_path / "weights"
    weights.mkdir()
    state = torch.load(easyocr_backend.weights_dir(entries["ocr"]) / "english_g2.pth", map_location="cpu",
                       weights_only=True)
    state["module.Prediction.bias"][5] += 3.0
    torch.save(state, weights / "english_g2.pth")
    import easyocr.config
    import easyocr.easyocr

    packaged_md5 = easyocr.config.recognition_models["gen2"]["english_g2"]["md5sum"]
    monkeypatch.setattr(easyocr_backend, "weights_dir", lambda entry: weights)
    monkeypatch.setattr(easyocr.easyocr, "calculate_md5", lambda path: packaged_md5)  # EasyOCR checks md5s
    caplog.set_level(logging.INFO, logger=conversion.__name__)

    changed = easyocr_backend.EasyOCRLines(with_engine(entries["ocr"], "onnx"), runtime(tmp_path / "converted"))

    assert changed.engine.startswith("onnxruntime")
    assert [record for record in caplog.records if "converting easyocr/en" in record.getMessage()]
    new_file = onnx_file(tmp_path / "converted", "easyocr/en", "recognizer.onnx")
    assert new_file.parent.name != old_file.parent.name and not old_file.parent.exists()
    batch = recognizer_input(LINES[:2])
    changed_float = easyocr_backend._reader(entries["ocr"], "cpu", recognizer=True, langs=["en"],
                                            quantize=False).recognizer.eval()
    with torch.no_grad():
        expected = changed_float(batch, None)
    found = changed.reader.recognizer(batch, None)
    assert float((found - expected).abs().max()) <= LOGIT_TOLERANCE
    unchanged = engines[("ocr", "onnx")].reader.recognizer(batch, None)
    assert float((found - unchanged)[..., 5].abs().min()) > 2.9


def test_a_damaged_export_is_rebuilt_never_served(entries, engines, converted_dir, tmp_path, caplog):
    path = copy_recognizer_export(converted_dir, tmp_path)
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.truncate(size // 2)
    caplog.set_level(logging.INFO, logger=conversion.__name__)

    rebuilt = easyocr_backend.EasyOCRLines(with_engine(entries["ocr"], "onnx"), runtime(tmp_path))

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "damaged" in r.getMessage()]
    assert warnings and "easyocr/en" in warnings[0].getMessage()
    assert rebuilt.engine.startswith("onnxruntime")
    assert path.stat().st_size > size // 2 and conversion._manifest_problem(path.parent) is None
    crops = [line_image(text) for text in LINES]
    assert rebuilt.read(crops, "en", OCR_OPTIONS) == LINES


def test_a_damaged_export_that_cannot_be_rebuilt_falls_back_to_torch(entries, engines, converted_dir, tmp_path,
                                                                      monkeypatch, caplog):
    path = copy_recognizer_export(converted_dir, tmp_path)
    os.truncate(path, 1000)

    def broken_export(model, target):
        raise RuntimeError("exporter unavailable")

    monkeypatch.setattr(easyocr_backend, "export_recognizer", broken_export)
    caplog.set_level(logging.INFO)

    fallback = easyocr_backend.EasyOCRLines(with_engine(entries["ocr"], "onnx"), runtime(tmp_path))

    assert fallback.engine.startswith("torch")
    assert isinstance(fallback.reader.recognizer, torch.nn.Module)
    assert not path.parent.exists()  # the damaged folder is gone, not kept for a later start
    assert [r for r in caplog.records if "runs on torch" in r.getMessage() and "exporter unavailable" in r.getMessage()]
    assert fallback.read([line_image(LINES[0])], "en", OCR_OPTIONS) == LINES[:1]


def test_without_a_conversion_folder_the_onnx_engine_falls_back_to_torch(entries, caplog):
    caplog.set_level(logging.WARNING)
    backend = easyocr_backend.EasyOCRLines(with_engine(entries["ocr"], "onnx"), Runtime(threads=1))
    assert backend.engine.startswith("torch")
    assert [r for r in caplog.records if "converted_dir" in r.getMessage()]


def test_torch_gets_the_replica_threads_only_while_a_model_computes_on_it():
    from inference.worker import limit_library_threads

    before = torch.get_num_threads()
    try:
        limit_library_threads(2, torch_computes=True)
        assert torch.get_num_threads() == 2
        limit_library_threads(2, torch_computes=False)  # EasyOCR on ONNX Runtime: torch's pool stays small
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
