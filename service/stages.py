"""What each model deployment does around its backend, without Serve, and how the pipeline calls them.

Detection merges single boxes into blocks; OCR and translation run batches that may mix
requests with different languages and options, so items are grouped and each group is one
backend call (one forward pass). The OCR line policy (which crops a block is read from, and how
their texts join) lives here beside them.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

import numpy as np

from core import languages
from core.boxes import Block, Box, MergeTolerances, join_lines, merge_into_blocks
from core.glossary import NO_TERMS, Glossary, restore
from core.imaging import crop, text_colour
from core.text import PreProcessing, pre_tokenize
from models_registry import ModelKind
from models_registry.backends.base import BoxBackend, OCRBackend, TranslationBackend

T = TypeVar("T")


class ModelStages(Protocol):
    """The model deployments as the pipeline calls them: Serve handles in production (the ingress's
    `ServeStages`), plain objects in unit tests."""

    async def detect(self, model_id: str, image: np.ndarray, lang: str, options: dict[str, Any]) -> list[Block]: ...

    async def read(self, model_id: str, crops: list[np.ndarray], lang: str, options: dict[str, Any]) -> list[str]: ...

    async def translate(
        self, model_id: str, texts: list[str], src: str, dst: str, options: dict[str, Any], glossary: Glossary
    ) -> list[str]: ...

    async def warm(self, kind: ModelKind, model_id: str) -> None: ...


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


@dataclass(frozen=True)
class TranslationItem:
    text: str
    src: str
    dst: str
    options: dict[str, Any]
    glossary: Glossary = NO_TERMS


def _group_key(*parts: Any) -> tuple:
    return tuple(tuple(sorted(part.items())) if isinstance(part, dict) else part for part in parts)


@dataclass(frozen=True)
class DetectionItem:
    image: np.ndarray
    lang: str
    options: dict[str, Any]


def blocks_of(boxes: list[Box], image: np.ndarray, lang: str, options: dict[str, Any]) -> list[Block]:
    """A detector's single boxes, clipped to the image, merged into blocks."""
    height, width = image.shape[:2]
    singles = []
    for box in boxes:
        clipped = Box(max(0, box.l), max(0, box.b), min(width, box.r), min(height, box.t))
        if clipped.width > 0 and clipped.height > 0:
            singles.append(clipped)
    tolerances = MergeTolerances(
        line_gap=options["merge_line_gap"], word_gap=options["merge_word_gap"],
        height_ratio=options["merge_height_ratio"], colour_distance=options["merge_colour_distance"],
    )
    return merge_into_blocks(singles, tolerances, vertical_script=lang in languages.VERTICAL_LANGUAGES,
                             colours=[text_colour(image, box) for box in singles])


def detect_blocks(backend: BoxBackend, image: np.ndarray, lang: str, options: dict[str, Any]) -> list[Block]:
    return blocks_of(backend.detect(image, lang, options), image, lang, options)


def _by_group(items: list[T], key: Callable[[T], tuple], run: Callable[[list[T]], list[str]],
              ) -> tuple[list[str | Exception], int]:
    """Run each group of alike items as one backend call; results in item order, and the calls made.

    A group that fails gets its exception in place of its results: the requests that shared a
    batch with a bad one still get their answers (the deployment raises it to its own caller only).
    """
    groups: dict[tuple, list[int]] = {}
    for index, item in enumerate(items):
        groups.setdefault(key(item), []).append(index)
    results: list[str | Exception] = [""] * len(items)
    for indexes in groups.values():
        try:
            outputs: list = run([items[i] for i in indexes])
        except Exception as exc:
            outputs = [exc] * len(indexes)
        for index, output in zip(indexes, outputs, strict=True):
            results[index] = output
    return results, len(groups)


def raise_failure(results: list[T | Exception]) -> list[T]:
    """One request's results: the first failure among them is raised to that request alone."""
    for result in results:
        if isinstance(result, Exception):
            raise result
    return results


def read_grouped(backend: OCRBackend, items: list[OCRItem]) -> tuple[list[str | Exception], int]:
    """Texts of the items in order (or each failed group's exception), and how many backend calls it took."""

    def read(group: list[OCRItem]) -> list[str]:
        code = backend.entry.code_for(group[0].lang)
        return backend.read([item.crop for item in group], code, group[0].options)

    return _by_group(items, lambda item: _group_key(item.lang, item.options), read)


def detect_grouped(backend: BoxBackend, items: list[DetectionItem]) -> tuple[list[list[Block] | Exception], int]:
    """Blocks of each item's image in order (or each failed group's exception), and how many backend
    calls it took: the images of a group go to the detector together."""

    def detect(group: list[DetectionItem]) -> list[list[Block]]:
        first = group[0]
        found = backend.detect_many([item.image for item in group], first.lang, first.options)
        return [blocks_of(boxes, item.image, item.lang, item.options) for boxes, item in zip(found, group, strict=True)]

    return _by_group(items, lambda item: _group_key(item.lang, item.options), detect)


def translate_grouped(backend: TranslationBackend, items: list[TranslationItem]) -> tuple[list[str | Exception], int]:
    """Translations of the items in order (or each failed group's exception), and how many backend calls it took.

    The items of a group (same languages, options and glossary) go to the backend together."""

    def translate(group: list[TranslationItem]) -> list[str]:
        first = group[0]
        return translate_texts(backend, [item.text for item in group], first.src, first.dst, first.options,
                               first.glossary)

    return _by_group(items, lambda item: _group_key(item.src, item.dst, item.options, item.glossary), translate)


def translate_texts(backend: TranslationBackend, texts: list[str], src: str, dst: str, options: dict[str, Any],
                    glossary: Glossary = NO_TERMS) -> list[str]:
    """The backend's translations of `texts`: each is pre-processed into pieces, the distinct pieces
    are translated together and joined back per text. Sorted by length, so that batches pad little;
    in reading order for a backend that translates a page as a whole (a language model), which is
    also told the glossary's terms of the page; around any other backend the terms are substituted."""
    settings = PreProcessing.of(options, src)
    pieces = [pre_tokenize(text, settings, languages.word_separator(src)) for text in texts]
    flat = list(dict.fromkeys(piece for text_pieces in pieces for piece in text_pieces))
    if backend.translates_pages:
        entry = backend.entry
        by_piece = dict(zip(flat, backend.translate_page(flat, entry.code_for(src), entry.code_for(dst), options,
                                                         glossary.within(flat)), strict=True)) if flat else {}
    else:
        flat.sort(key=len)
        by_piece = _with_glossary(backend, flat, src, dst, options, glossary)
    separator = languages.word_separator(dst)
    return [separator.join(by_piece[piece] for piece in text_pieces).strip() for text_pieces in pieces]


def _run(backend: TranslationBackend, texts: list[str], src: str, dst: str, options: dict[str, Any]) -> dict[str, str]:
    entry = backend.entry
    if not texts:
        return {}
    return dict(zip(texts, backend.translate(texts, entry.code_for(src), entry.code_for(dst), options), strict=True))


def _with_glossary(backend: TranslationBackend, texts: list[str], src: str, dst: str, options: dict[str, Any],
                   glossary: Glossary) -> dict[str, str]:
    """Translations of `texts` with the glossary's terms swapped for placeholders and put back; texts
    whose placeholders the model lost are translated again in the pieces between their terms."""
    protected = {text: glossary.protect(text) for text in texts}
    translated = _run(backend, list(dict.fromkeys(held for held, _ in protected.values())), src, dst, options)
    done = {text: restore(translated[held], translations) for text, (held, translations) in protected.items()}
    lost = [text for text, result in done.items() if result is None]
    if lost:
        parts = {text: glossary.split(text) for text in lost}
        plain = list(dict.fromkeys(part.strip() for text in lost for part in parts[text]
                                   if isinstance(part, str) and part.strip()))
        by_part = _run(backend, plain, src, dst, options)
        separator = languages.word_separator(dst)
        for text in lost:
            done[text] = separator.join(part[1] if isinstance(part, tuple) else by_part[part.strip()]
                                        for part in parts[text] if isinstance(part, tuple) or part.strip())
    return done
