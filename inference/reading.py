"""OCR: the line policy (which crops a block is read from, and how their texts join into the block's
text) and reading a batch of crops, those that share language and options in one backend call."""

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from core.boxes import Block, join_lines
from core.imaging import crop
from models_registry.backends.base import OCRBackend

from .grouping import by_group, group_key


def crops_for(image: np.ndarray, blocks: list[Block], reads: Literal["block", "line"]) -> list[np.ndarray]:
    """What an OCR model is given of the blocks: each single line (line readers), or each whole block."""
    if reads == "line":
        return [crop(image, box) for block in blocks for box in block.singles]
    return [crop(image, block.box) for block in blocks]


def block_texts(pieces: list[str], blocks: list[Block], reads: Literal["block", "line"], separator: str) -> list[str]:
    """Each block's text from the OCR of `crops_for`: line readers' pieces joined in reading order."""
    texts = iter(pieces)
    if reads == "line":
        return [join_lines([[next(texts) for _ in line] for line in block.lines], separator) for block in blocks]
    return [next(texts).strip() for _ in blocks]


@dataclass(frozen=True)
class OCRItem:
    crop: np.ndarray
    lang: str
    options: dict[str, Any]


def read_grouped(backend: OCRBackend, items: list[OCRItem]) -> tuple[list[str | Exception], int]:
    """Texts of the items in order (or each failed group's exception), and how many backend calls it took."""

    def read(group: list[OCRItem]) -> list[str]:
        code = backend.entry.code_for(group[0].lang)
        return backend.read([item.crop for item in group], code, group[0].options)

    return by_group(items, lambda item: group_key(item.lang, item.options), read)
