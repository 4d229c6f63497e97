"""Which language a text is in, among the few a request can translate: lingua's statistical models,
which ship inside its wheel (nothing to download), told the candidates so that a short line is not
called a language the server has no model for."""

from functools import lru_cache

from lingua import Language, LanguageDetector, LanguageDetectorBuilder

from .languages import TRADITIONAL_CHINESE

_LINGUA_CODES = {language.iso_code_639_1.name.lower(): language for language in Language.all()}


def _lingua_language(code: str) -> Language | None:
    return _LINGUA_CODES.get("zh" if code == TRADITIONAL_CHINESE else code)


def detectable(codes: frozenset[str]) -> frozenset[str]:
    """The codes lingua can tell apart (75 languages; `zht` as Chinese, when `zh` is not among them)."""
    known = {code for code in codes if _lingua_language(code) is not None}
    return frozenset(known - {TRADITIONAL_CHINESE} if "zh" in known else known)


@lru_cache(maxsize=32)
def _detector(codes: frozenset[str]) -> tuple[LanguageDetector, dict[Language, str]]:
    """Built once per set of candidates; each language's n-gram models load on first use (~1 s)."""
    by_language = {_lingua_language(code): code for code in codes}
    return LanguageDetectorBuilder.from_languages(*by_language).build(), by_language


def identify(texts: list[str], candidates: frozenset[str]) -> list[str | None]:
    """Each text's language among `candidates` (ISO 639-1 codes lingua knows, see `detectable`); None
    for a text without letters (numbers, punctuation), which has no language to tell."""
    codes = detectable(candidates)
    if not codes:
        return [None] * len(texts)
    if len(codes) == 1:  # lingua needs two to choose between
        [only] = codes
        return [only if _has_letters(text) else None for text in texts]
    detector, by_language = _detector(codes)
    found = [detector.detect_language_of(text) if _has_letters(text) else None for text in texts]
    return [None if language is None else by_language[language] for language in found]


def _has_letters(text: str) -> bool:
    return any(char.isalpha() for char in text)
