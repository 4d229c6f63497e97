"""OCR: the line policy (which crops a block is read from, turned so the model can read them, and how
their texts join into the block's text) and reading a batch of crops, those that share language and
options in one backend call."""

from dataclasses import dataclass
from typing import Any

import numpy as np

from core.boxes import Block, Box, join_lines
from core.imaging import crop
from models_registry import ModelEntry
from models_registry.backends.base import OCRBackend

from .grouping import by_group, group_key
from .upright import column_as_line, levelled, lines_on_page, turned_upright


def _line(image: np.ndarray, box: Box, vertical: bool, entry: ModelEntry) -> np.ndarray:
    """One line (or column) as the model reads it; `vertical`: a column of a script written in columns."""
    pixels = crop(image, box)
    if vertical:
        return pixels if entry.reads_vertical else column_as_line(pixels)
    if box.is_column:  # horizontal script set on its side
        return turned_upright(pixels)
    return levelled(pixels)


def _whole(image: np.ndarray, block: Block, entry: ModelEntry) -> np.ndarray:
    """A whole block as a block reader reads it: a vertical one's columns laid out as lines, top to bottom,
    unless the model reads columns as they stand."""
    if block.vertical:
        if entry.reads_vertical:
            return crop(image, block.box)
        return lines_on_page([_line(image, box, True, entry) for box in block.singles])
    if sum(box.is_column for box in block.singles) * 2 > len(block.singles):  # lines set on their side; a
        return turned_upright(crop(image, block.box))  # tall list of short lines stays as it is
    return levelled(crop(image, block.box))


def crops_for(image: np.ndarray, blocks: list[Block], entry: ModelEntry, vertical_script: bool = False,
              ) -> list[np.ndarray]:
    """What an OCR model is given of the blocks: each single line (line readers), or each whole block.

    `vertical_script`: the source language is written in columns too (`languages.VERTICAL_LANGUAGES`), so a
    column box among a horizontal block's lines is a column of its characters, not a Latin line on its side.
    """
    if entry.reads == "line":
        return [_line(image, box, block.vertical or (vertical_script and box.is_column), entry)
                for block in blocks for box in block.singles]
    return [_whole(image, block, entry) for block in blocks]


def block_texts(pieces: list[str], blocks: list[Block], entry: ModelEntry, separator: str) -> list[str]:
    """Each block's text from the OCR of `crops_for`: line readers' pieces joined in reading order."""
    texts = iter(pieces)
    if entry.reads == "line":
        return [join_lines([[next(texts) for _ in line] for line in block.lines], separator) for block in blocks]
    return [next(texts).strip() for _ in blocks]


def by_orientation(blocks: list[Block]) -> tuple[list[Block], list[Block]]:
    """The horizontal blocks and the vertical ones: an OCR model's `vertical_model` reads the second."""
    return [block for block in blocks if not block.vertical], [block for block in blocks if block.vertical]


def in_block_order(blocks: list[Block], horizontal: list[str], vertical: list[str]) -> list[str]:
    """The texts of `by_orientation`'s two lists back in the blocks' order."""
    texts = {False: iter(horizontal), True: iter(vertical)}
    return [next(texts[block.vertical]) for block in blocks]


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
