"""ISO 639-1 language codes, names and the scripts' layout traits, backed by pycountry."""

from functools import cache

import pycountry

from .errors import BadRequest

# Scripts written without spaces between words: OCR pieces are joined with "" and translated
# pieces too when they are the destination.
NO_SPACE_LANGUAGES = frozenset({"ja", "zh", "th", "lo", "km", "my"})
# Languages that are often written in vertical columns, read right to left.
VERTICAL_LANGUAGES = frozenset({"ja", "zh", "ko"})


@cache
def _lookup(code: str):
    return pycountry.languages.get(alpha_2=code) if len(code) == 2 else None


def is_iso639_1(code: str) -> bool:
    return isinstance(code, str) and _lookup(code) is not None


def check_code(code: str) -> str:
    """Return `code` if it is an ISO 639-1 code, else raise a client error that says so."""
    if not is_iso639_1(code):
        raise BadRequest(f"Unknown language code {code!r}: use an ISO 639-1 code such as 'ja' or 'en'.")
    return code


def name_of(code: str) -> str:
    """Human-readable English name ('ja' -> 'Japanese')."""
    return _lookup(code).name


def alpha3_of(code: str) -> str:
    """ISO 639-3 code ('ja' -> 'jpn'), the convention of Tesseract and Apertium."""
    return _lookup(code).alpha_3


def word_separator(code: str) -> str:
    return "" if code in NO_SPACE_LANGUAGES else " "
