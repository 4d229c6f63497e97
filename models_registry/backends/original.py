"""The "original" pass-through: the translation is the OCR text, for OCR-only use."""

from typing import Any

from .base import Family, Probe, TranslationBackend


class PassThrough(TranslationBackend):
    passes_through = True

    def translate(self, texts: list[str], src: str, dst: str, options: dict[str, Any]) -> list[str]:
        return list(texts)


FAMILY = Family(
    name="original",
    description="Shows the OCR text itself instead of a translation (OCR-only use).",
    homepage="https://github.com/Crivella/ocr_translate",
    install_hint="built in",
    probe=lambda: Probe("builtin"),
    backends={"tsl": PassThrough},
)
