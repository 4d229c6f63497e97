"""Blocks as answered: a block whose lines are each written in one system, not the same (a Japanese sign's
English line, a Russian label's Latin brand name), is answered as one block per run of lines in one system,
so each is translated (or shown as read) on its own. Lines that mix systems (a paragraph naming software)
stay with their neighbours.

Pixels do not tell a Latin line from a CJK one of the same size and colour reliably (caps, coloured grounds),
so the split is made after OCR, from the text each line reads as. The stored blocks stay the detector's: the
split is a pure function of a stored block and its stored text, made the same way wherever an answer is
built (the server, its md5-only call, bulk runs).
"""

from typing import NamedTuple

import regex  # Unicode script properties (\p{Script=...}), which the standard `re` lacks

from .boxes import Block, Box, enclosing

# Scripts that one language's lines mix freely count as one system: Japanese writes kanji, hiragana and
# katakana in one line, Korean hangul and hanja.
_SYSTEMS = regex.compile(
    r"(?P<cjk>[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}\p{Bopomofo}])|(?P<latin>\p{Latin})"
    r"|(?P<cyrillic>\p{Cyrillic})|(?P<greek>\p{Greek})|(?P<arabic>\p{Arabic})|(?P<hebrew>\p{Hebrew})"
    r"|(?P<thai>\p{Thai})|(?P<devanagari>\p{Devanagari})|(?P<other>\p{L})"
)
MIN_LETTERS = 2
"""Fewer letters than this say nothing of a line's system: a lone "A" beside kanji, a unit after digits."""


class AnsweredBlock(NamedTuple):
    box: Box
    text: str


def writing_system(line: str) -> str | None:
    """The one system all the line's letters are written in ("cjk", "latin", "cyrillic", ...); None for a
    line that mixes systems or has too few letters (numbers, punctuation).

    Only a line written wholly in one system counts: a paragraph's lines mix systems (a Chinese sentence
    naming TeX Live and METAFONT has more Latin letters than hanzi) and are one text; a sign's lines in two
    languages are each written in one. A stray misread letter makes a line mixed: the block then stays whole,
    as it was detected.
    """
    letters = [match.lastgroup for match in _SYSTEMS.finditer(line)]
    systems = set(letters)
    return systems.pop() if len(systems) == 1 and len(letters) >= MIN_LETTERS else None


def by_script(block: Block, text: str) -> list[AnsweredBlock]:
    """The block as answered: one block per run of lines (or columns) in one writing system, each boxed
    around its own lines; a line of no system stays with the run before it (or the first run).

    The text's lines are matched to the block's lines only when they are as many (a line reader's text
    always is, a block reader's nearly always); otherwise the block is answered whole.
    """
    read = [line for line in text.split("\n") if line.strip()]
    if len(block.lines) < 2 or len(read) != len(block.lines):
        return [AnsweredBlock(block.box, text)]
    runs: list[tuple[str | None, list[int]]] = []
    for index, line in enumerate(read):
        system = writing_system(line)
        if runs and (system is None or system == runs[-1][0] or runs[-1][0] is None):
            runs[-1] = (runs[-1][0] or system, [*runs[-1][1], index])
        else:
            runs.append((system, [index]))
    if len(runs) == 1:
        return [AnsweredBlock(block.box, text)]
    return [AnsweredBlock(enclosing([box for i in lines for box in block.lines[i]]), "\n".join(read[i] for i in lines))
            for _, lines in runs]


def as_answered(blocks: list[Block], texts: list[str]) -> list[AnsweredBlock]:
    """Every block of a page as answered, in reading order (a split block's runs in its line order)."""
    return [part for block, text in zip(blocks, texts, strict=True) for part in by_script(block, text)]
