"""Translation pre-processing: turn an OCR'd block into the pieces a translation model sees.

OCR text carries the layout of the image (line breaks inside sentences, hyphenated words,
bubble borders read as characters). Each option here is one repair, applied in a fixed order.
"""

import re
from dataclasses import dataclass

from .errors import BadRequest


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


def _trim_line_ends(line: str, allowed: str) -> str:
    try:
        line = re.sub(rf"^[^{allowed}]+", "", line)
        return re.sub(rf"[^{allowed}]+$", "", line)
    except re.error as exc:
        raise BadRequest(f"Option allowed_start_end {allowed!r} is not a valid character set: {exc}.") from exc


def _split_after(text: str, chars: str) -> list[str]:
    """Split after any of `chars`, keeping each one with the piece it ends."""
    if not chars:
        return [text]
    return re.findall(rf"[^{re.escape(chars)}]+[{re.escape(chars)}]*|[{re.escape(chars)}]+", text)


def pre_tokenize(text: str, options: PreProcessing, separator: str = " ") -> list[str]:
    """Pieces of `text` to translate, in order. `separator` joins the lines of one sentence
    ("" for languages written without spaces)."""
    if options.allowed_start_end:
        text = "\n".join(_trim_line_ends(line, options.allowed_start_end) for line in text.split("\n"))
    if options.restore_dash_newlines:
        text = re.sub(r"(?<=\w)-[ \t]*\n[ \t]*(?=\w)", "", text)
    if options.ignore_chars:
        text = re.sub(f"[{re.escape(options.ignore_chars)}]", "", text)
    lines = text.split("\n")
    if not options.break_newlines:
        lines = [separator.join(line.strip() for line in lines if line.strip())]
    pieces = [piece for line in lines for piece in _split_after(line, options.break_chars)]
    return [" ".join(piece.split()) for piece in pieces if piece.strip()]
