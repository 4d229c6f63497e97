"""Tesseract OCR through the Debian `tesseract` binary; one entry per traineddata language, or per
set of them joined with `+` (Tesseract reads those languages mixed, for automatic detection).

Reads whole blocks (Tesseract segments the lines itself). Vertical Japanese/Chinese use the
`*_vert` traineddata with page segmentation mode 5 (a single vertical block).
"""

import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any

import cv2
import numpy as np
from PIL import Image

from core.imaging import border, ink_mask, text_colour, with_margin
from core.options import OptionSpec
from core.settings import WeightSources

from ..schema import ModelEntry
from .base import Family, OCRBackend, Probe, Runtime

MARGIN_PX = 10
"""Background added around each crop: Tesseract reads text best with some space around it."""


@lru_cache(maxsize=1)
def installed_languages() -> frozenset[str]:
    listing = subprocess.run(["tesseract", "--list-langs"], capture_output=True, text=True, timeout=30)
    return frozenset(line.strip() for line in listing.stdout.splitlines()[1:] if line.strip())


def _probe() -> Probe:
    if shutil.which("tesseract") is None:
        return Probe(None, "the tesseract binary is not installed (apt-get install tesseract-ocr).")
    version = subprocess.run(["tesseract", "--version"], capture_output=True, text=True, timeout=30)
    first_line = (version.stdout or version.stderr).splitlines()[0]
    return Probe(first_line.split()[-1])


UNEVEN_GROUND = 50.0
"""Spread of the grey levels along a crop's border (10th to 90th percentile) above which its ground is
uneven and is evened out; a flat coloured ground is left as it is (Tesseract reads coloured posters
better in colour than evened out in grey)."""


def evenly_lit(crop: np.ndarray) -> np.ndarray:
    """A crop on an uneven ground in grey, dark text on white, its ground made even: each pixel divided by
    the paper around it (a closing wider than any stroke). Tesseract binarises with one threshold per
    page, so on a gradient (a sign in shade, a photo's vignette) it lost the text on the dark side: a
    slanted Russian sign read as "7" turned into its whole line."""
    grey = crop.astype(np.float32).mean(axis=2)
    ground = border(grey)
    low, high = np.percentile(ground, [10, 90])
    if high - low < UNEVEN_GROUND:
        return crop
    if np.mean(text_colour(crop, ink_mask(crop))) > np.median(ground):
        grey = 255 - grey  # light text on a dark ground
    size = int(np.clip(min(grey.shape) // 3, 15, 61)) | 1
    paper = cv2.morphologyEx(grey, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (size, size)))
    even = np.clip(grey / np.maximum(paper, 1.0) * 255.0, 0, 255).astype(np.uint8)
    return np.repeat(even[:, :, None], 3, axis=2)


class TesseractBlocks(OCRBackend):
    declared_options = {"psm": OptionSpec(
        type="int", default=6, minimum=0, maximum=13,
        description="Tesseract page segmentation mode (6 block of lines, 5 vertical block, 7 one line).")}

    def __init__(self, entry: ModelEntry, runtime: Runtime):
        super().__init__(entry, runtime)
        import pytesseract

        self._tesseract = pytesseract
        self._pool = ThreadPoolExecutor(max_workers=max(2, runtime.threads), thread_name_prefix="tesseract")

    @classmethod
    def missing_weights(cls, entry: ModelEntry, weights: WeightSources) -> str | None:
        missing = [name for name in entry.weights.name.split("+") if name not in installed_languages()]
        if missing:
            hint = entry.weights.install_hint or "apt-get install tesseract-ocr-<lang>"
            return f"Tesseract language {'+'.join(missing)!r} is not installed ({hint})"
        return None

    def _read_one(self, crop: np.ndarray, options: dict[str, Any]) -> str:
        config = f"--psm {int(options['psm'])}"
        text = self._tesseract.image_to_string(Image.fromarray(with_margin(evenly_lit(crop), MARGIN_PX)),
                                               lang=self.entry.weights.name, config=config)
        return "\n".join(line.strip() for line in text.splitlines() if line.strip())

    def read(self, crops: list[np.ndarray], lang: str, options: dict[str, Any]) -> list[str]:
        # One tesseract process per crop; run them side by side on the replica's CPUs.
        return list(self._pool.map(lambda crop: self._read_one(crop, options), crops))

    def close(self) -> None:
        self._pool.shutdown(wait=False)


FAMILY = Family(
    name="tesseract",
    description="Tesseract OCR, one model per installed traineddata language (Debian tesseract-ocr-*).",
    homepage="https://github.com/tesseract-ocr/tesseract",
    install_hint="apt-get install tesseract-ocr tesseract-ocr-<lang>; pip install pytesseract",
    probe=_probe,
    backends={"ocr": TesseractBlocks},
)
