"""What each model deployment does around its backend, without Serve.

Detection merges single boxes into blocks; OCR and translation run batches that may mix
requests with different languages and options, so items are grouped and each group is one
backend call (one forward pass).
"""

from dataclasses import dataclass
from typing import Any

import numpy as np

from models_registry.backends.base import BoxBackend, OCRBackend, TranslationBackend

from . import languages
from .boxes import Block, Box, MergeTolerances, merge_into_blocks
from .text import PreProcessing, pre_tokenize


@dataclass(frozen=True)
class OCRItem:
    crop: np.ndarray
    lang: str
    options: dict[str, Any]


@dataclass(frozen=True)
class TranslationItem:
    text: str
    src: str
    dst: str
    options: dict[str, Any]


def _group_key(*parts: Any) -> tuple:
    return tuple(tuple(sorted(part.items())) if isinstance(part, dict) else part for part in parts)


def detect_blocks(backend: BoxBackend, image: np.ndarray, lang: str, options: dict[str, Any]) -> list[Block]:
    height, width = image.shape[:2]
    singles = []
    for box in backend.detect(image, lang, options):
        clipped = Box(max(0, box.l), max(0, box.b), min(width, box.r), min(height, box.t))
        if clipped.width > 0 and clipped.height > 0:
            singles.append(clipped)
    tolerances = MergeTolerances(
        line_gap=options["merge_line_gap"], word_gap=options["merge_word_gap"],
        height_ratio=options["merge_height_ratio"],
    )
    return merge_into_blocks(singles, tolerances, vertical_script=lang in languages.VERTICAL_LANGUAGES)


def read_grouped(backend: OCRBackend, items: list[OCRItem]) -> tuple[list[str], int]:
    """Texts of the items in order, and how many backend calls it took."""
    groups: dict[tuple, list[int]] = {}
    for index, item in enumerate(items):
        groups.setdefault(_group_key(item.lang, item.options), []).append(index)
    texts = [""] * len(items)
    for indexes in groups.values():
        first = items[indexes[0]]
        code = backend.entry.code_for(first.lang)
        for index, text in zip(indexes, backend.read([items[i].crop for i in indexes], code, first.options),
                               strict=True):
            texts[index] = text
    return texts, len(groups)


def translate_grouped(backend: TranslationBackend, items: list[TranslationItem]) -> tuple[list[str], int]:
    """Translations of the items in order, and how many backend calls it took.

    Each text is pre-processed into pieces; the pieces of every item in a group go to the
    backend together, sorted by length so batches pad little, and are joined back per item.
    """
    entry = backend.entry
    groups: dict[tuple, list[int]] = {}
    for index, item in enumerate(items):
        groups.setdefault(_group_key(item.src, item.dst, item.options), []).append(index)
    results = [""] * len(items)
    for indexes in groups.values():
        first = items[indexes[0]]
        settings = PreProcessing(**{name: first.options[name] for name in PreProcessing.__dataclass_fields__})
        pieces = {i: pre_tokenize(items[i].text, settings, languages.word_separator(first.src)) for i in indexes}
        flat = sorted({piece for item_pieces in pieces.values() for piece in item_pieces}, key=len)
        if flat:
            translated = backend.translate(flat, entry.code_for(first.src), entry.code_for(first.dst), first.options)
            by_piece = dict(zip(flat, translated, strict=True))
        else:
            by_piece = {}
        separator = languages.word_separator(first.dst)
        for i in indexes:
            results[i] = separator.join(by_piece[piece] for piece in pieces[i]).strip()
    return results, len(groups)
