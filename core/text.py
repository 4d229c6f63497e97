"""Translation pre-processing: turn an OCR'd block into the pieces a translation model sees.

OCR text carries the layout of the image (line breaks inside sentences, hyphenated words,
bubble borders read as characters). Each option here is one repair, applied in a fixed order.
Options a client sends are data, never code: character options are parsed into sets and matched
by lookup, so every repair is one pass over the text, whatever the option's value.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from .errors import BadRequest

_CLASS_ESCAPES: dict[str, Callable[[str], bool]] = {
    "d": str.isdigit, "w": lambda char: char.isalnum() or char == "_", "s": str.isspace}


@dataclass(frozen=True)
class CharSet:
    """Characters written as the body of a regex character class, as the original server's options
    are (`a-zA-Z0-9\\-\\.\\!? `): single characters, ranges `x-y`, backslash escapes and the classes
    `\\d`, `\\w`, `\\s`. Parsed, never compiled into a pattern."""

    chars: frozenset[str]
    ranges: tuple[tuple[str, str], ...]
    classes: tuple[Callable[[str], bool], ...]

    def __contains__(self, char: str) -> bool:
        return (char in self.chars or any(low <= char <= high for low, high in self.ranges)
                or any(test(char) for test in self.classes))

    @staticmethod
    @lru_cache(maxsize=256)
    def parse(spec: str, option: str = "allowed_start_end") -> "CharSet":
        def fail(why: str) -> BadRequest:
            return BadRequest(f"Option {option!r} {spec!r} is not a character set: {why}.")

        if spec.startswith("^"):
            raise fail("a leading ^ would negate it; write \\^ for a caret")
        items: list[tuple[str, bool]] = []  # (character, escaped), and classes aside
        classes, index = [], 0
        while index < len(spec):
            char = spec[index]
            if char == "\\":
                if index + 1 == len(spec):
                    raise fail("it ends with a lone backslash")
                escaped = spec[index + 1]
                if escaped in _CLASS_ESCAPES:
                    classes.append(_CLASS_ESCAPES[escaped])
                    items.append(("", True))  # a class is not a range end
                else:
                    items.append((escaped, True))
                index += 2
                continue
            if char in "[]":
                raise fail(f"write \\{char} for a bracket")
            items.append((char, False))
            index += 1
        chars, ranges, position = set(), [], 0
        while position < len(items):
            char, _ = items[position]
            is_range = (position + 2 < len(items) and items[position + 1] == ("-", False)
                        and char and items[position + 2][0])
            if is_range:
                high = items[position + 2][0]
                if high < char:
                    raise fail(f"the range {char}-{high} is reversed")
                ranges.append((char, high))
                position += 3
                continue
            if char:
                chars.add(char)
            position += 1
        return CharSet(frozenset(chars), tuple(ranges), tuple(classes))


@dataclass(frozen=True)
class PreProcessing:
    ignore_chars: str = ""
    """Characters deleted before translating (e.g. furigana brackets, decoration)."""
    break_chars: str = ""
    """Characters after which the text is split; pieces are translated separately."""
    allowed_start_end: str = ""
    """Regex character-class body (e.g. `a-zA-Z0-9!?.`): other characters are trimmed from line ends."""
    break_newlines: bool = False
    """Translate each OCR line separately instead of joining lines into one sentence."""
    restore_dash_newlines: bool = False
    """Rejoin words hyphenated across a line break ("trans-\\nlation" -> "translation")."""
    restore_missing_spaces: bool = False
    """Split runs of letters that are no word into common words ("thequick" -> "the quick")."""
    language: str = ""
    """The text's language (ISO 639-1), whose word frequencies restore_missing_spaces uses."""

    @classmethod
    def of(cls, options: dict, language: str) -> "PreProcessing":
        """The pre-processing part of a translation model's resolved options, for text in `language`."""
        return cls(language=language, **{name: options[name] for name in cls.__dataclass_fields__
                                         if name != "language"})


def _trim_line_ends(line: str, allowed: CharSet) -> str:
    start, end = 0, len(line)
    while start < end and line[start] not in allowed:
        start += 1
    while end > start and line[end - 1] not in allowed:
        end -= 1
    return line[start:end]


def _split_after(text: str, chars: frozenset[str]) -> list[str]:
    """Split after each run of `chars`, keeping the run with the piece it ends."""
    pieces, start = [], 0
    for index, char in enumerate(text):
        if char in chars and (index + 1 == len(text) or text[index + 1] not in chars):
            pieces.append(text[start:index + 1])
            start = index + 1
    if start < len(text):
        pieces.append(text[start:])
    return pieces


def pre_tokenize(text: str, options: PreProcessing, separator: str = " ", keep: frozenset[str] = frozenset(),
                 ) -> list[str]:
    """Pieces of `text` to translate, in order. `separator` joins the lines of one sentence
    ("" for languages written without spaces); the words in `keep` (the reader's glossary terms') are
    never split by restore_missing_spaces."""
    if options.allowed_start_end:
        allowed = CharSet.parse(options.allowed_start_end)
        text = "\n".join(_trim_line_ends(line, allowed) for line in text.split("\n"))
    if options.restore_dash_newlines:
        text = re.sub(r"(?<=\w)-[ \t]*\n[ \t]*(?=\w)", "", text)  # a fixed pattern, linear
    if options.ignore_chars:
        text = text.translate(dict.fromkeys(map(ord, options.ignore_chars)))
    if options.restore_missing_spaces:
        text = "\n".join(" ".join(restore_spaces(word, options.language, keep) for word in line.split(" "))
                         for line in text.split("\n"))
    lines = text.split("\n")
    if not options.break_newlines:
        lines = [separator.join(line.strip() for line in lines if line.strip())]
    breaks = frozenset(options.break_chars)
    pieces = [piece for line in lines for piece in _split_after(line, breaks)]
    return [" ".join(piece.split()) for piece in pieces if piece.strip()]


COMMON_WORD_ZIPF = 3.0
"""Zipf frequency (log10 of uses per billion words) a part must reach: "the" is 7.7, "quick" 4.6,
"yak" 2.5. Rarer parts would split names and jargon into nonsense."""
RARE_RUN_ZIPF = 2.0
"""Runs rarer than this are candidates for splitting: word lists learnt from the web know many
glued-up runs ("lamaison" 1.7 in French) as rare words."""
LONGEST_RUN = 40
"""Longer runs of letters are left alone (the search grows with the square of the length)."""


def restore_spaces(word: str, language: str, keep: frozenset[str] = frozenset()) -> str:
    """`word` with spaces put back where OCR lost them, when it is no (common) word of `language` but splits
    into the fewest common ones (the most frequent split among those); otherwise `word` unchanged.
    Punctuation around it stays where it is."""
    start, end = 0, len(word)
    while start < end and not word[start].isalpha():
        start += 1
    while end > start and not word[end - 1].isalpha():
        end -= 1
    core = word[start:end]
    if (core in keep or len(core) < 4 or len(core) > LONGEST_RUN or not core.isalpha()
            or _zipf(core.lower(), language) >= RARE_RUN_ZIPF):
        return word
    lowered = core.lower()
    # best[i]: (parts, -frequency) of the best split of lowered[:i] and where its last part starts.
    best: list[tuple[tuple[int, float], int] | None] = [((0, 0.0), 0)] + [None] * len(lowered)
    for stop in range(1, len(lowered) + 1):
        for begin in range(stop):
            if best[begin] is None:
                continue
            frequency = _zipf(lowered[begin:stop], language)
            if frequency < COMMON_WORD_ZIPF or (stop - begin == 1 and frequency < 6):
                continue
            (parts, negative), _ = best[begin]
            candidate = (parts + 1, negative - frequency)
            if best[stop] is None or candidate < best[stop][0]:
                best[stop] = (candidate, begin)
    if best[-1] is None or best[-1][0][0] < 2:
        return word
    cuts, stop = [], len(lowered)
    while stop:
        begin = best[stop][1]
        cuts.append(core[begin:stop])
        stop = begin
    return word[:start] + " ".join(reversed(cuts)) + word[end:]


@lru_cache(maxsize=65536)
def _zipf(word: str, language: str) -> float:
    import wordfreq

    if language not in _wordfreq_languages():
        return RARE_RUN_ZIPF  # no word list for the language: every run counts as a word, nothing is split
    return wordfreq.zipf_frequency(word, language)


@lru_cache(maxsize=1)
def _wordfreq_languages() -> frozenset[str]:
    import wordfreq

    return frozenset(wordfreq.available_languages())
