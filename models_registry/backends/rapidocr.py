"""PP-OCRv4 (PaddleOCR's mobile detector and Chinese/English recognizer) on ONNX Runtime.

The ONNX files ship inside the `rapidocr-onnxruntime` wheel, so these models work offline on a
fresh machine. We use that package's pre- and post-processing (resize and normalise, DB box
extraction, CTC decoding) and run its ONNX files in our own ONNX Runtime sessions, sized to the
replica's CPU share. On two cores the detector finds the lines of a poster several times faster
than CRAFT on torch (bench/RESULTS.md).
"""

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, PositiveInt

from core.boxes import Box
from core.options import OptionSpec
from core.settings import WeightSources

from ..schema import ModelEntry
from .base import BoxBackend, Family, OCRBackend, Runtime, probe_distribution
from .canvas import paste, shared_canvases
from .onnx import onnx_session, session_device

PACKAGE = "rapidocr_onnxruntime"
INSTALL_HINT = "pip install rapidocr-onnxruntime"
NORMALISE = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}


def model_file(entry: ModelEntry) -> Path:
    """The entry's ONNX file inside the installed package."""
    return Path(importlib.util.find_spec(PACKAGE).origin).parent / "models" / entry.weights.files[0]


class _PackagedONNX:
    """One ONNX file from the wheel in a session sized to the replica (its deployment runs one model
    call at a time on a CPU, so concurrent requests never multiply the threads)."""

    def __init__(self, entry: ModelEntry, runtime: Runtime):
        super().__init__(entry, runtime)
        self.session = onnx_session(model_file(entry), runtime)
        self.input_name = self.session.get_inputs()[0].name

    @classmethod
    def missing_weights(cls, entry: ModelEntry, weights: WeightSources) -> str | None:
        if importlib.util.find_spec(PACKAGE) is None:
            return f"Python package 'rapidocr-onnxruntime' is not installed ({INSTALL_HINT})"
        if not entry.weights.files:
            return f"model entry {entry.id!r} names no ONNX file (weights.files)"
        path = model_file(entry)
        return None if path.is_file() else f"{path} not found ({INSTALL_HINT})"

    @property
    def engine(self) -> str:
        return f"onnxruntime float32 on {session_device(self.session)}"

    def forward(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]


class PPOCRBoxes(_PackagedONNX, BoxBackend):
    """Text lines of any script (DB detector); single boxes are merged into blocks by the stage code.
    Several images run in one forward pass on shared canvases (`canvas.py`)."""

    declared_options = {
        "limit_side_len": OptionSpec(type="int", default=960, minimum=32, maximum=4096, description=(
            "Longer side the image is shrunk to before detection (larger finds smaller text, slower).")),
        "thresh": OptionSpec(type="float", default=0.3, minimum=0, maximum=1, description=(
            "Probability a pixel must reach to count as text.")),
        "box_thresh": OptionSpec(type="float", default=0.5, minimum=0, maximum=1, description=(
            "Mean text probability a line must reach to be kept (lower keeps fainter lines).")),
        "unclip_ratio": OptionSpec(type="float", default=1.6, minimum=0.5, maximum=4, description=(
            "How far each line's box is grown around the detected text.")),
    }

    def detect(self, image: np.ndarray, lang: str, options: dict[str, Any]) -> list[Box]:
        return self.detect_many([image], lang, options)[0]

    def detect_many(self, images: list[np.ndarray], lang: str, options: dict[str, Any]) -> list[list[Box]]:
        from rapidocr_onnxruntime.ch_ppocr_det.utils import DBPostProcess, DetPreProcess

        # "max": shrink the longer side to the limit (never enlarge a small picture: slower, no better).
        prepare = DetPreProcess(int(options["limit_side_len"]), "max", **NORMALISE)
        inputs = [prepare(np.ascontiguousarray(image[:, :, ::-1])) for image in images]
        extract = DBPostProcess(thresh=float(options["thresh"]), box_thresh=float(options["box_thresh"]),
                                unclip_ratio=float(options["unclip_ratio"]), use_dilation=True)
        boxes: list[list[Box]] = [[] for _ in images]
        usable = [i for i, prepared in enumerate(inputs) if prepared is not None]
        for group in shared_canvases([inputs[i].shape[2:] for i in usable]):
            indexes = [usable[g] for g in group]
            maps = self.forward(paste([inputs[i][0] for i in indexes]))
            for index, probabilities in zip(indexes, maps, strict=True):
                height, width = inputs[index].shape[2:]
                quads, _ = extract(probabilities[None, :, :height, :width], images[index].shape[:2])
                boxes[index] = [_enclosing(quad) for quad in quads]
        return boxes


def _enclosing(quad: np.ndarray) -> Box:
    xs, ys = quad[:, 0], quad[:, 1]
    return Box(int(xs.min()), int(ys.min()), int(np.ceil(xs.max())), int(np.ceil(ys.max())))


class LineBatching(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_size: PositiveInt = 8
    """Lines per forward pass: crops are sorted by width first, so a pass pads little."""


class PPOCRLines(_PackagedONNX, OCRBackend):
    """Reads single lines (CTC over the PP-OCRv4 character set: Chinese, Latin, digits, punctuation)."""

    Settings = LineBatching
    HEIGHT = 48

    def __init__(self, entry: ModelEntry, runtime: Runtime):
        super().__init__(entry, runtime)
        from rapidocr_onnxruntime.ch_ppocr_rec.utils import CTCLabelDecode

        characters = self.session.get_modelmeta().custom_metadata_map["character"].splitlines()
        self.decode = CTCLabelDecode(character=characters)

    def _normalised(self, crop: np.ndarray, width: int) -> np.ndarray:
        import cv2

        bgr = crop[:, :, ::-1]
        scaled = min(width, max(1, int(np.ceil(self.HEIGHT * bgr.shape[1] / bgr.shape[0]))))
        resized = cv2.resize(bgr, (scaled, self.HEIGHT)).astype(np.float32).transpose(2, 0, 1) / 127.5 - 1.0
        padded = np.zeros((3, self.HEIGHT, width), dtype=np.float32)
        padded[:, :, :scaled] = resized
        return padded

    def read(self, crops: list[np.ndarray], lang: str, options: dict[str, Any]) -> list[str]:
        batch_size = self.settings.batch_size
        ratios = [crop.shape[1] / max(1, crop.shape[0]) for crop in crops]
        order = np.argsort(ratios)
        texts = [""] * len(crops)
        for start in range(0, len(crops), batch_size):
            chunk = order[start:start + batch_size]
            width = max(320, int(np.ceil(self.HEIGHT * max(ratios[i] for i in chunk))))
            batch = np.stack([self._normalised(crops[i], width) for i in chunk])
            decoded = self.decode(self.forward(batch))
            for index, result in zip(chunk, decoded, strict=True):
                texts[index] = result[0].strip()
        return texts


FAMILY = Family(
    name="rapidocr",
    description="PP-OCRv4 text detection and Chinese/English line recognition on ONNX Runtime "
                "(weights inside the rapidocr-onnxruntime wheel).",
    homepage="https://github.com/RapidAI/RapidOCR",
    install_hint=INSTALL_HINT,
    probe=lambda: probe_distribution("onnxruntime", "pip install onnxruntime"),
    backends={"box": PPOCRBoxes, "ocr": PPOCRLines},
)
