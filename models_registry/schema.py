"""The shape of a model entry: a model is data (id, kind, backend, languages, options, weights)."""

from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core import languages
from core.errors import BadRequest
from core.options import BOX_OPTIONS, TSL_OPTIONS, OptionSpec, coerce
from core.slots import ModelKind

ANY_LANGUAGE = "*"
COMMON_OPTIONS: dict[str, dict[str, OptionSpec]] = {"box": BOX_OPTIONS, "ocr": {}, "tsl": TSL_OPTIONS}
LANGUAGE_OPTIONS_FILE = Path(__file__).parent / "language_options.yaml"


@cache
def language_defaults() -> dict[str, dict[str, Any]]:
    """Per source language, new defaults of common options (`language_options.yaml`), checked once."""
    known = {name: spec for specs in COMMON_OPTIONS.values() for name, spec in specs.items()}
    checked = {}
    for code, values in (yaml.safe_load(LANGUAGE_OPTIONS_FILE.read_text()) or {}).items():
        if not languages.is_iso639_1(code):
            raise ValueError(f"{LANGUAGE_OPTIONS_FILE.name}: {code!r} is not an ISO 639-1 language code")
        unknown = set(values) - set(known)
        if unknown:
            raise ValueError(f"{LANGUAGE_OPTIONS_FILE.name}: {code}: no common option {sorted(unknown)}")
        try:
            checked[code] = {name: coerce(name, known[name], value) for name, value in values.items()}
        except BadRequest as exc:
            raise ValueError(f"{LANGUAGE_OPTIONS_FILE.name}: {code}: {exc.message}") from None
    return checked


class Weights(BaseModel):
    """Where a model's weights come from; each backend reads the fields it needs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    repo: str | None = None
    """Hugging Face repository id ("org/name"), also the folder name under a models folder."""
    revision: str | None = Field(default=None, pattern=r"^[0-9a-f]{40}$")
    """The repository's commit (40 hex digits, quoted) a download fetches and the Hugging Face cache's
    snapshot loaded; without it, downloads need args.weights.allow_unpinned_downloads (`hub_downloads.py`)."""
    package: str | None = None
    """Importable module shipping the files, with a `model_dir()` function (easyocr_en_models)."""
    name: str | None = None
    """The backend's own name for them: a Tesseract traineddata, an Apertium mode."""
    files: list[str] = Field(default_factory=list)
    """Files that must exist in the package's folder."""
    install_hint: str | None = None
    """What to install when they are missing, shown in errors and logs."""

    @field_validator("revision", mode="before")
    @classmethod
    def _quoted(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, str):  # YAML reads 0123...789 as a number
            raise ValueError("a commit id (40 hex digits) in quotes, else YAML may read it as a number")
        return value


class ModelEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+\-/]*$")
    kind: ModelKind
    backend: str
    description: str = ""
    languages: list[str]
    """Languages read (box/ocr) or translated from (tsl); "*" for any."""
    languages_dst: list[str] = Field(default_factory=list)
    """Languages translated to (tsl only); "*" for any."""
    code_style: Literal["iso639_1", "iso639_3"] = "iso639_1"
    language_codes: dict[str, str] = Field(default_factory=dict)
    """ISO 639-1 code -> the backend's code, where `code_style` does not give it."""
    reads: Literal["block", "line"] = "block"
    """OCR only: whole blocks, or the single lines of a block (joined in reading order)."""
    reads_vertical: bool = False
    """OCR only: reads columns of vertical text as they stand (Tesseract's `*_vert`, manga-ocr). The others
    are given each column's characters side by side as a horizontal line (inference/upright.py)."""
    vertical_model: str | None = None
    """OCR only: the model that reads this one's vertical blocks where it is usable (Tesseract `jpn` ->
    `jpn_vert`): it reads the columns of a Japanese speech bubble almost without a mistake where the
    horizontal model, even given the columns as lines, misreads one character in five."""
    mixed_languages: bool = False
    """OCR only: reads all its languages in one pass without being told which (Tesseract with several
    traineddata, a multi-script recognizer), so it can read a page whose language is detected."""
    options: dict[str, OptionSpec] = Field(default_factory=dict)
    """The options the backend's code reads: its class declares them (`declared_options`) and the
    registry fills them in; entry files never set them."""
    default_options: dict[str, Any] = Field(default_factory=dict)
    """New defaults of the backend's options or the common ones (a vertical script's `psm`)."""
    weights: Weights = Field(default_factory=Weights)
    settings: dict[str, Any] = Field(default_factory=dict)
    """How the backend drives this model (token conventions, pre-processing); each backend
    validates its own keys when the registry loads."""

    @model_validator(mode="after")
    def _check(self) -> "ModelEntry":
        if self.id == "manual":
            raise ValueError("'manual' is reserved for user translations")
        for code in [*self.languages, *self.languages_dst, *self.language_codes]:
            if code != ANY_LANGUAGE and not languages.is_iso639_1(code):
                raise ValueError(f"{code!r} is not an ISO 639-1 language code")
        if (self.kind == "tsl") != bool(self.languages_dst):
            raise ValueError("languages_dst is required for tsl models and only allowed for them")
        if (self.reads_vertical or self.vertical_model) and self.kind != "ocr":
            raise ValueError("reads_vertical and vertical_model are for OCR models")
        if self.mixed_languages and (self.kind != "ocr" or len(self.languages) < 2):
            raise ValueError("mixed_languages is for OCR models that read several languages")
        specs = {**COMMON_OPTIONS[self.kind], **self.options}
        for name, value in self.default_options.items():
            if name not in specs:
                raise ValueError(f"default_options names unknown option {name!r}")
            if value is None:
                raise ValueError(f"default_options cannot remove option {name!r}: the model's code reads it; "
                                 "give it a default value")
            try:
                coerce(name, specs[name], value)
            except BadRequest as exc:
                raise ValueError(exc.message) from None
        return self

    @property
    def option_specs(self) -> dict[str, OptionSpec]:
        """The options with this model's defaults, whatever the language."""
        return self.option_specs_for("")

    def option_specs_for(self, language: str) -> dict[str, OptionSpec]:
        """The options for text in `language`: the entry's defaults over the language's over the option's own."""
        specs = {**COMMON_OPTIONS[self.kind], **self.options}
        defaults = {**language_defaults().get(language, {}), **self.default_options}
        return {name: spec.model_copy(update={"default": defaults[name]}) if name in defaults else spec
                for name, spec in specs.items()}

    def reads_language(self, code: str) -> bool:
        if code == languages.AUTO:  # a detector finds any script; a reader must read several at once;
            # a translator is chosen per detected language (the pipeline routes the others)
            return {"box": ANY_LANGUAGE in self.languages, "ocr": self.mixed_languages, "tsl": True}[self.kind]
        return ANY_LANGUAGE in self.languages or code in self.languages

    def translates(self, src: str, dst: str) -> bool:
        return self.reads_language(src) and (ANY_LANGUAGE in self.languages_dst or dst in self.languages_dst)

    def code_for(self, code: str) -> str:
        """The backend's code for an ISO 639-1 language (`auto` as is: a mixed-language reader's call)."""
        if code == languages.AUTO:
            return code
        if code in self.language_codes:
            return self.language_codes[code]
        return languages.alpha3_of(code) if self.code_style == "iso639_3" else code
