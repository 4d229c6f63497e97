"""Which box detector + OCR model pair reads a source language by default (`reading_defaults.yaml`):
the pairs bench/reading.py measured, in the order of the file's rule, then for any other language the
rule in code (its own OCR model with the first box detector listed). `set_lang` selects the first
usable pair where the reader has not chosen models for the language themselves (`service/catalogue.py`).
"""

import datetime
from functools import cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core import languages

from .schema import ANY_LANGUAGE, ModelEntry

READING_DEFAULTS_FILE = Path(__file__).parent / "reading_defaults.yaml"
RECALL_MARGIN = 0.05
"""A pair whose block recall is within this of the language's best competes on CER (the file's rule)."""

Pair = tuple[str, str]
"""(box model id, OCR model id)."""


class MeasuredPair(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    box: str
    ocr: str
    cer: float = Field(ge=0)
    """The mean page CER over the language's images."""
    recall: float = Field(ge=0, le=1)
    """Block recall over the language's blocks."""
    images: int = Field(gt=0)


class MeasuredLanguage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    date: datetime.date
    """The day of the benchmark's run the figures come from."""
    pairs: list[MeasuredPair] = Field(min_length=1)

    @model_validator(mode="after")
    def _in_the_rules_order(self) -> "MeasuredLanguage":
        """The list is the fallback order, so it must follow the stated rule, not an editor's taste."""
        best = max(pair.recall for pair in self.pairs)

        def rank(pair: MeasuredPair) -> tuple[bool, float]:
            return (pair.recall < best - RECALL_MARGIN - 1e-9, pair.cer)

        if sorted(self.pairs, key=rank) != self.pairs:  # a stable sort: ties keep the file's order
            expected = [f"{pair.box} + {pair.ocr}" for pair in sorted(self.pairs, key=rank)]
            raise ValueError(f"pairs not in the rule's order (recall within {RECALL_MARGIN} of the best first, "
                             f"then by CER); expected {expected}")
        return self


class ReadingDefaults(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    box_detectors: list[str] = Field(min_length=1)
    """For languages not measured, the box detectors in the order they are tried."""
    measured: dict[str, MeasuredLanguage]

    @field_validator("measured")
    @classmethod
    def _language_codes(cls, measured: dict[str, MeasuredLanguage]) -> dict[str, MeasuredLanguage]:
        unknown = [code for code in measured if not languages.is_iso639_1(code)]
        if unknown:
            raise ValueError(f"not ISO 639-1 language codes (or zht): {unknown}")
        return measured


@cache
def reading_defaults() -> ReadingDefaults:
    """The file, validated once (a malformed file stops the server at start-up)."""
    return ReadingDefaults.model_validate(yaml.safe_load(READING_DEFAULTS_FILE.read_text()))


def reading_pairs(entries: list[ModelEntry], code: str) -> list[Pair]:
    """Every pair to try for the language, best first: the measured ones, then the rule's (an OCR model
    that reads only this language before those that read several, each in the registry's order, with
    the listed box detectors before the registry's others). Whether each is usable is the caller's."""
    defaults = reading_defaults()
    measured = defaults.measured.get(code)
    boxes = [entry.id for entry in entries if entry.kind == "box" and entry.reads_language(code)]
    readers = sorted((entry for entry in entries if entry.kind == "ocr" and entry.reads_language(code)),
                     key=lambda entry: ANY_LANGUAGE in entry.languages or len(entry.languages) > 1)
    boxes = [box for box in defaults.box_detectors if box in boxes] + [
        box for box in boxes if box not in defaults.box_detectors]
    ruled = [(box, entry.id) for entry in readers for box in boxes]
    listed = [(pair.box, pair.ocr) for pair in measured.pairs] if measured else []
    return listed + [pair for pair in ruled if pair not in listed]
