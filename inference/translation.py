"""Translation: texts pre-processed into pieces, the distinct pieces translated together and joined
back, with the reader's glossary applied to every family; a batch's texts that share languages,
options and glossary go to the backend together."""

from dataclasses import dataclass
from typing import Any

from core import languages
from core.glossary import NO_TERMS, Glossary, restore
from core.text import PreProcessing, pre_tokenize
from models_registry.backends.base import TranslationBackend

from .grouping import by_group, group_key


@dataclass(frozen=True)
class TranslationItem:
    text: str
    src: str
    dst: str
    options: dict[str, Any]
    glossary: Glossary = NO_TERMS


def translate_grouped(backend: TranslationBackend, items: list[TranslationItem]) -> tuple[list[str | Exception], int]:
    """Translations of the items in order (or each failed group's exception), and how many backend calls it took.

    The items of a group (same languages, options and glossary) go to the backend together."""

    def translate(group: list[TranslationItem]) -> list[str]:
        first = group[0]
        return translate_texts(backend, [item.text for item in group], first.src, first.dst, first.options,
                               first.glossary)

    return by_group(items, lambda item: group_key(item.src, item.dst, item.options, item.glossary), translate)


def translate_texts(backend: TranslationBackend, texts: list[str], src: str, dst: str, options: dict[str, Any],
                    glossary: Glossary = NO_TERMS) -> list[str]:
    """The backend's translations of `texts`: each is pre-processed into pieces, the distinct pieces
    are translated together and joined back per text. Sorted by length, so that batches pad little;
    in reading order for a backend that translates a page as a whole (a language model), which is
    also told the glossary's terms of the page; around any other backend the terms are substituted."""
    settings = PreProcessing.of(options, src)
    pieces = [pre_tokenize(text, settings, languages.word_separator(src), glossary.words) for text in texts]
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
