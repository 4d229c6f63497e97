"""The development set of the reading benchmark: manifest.yaml (real images) and rendered.yaml (rendered
pages), as a list of pages with their ground truth."""

from dataclasses import dataclass
from pathlib import Path

import yaml

from .scoring import TruthBlock

HERE = Path(__file__).resolve().parent
MANIFESTS = (HERE / "manifest.yaml", HERE / "rendered.yaml")
LANGUAGES = ("ja", "zh", "zht", "ko", "fr", "de", "es", "ru", "en")
"""The benchmark's languages in the server's codes (zh: simplified Chinese, zht: traditional)."""


@dataclass(frozen=True)
class Page:
    file: Path
    language: str
    kind: str
    """photo | screenshot | scan | document | rendered"""
    blocks: tuple[TruthBlock, ...]
    order_scored: bool = True

    @property
    def name(self) -> str:
        return self.file.stem

    @property
    def real(self) -> bool:
        return self.kind != "rendered"


def load(manifests=MANIFESTS) -> list[Page]:
    pages = []
    for manifest in manifests:
        for entry in yaml.safe_load(Path(manifest).read_text())["images"]:
            blocks = tuple(TruthBlock(block["text"], tuple(block["box"]), block.get("optional", False))
                           for block in entry["blocks"])
            pages.append(Page(Path(manifest).parent / "images" / entry["file"], entry["language"], entry["kind"],
                              blocks, entry.get("order_scored", True)))
    return pages
