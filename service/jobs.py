"""A request's job, worked out before any model runs: its languages, the model of each stage with its
options (checked against what the client may name and set), and each source language's route to a
translation model with the reader's glossary. The pipeline runs jobs; bulk runs resolve theirs here
too, without a pipeline.
"""

import hashlib
from dataclasses import dataclass
from typing import Any

from core import language_id, languages, options
from core.errors import BadRequest, LanguagesNotSet, ModelsNotSet, Unauthorized
from core.glossary import NO_TERMS, Glossary
from core.settings import Limits, SecuritySettings
from core.slots import KINDS, NO_CHOICE, ModelKind, ModelSlots
from models_registry import ModelEntry

from .catalogue import Catalogue
from .store import DEFAULT_PROFILE, RunKey, Selection, Store, TranslationKey


@dataclass(frozen=True)
class Overrides:
    """Per-request choices of non-extension clients; None keeps the current selection."""

    lang_src: str | None = None
    lang_dst: str | None = None
    models: ModelSlots[str | None] = NO_CHOICE
    any_model: bool = False
    """The client may name any usable model (it sent the API token); else only the selected ones
    and the operator's `security.override_models`."""
    profile: int = DEFAULT_PROFILE
    """The reader profile whose selection, glossary and manual translations the request uses."""


@dataclass(frozen=True)
class StageConfig:
    entry: ModelEntry
    options: dict[str, Any]
    key: str


@dataclass(frozen=True)
class Route:
    """How texts in one source language reach the destination: the model, its options, the reader's terms."""

    src: str
    dst: str
    tsl: StageConfig
    glossary: Glossary = NO_TERMS
    """The reader's terms for the language pair: every translation follows them."""
    profile: int = DEFAULT_PROFILE
    """Whose manual translations are favoured over the stored machine ones."""

    @property
    def key(self) -> TranslationKey:
        """Stored translations are found by the options and, once the pair has a glossary, by its terms
        too: a changed glossary translates texts again."""
        options_key = self.tsl.key
        if self.glossary:
            options_key = hashlib.sha256(f"{options_key} {self.glossary.digest()}".encode()).hexdigest()
        return TranslationKey(self.tsl.entry.id, self.src, self.dst, options_key)

    @property
    def identity(self) -> tuple:
        return (self.src, self.tsl.entry.id, self.tsl.key, self.tsl.options["favor_manual"], self.key.options,
                self.profile)


@dataclass(frozen=True)
class Job:
    src: str
    """An ISO 639-1 code, or `auto`: each text's language is detected among `detectable`."""
    dst: str
    box: StageConfig | None
    ocr: StageConfig | None
    routes: tuple[Route, ...]
    """The source language's one, or with `auto` one per language that some model here translates."""
    detectable: frozenset[str] = frozenset()
    unpermitted: frozenset[str] = frozenset()
    """Detected languages that only models this client may not name translate: shown as read, saying why."""
    ocr_vertical: StageConfig | None = None
    """The OCR model's `vertical_model` where it is usable: it reads the vertical blocks."""

    @property
    def box_key(self) -> RunKey:
        return RunKey(self.box.entry.id, self.src, self.box.key)

    @property
    def ocr_key(self) -> RunKey:
        """Stored OCR texts are found by the model and its options, and by the model that read the vertical
        blocks: once a `*_vert` model is installed, vertical blocks are read again."""
        options_key = self.ocr.key
        if self.ocr_vertical is not None:
            vertical = f"{self.ocr_vertical.entry.id} {self.ocr_vertical.key}"
            options_key = hashlib.sha256(f"{options_key} {vertical}".encode()).hexdigest()
        return RunKey(self.ocr.entry.id, self.src, options_key)

    @property
    def detects(self) -> bool:
        return self.src == languages.AUTO

    @property
    def route(self) -> Route:
        """The translation of a job whose source language is given (what bulk runs need)."""
        if self.detects:
            raise BadRequest("This needs a source language: 'auto' detects it per block of an image.")
        return self.routes[0]

    @property
    def stages(self) -> ModelSlots[StageConfig | None]:
        """Each stage's model and options, in a job whose source language is given (what bulk runs need)."""
        return ModelSlots(self.box, self.ocr, self.route.tsl)

    @property
    def identity(self) -> tuple:
        return (self.src, self.dst, *((s.entry.id, s.key) if s else None for s in (self.box, self.ocr)),
                *(route.identity for route in self.routes))

    def by_route(self, texts: list[str]) -> tuple[dict[str, str | None], list[tuple[Route, list[str]]]]:
        """Each text's source language, and the texts of each route that has some. A detected text in
        the destination language, or without letters, has no route: it is shown as read."""
        if self.detects:
            found_in = dict(zip(texts, language_id.identify(texts, self.detectable), strict=True))
        else:
            found_in = dict.fromkeys(texts, self.src)
        grouped = [(route, [text for text in texts if found_in[text] == route.src]) for route in self.routes]
        return found_in, [(route, group) for route, group in grouped if group]


class Jobs:
    """Resolves requests into jobs, from the store's selection and glossaries and the catalogue's models."""

    def __init__(self, store: Store, catalogue: Catalogue, limits: Limits, security: SecuritySettings | None = None):
        self.store = store
        self.catalogue = catalogue
        self.limits = limits
        security = security or SecuritySettings()
        self.override_models = frozenset(security.override_models)
        self.client_option_ranges = security.client_option_ranges

    def resolve(self, overrides: Overrides, given_options: dict | None, need_ocr: bool) -> Job:
        if given_options is not None and not isinstance(given_options, dict):
            raise BadRequest("'options' must be an object keyed by model id.")
        profile = overrides.profile
        selection, disabled = self.catalogue.selection_and_disabled(profile)
        src = overrides.lang_src or selection.lang_src
        dst = overrides.lang_dst or selection.lang_dst
        if not src or not dst:
            raise LanguagesNotSet("Languages are not selected: choose the source and target languages first.")
        languages.check_source(src)
        languages.check_code(dst)
        models = overrides.models.or_(selection.models)
        for kind, model_id in models:
            chosen_here = model_id and model_id != selection.models.get(kind)
            if chosen_here and not overrides.any_model and model_id not in self.override_models:
                raise Unauthorized(f"Naming the {kind} model {model_id!r} per request needs the server's API token "
                                   f"(the selected one needs none; the operator may allow it with "
                                   f"security.override_models).")
        needed: tuple[ModelKind, ...] = KINDS if need_ocr else ("tsl",)
        missing = [kind for kind in needed if not models.get(kind)]
        if missing:
            raise ModelsNotSet(f"No {'/'.join(missing)} model selected: choose the models first.")
        selection = Selection(lang_src=src, lang_dst=dst)
        entries, stages = {}, {}
        for kind in needed:
            entries[kind] = self.catalogue.check_selectable(kind, models.get(kind), selection, disabled, profile)
            stages[kind] = self._stage(models.get(kind), given_options, src, overrides.any_model)
        for kind in needed:  # 513 while one is still downloading
            self.catalogue.check_downloaded(models.get(kind))
        vertical = self._vertical_stage(entries["ocr"], src, disabled) if "ocr" in entries else None
        if src != languages.AUTO:
            return Job(src, dst, stages.get("box"), stages.get("ocr"),
                       (Route(src, dst, stages["tsl"], self.store.glossary(src, dst, profile), profile),),
                       ocr_vertical=vertical)
        allowed = None if overrides.any_model else self.override_models
        translators = self.catalogue.translators_for_detection(models.tsl, dst, entries.get("ocr"), disabled,
                                                               allowed)
        routable = {code: model_id for code, model_id in translators.items() if model_id is not None}
        if not routable:
            anyone = "you may use " if translators else ""
            raise BadRequest(f"No model {anyone}here translates any language the OCR model reads into "
                             f"{languages.name_of(dst)}: choose a source language, or another OCR model.")
        glossaries = self.store.glossaries(list(routable), dst, profile)
        routes = tuple(Route(code, dst, self._stage(model_id, given_options, code, overrides.any_model),
                             glossaries[code], profile)
                       for code, model_id in routable.items())
        ocr_reads_dst = "ocr" not in entries or entries["ocr"].reads_language(dst)
        return Job(src, dst, stages.get("box"), stages.get("ocr"), routes,
                   language_id.detectable(frozenset(translators) | ({dst} if ocr_reads_dst else set())),
                   frozenset(translators) - frozenset(routable), vertical)

    def _vertical_stage(self, ocr: ModelEntry, src: str, disabled: frozenset[str]) -> StageConfig | None:
        """The stage of the OCR model's vertical sibling, with its own default options, where it is usable
        without a download; else vertical blocks go to the OCR model itself, columns set as lines."""
        sibling = ocr.vertical_model
        if sibling is None:
            return None
        availability = self.catalogue.registry.availability(sibling, disabled)
        if not availability.usable or availability.download is not None:
            return None
        return self._stage(sibling, None, src)

    def _stage(self, model_id: str, given: dict[str, dict] | None, src: str, trusted: bool = True) -> StageConfig:
        entry = self.catalogue.registry.get(model_id)
        specs = entry.option_specs_for(src)
        values = options.resolve(specs, (given or {}).get(model_id))
        if not trusted and self.catalogue.registry.calls_a_server(entry):
            self._check_metered_options(entry, specs, values)
        beams, tokens = values.get("num_beams", 1), values.get("max_new_tokens", 1)
        if beams * tokens > self.limits.max_beam_tokens:
            raise BadRequest(f"num_beams x max_new_tokens is {beams * tokens}, more than the server's limit of "
                             f"{self.limits.max_beam_tokens}: lower one of them.")
        return StageConfig(entry, values, options.cache_key(specs, values))

    def _check_metered_options(self, entry: ModelEntry, specs: dict, values: dict[str, Any]) -> None:
        """A model metered per call, asked by a client without the token: only the entry's option values,
        or values within the ranges the operator allows (`security.client_option_ranges`)."""
        allowed = self.client_option_ranges.get(entry.id, {})
        for name, value in values.items():
            if value == specs[name].default:
                continue
            low, high = allowed.get(name, (None, None))
            if low is None or not low <= value <= high:
                within = f" (allowed: {low:g} to {high:g})" if low is not None else ""
                raise Unauthorized(f"Setting {name!r} of {entry.id} per request needs the server's API token"
                                   f"{within}; the operator may allow a range with security.client_option_ranges.")
