"""The reader's glossary: terms of one language pair with the translation they must get (a character's
name, a place, a made-up word), applied to every translation family.

A language model is told the terms of its page in its prompt. Around any other model each term is
swapped for a placeholder that models copy unchanged, and its translation put back afterwards; a text
whose placeholder the model lost is translated again in the pieces between its terms, so the term's
translation is in the answer whatever the model does.
"""

import hashlib
import json
import re
from dataclasses import dataclass
from functools import cached_property

MAX_TERM_CHARS = 100
MAX_TRANSLATION_CHARS = 200
MAX_TERMS = 500
"""Per language pair: every term of a page goes into a language model's prompt."""

_SPACED_SCRIPTS_END = 0x2E80
"""Characters below CJK: a term that starts or ends with a letter of these scripts matches whole words
only ("Ann" not in "Announce"); Chinese and Japanese have no spaces, so their terms match anywhere."""


def _placeholder(number: int) -> str:
    return f"ZX{number}QZ"


@dataclass(frozen=True)
class Glossary:
    terms: tuple[tuple[str, str], ...] = ()
    """(term, translation) pairs, sorted by term."""

    @classmethod
    def of(cls, terms: dict[str, str]) -> "Glossary":
        return cls(tuple(sorted(terms.items())))

    def __bool__(self) -> bool:
        return bool(self.terms)

    def as_dict(self) -> dict[str, str]:
        return dict(self.terms)

    def digest(self) -> str:
        """What stored translations depend on: they are computed again when the glossary changes."""
        return hashlib.sha256(json.dumps(self.terms, ensure_ascii=False).encode()).hexdigest()

    @cached_property
    def words(self) -> frozenset[str]:
        """The words of the terms: what pre-processing must leave whole (restore_missing_spaces would read
        a made-up name such as "Quillmark" as two words, and the term would no longer be found)."""
        return frozenset(word for term, _ in self.terms for word in term.split())

    @cached_property
    def _pattern(self) -> re.Pattern | None:
        if not self.terms:
            return None

        def edge(term: str) -> str:
            start = r"(?<!\w)" if term[0].isalnum() and ord(term[0]) < _SPACED_SCRIPTS_END else ""
            end = r"(?!\w)" if term[-1].isalnum() and ord(term[-1]) < _SPACED_SCRIPTS_END else ""
            return f"{start}{re.escape(term)}{end}"

        longest_first = sorted((term for term, _ in self.terms), key=len, reverse=True)
        return re.compile("|".join(edge(term) for term in longest_first))

    def within(self, texts: list[str]) -> "Glossary":
        """The terms that occur in `texts` (what a page's prompt needs)."""
        if self._pattern is None:
            return self
        found = {match.group() for text in texts for match in self._pattern.finditer(text)}
        return Glossary(tuple(pair for pair in self.terms if pair[0] in found))

    def split(self, text: str) -> list[str | tuple[str, str]]:
        """`text` as plain pieces and (term, translation) pairs, in order."""
        if self._pattern is None:
            return [text]
        translations = self.as_dict()
        parts: list[str | tuple[str, str]] = []
        position = 0
        for match in self._pattern.finditer(text):
            if match.start() > position:
                parts.append(text[position:match.start()])
            parts.append((match.group(), translations[match.group()]))
            position = match.end()
        if position < len(text):
            parts.append(text[position:])
        return parts

    def protect(self, text: str) -> tuple[str, list[str]]:
        """`text` with each term replaced by a numbered placeholder, and the translations to put back."""
        protected, held = [], []
        for part in self.split(text):
            if isinstance(part, tuple):
                protected.append(_placeholder(len(held)))
                held.append(part[1])
            else:
                protected.append(part)
        return "".join(protected), held


NO_TERMS = Glossary()


def restore(translated: str, held: list[str]) -> str | None:
    """The model's output with the placeholders' translations put back, or None when the model lost
    or repeated one (the text is then translated in pieces)."""
    for number, translation in enumerate(held):
        placeholder = _placeholder(number)
        if translated.count(placeholder) != 1:
            return None
        translated = translated.replace(placeholder, translation)
    return translated
