"""ISO 639-1 language codes, names and the scripts' layout traits, backed by pycountry."""

from dataclasses import dataclass
from functools import cache

import pycountry

from .errors import BadRequest

AUTO = "auto"
"""Not a language: the source language detected per text block (`core/language_id.py`). Offered as a
source only, named "Detect automatically" in the handshake."""
TRADITIONAL_CHINESE = "zht"
"""Not ISO 639-1, which has one code for Chinese: the original's and the extension's code for Chinese
in traditional characters (read by other models than simplified Chinese), accepted throughout."""
# Scripts written without spaces between words: OCR pieces are joined with "" and translated
# pieces too when they are the destination.
NO_SPACE_LANGUAGES = frozenset({"ja", "zh", TRADITIONAL_CHINESE, "th", "lo", "km", "my"})
# Languages that are often written in vertical columns, read right to left.
VERTICAL_LANGUAGES = frozenset({"ja", "zh", TRADITIONAL_CHINESE, "ko"})


@dataclass(frozen=True)
class _Extra:
    name: str
    alpha_3: str


_EXTRA = {TRADITIONAL_CHINESE: _Extra("Chinese (Traditional)", "zho")}


@cache
def _lookup(code: str):
    if code in _EXTRA:
        return _EXTRA[code]
    return pycountry.languages.get(alpha_2=code) if len(code) == 2 else None


def is_iso639_1(code: str) -> bool:
    """An ISO 639-1 code, or `zht`."""
    return isinstance(code, str) and _lookup(code) is not None


def check_code(code: str) -> str:
    """Return `code` if it is an ISO 639-1 code, else raise a client error that says so."""
    if not is_iso639_1(code):
        raise BadRequest(f"Unknown language code {code!r}: use an ISO 639-1 code such as 'ja' or 'en'.")
    return code


def check_source(code: str) -> str:
    """Return `code` if it is an ISO 639-1 code or `auto`, else raise a client error that says so."""
    return code if code == AUTO else check_code(code)


def name_of(code: str) -> str:
    """Human-readable English name ('ja' -> 'Japanese')."""
    return "Detect automatically" if code == AUTO else _lookup(code).name


def alpha3_of(code: str) -> str:
    """ISO 639-3 code ('ja' -> 'jpn'), the convention of Tesseract and Apertium."""
    return _lookup(code).alpha_3


def word_separator(code: str) -> str:
    return "" if code in NO_SPACE_LANGUAGES else " "
