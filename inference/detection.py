"""Detection: a detector's single boxes clipped to the image and merged into blocks; the images of a
batch that share language and options go to the detector together."""

from dataclasses import dataclass
from typing import Any

import numpy as np

from core import languages
from core.boxes import Block, Box, MergeTolerances, merge_into_blocks
from core.bubbles import join_bubbles
from core.imaging import split_stacked
from models_registry.backends.base import BoxBackend

from .grouping import by_group, group_key


@dataclass(frozen=True)
class DetectionItem:
    image: np.ndarray
    lang: str
    options: dict[str, Any]


def blocks_of(boxes: list[Box], image: np.ndarray, lang: str, options: dict[str, Any]) -> list[Block]:
    """A detector's single boxes, clipped to the image, merged into blocks; a speech bubble's text one block."""
    height, width = image.shape[:2]
    singles = []
    for box in boxes:
        clipped = Box(max(0, box.l), max(0, box.b), min(width, box.r), min(height, box.t))
        if clipped.width > 0 and clipped.height > 0:
            singles.append(clipped)
    tolerances = MergeTolerances(
        line_gap=options["merge_line_gap"], word_gap=options["merge_word_gap"],
        height_ratio=options["merge_height_ratio"], line_height_ratio=options["merge_line_height_ratio"],
        colour_distance=options["merge_colour_distance"],
    )
    parts = [part for box in singles for part in split_stacked(image, box, tolerances.line_height_ratio)]
    blocks = merge_into_blocks([box for box, _ in parts], tolerances,
                               vertical_script=lang in languages.VERTICAL_LANGUAGES,
                               colours=[colour for _, colour in parts])
    return join_bubbles(image, blocks)


def detect_blocks(backend: BoxBackend, image: np.ndarray, lang: str, options: dict[str, Any]) -> list[Block]:
    return blocks_of(backend.detect(image, lang, options), image, lang, options)


def detect_grouped(backend: BoxBackend, items: list[DetectionItem]) -> tuple[list[list[Block] | Exception], int]:
    """Blocks of each item's image in order (or each failed group's exception), and how many backend
    calls it took: the images of a group go to the detector together."""

    def detect(group: list[DetectionItem]) -> list[list[Block]]:
        first = group[0]
        found = backend.detect_many([item.image for item in group], first.lang, first.options)
        return [blocks_of(boxes, item.image, item.lang, item.options) for boxes, item in zip(found, group, strict=True)]

    return by_group(items, lambda item: group_key(item.lang, item.options), detect)
