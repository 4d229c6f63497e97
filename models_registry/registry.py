"""Model entries loaded from YAML, validated once, and what is usable on this machine.

Built-in entries live in `entries/`; operators add folders of their own YAML files through the
`registry_dirs` setting. A model is usable when its family's software is present, the family is
enabled, and its weights are found (or, where the config allows it, may be downloaded: its
availability names the repository, `hub_downloads.py`); otherwise it is hidden and the reason is
kept for the log, `get_plugin_data` and `set_models` errors.
"""

import logging
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from core.errors import BadRequest, ModelLoadError
from core.settings import WeightSources

from .backends import families
from .backends.base import Family, ModelBackend, Probe, Runtime
from .reading_defaults import READING_DEFAULTS_FILE, Pair, reading_defaults, reading_pairs
from .schema import ModelEntry, ModelKind

BUILTIN_ENTRIES = Path(__file__).parent / "entries"
_ENTRY_LIST = TypeAdapter(list[ModelEntry])

log = logging.getLogger(__name__)


class RegistryError(ValueError):
    """The model entries are malformed: start-up stops with this message."""


def _read_entries(path: Path) -> list[ModelEntry]:
    """The file's entries, each with the options its backend declares."""
    try:
        raw = yaml.safe_load(path.read_text()) or []
        if isinstance(raw, list):
            raw = [_with_declared_options(item, path) if isinstance(item, dict) else item for item in raw]
        return _ENTRY_LIST.validate_python(raw)
    except (yaml.YAMLError, ValidationError) as exc:
        raise RegistryError(f"invalid model entries in {path}: {exc}") from exc


def _with_declared_options(item: dict[str, Any], path: Path) -> dict[str, Any]:
    if "options" in item:
        raise RegistryError(f"model entry {item.get('id')!r} in {path} declares `options`: a backend declares the "
                            "options its code reads; change their defaults with `default_options`")
    backend = families().get(item.get("backend"))
    backend_class = backend.backends.get(item.get("kind")) if backend else None
    # An unknown backend or kind is reported by the registry, with the entry's id.
    return {**item, "options": backend_class.declared_options if backend_class else {}}


@dataclass(frozen=True)
class Availability:
    usable: bool
    reason: str | None = None
    download: str | None = None
    """The Hugging Face repository its weights are still to be fetched from (`hub_downloads`): the
    model is offered, and serves once they are in the cache."""


class Registry:
    def __init__(self, entries: list[ModelEntry], weights: WeightSources | None = None):
        self.weights = weights or WeightSources()
        self.entries: dict[str, ModelEntry] = {}
        for entry in entries:
            if entry.id in self.entries:
                raise RegistryError(f"model id {entry.id!r} is declared twice")
            self.entries[entry.id] = entry
        known = families()
        for entry in entries:
            if entry.backend not in known:
                raise RegistryError(f"model {entry.id!r} names unknown backend {entry.backend!r}")
            if entry.kind not in known[entry.backend].backends:
                raise RegistryError(f"backend {entry.backend!r} has no {entry.kind} models (entry {entry.id!r})")
            try:
                known[entry.backend].backends[entry.kind].Settings.model_validate(entry.settings)
            except ValidationError as exc:
                raise RegistryError(f"invalid settings in model entry {entry.id!r}: {exc}") from exc
            if entry.vertical_model is not None:
                self._check_vertical_model(entry)

    def _check_vertical_model(self, entry: ModelEntry) -> None:
        sibling = self.entries.get(entry.vertical_model)
        if sibling is None or sibling.kind != "ocr" or not sibling.reads_vertical:
            raise RegistryError(f"model {entry.id!r}: vertical_model {entry.vertical_model!r} is not an OCR model "
                                "that reads vertical text (reads_vertical: true)")
        if not set(entry.languages) <= set(sibling.languages):
            raise RegistryError(f"model {entry.id!r}: its vertical_model {sibling.id!r} does not read all of its "
                                "languages")

    @classmethod
    def load(cls, extra_dirs: list[Path] = (), weights: WeightSources | None = None,
             model_settings: dict[str, dict[str, Any]] | None = None) -> "Registry":
        """Built-in entries, then those of `extra_dirs`; `model_settings` (model id -> backend
        settings, from the config) replace the named settings of those entries."""
        files = sorted(BUILTIN_ENTRIES.glob("*.yaml"))
        for folder in extra_dirs:
            if not Path(folder).is_dir():
                raise RegistryError(f"registry folder {folder} does not exist")
            files += sorted(Path(folder).glob("*.yaml"))
        entries = [entry for path in files for entry in _read_entries(path)]
        overrides = dict(model_settings or {})
        unknown = set(overrides) - {entry.id for entry in entries}
        if unknown:
            raise RegistryError(f"model_settings names unknown models {sorted(unknown)}")
        entries = [entry.model_copy(update={"settings": {**entry.settings, **overrides[entry.id]}})
                   if entry.id in overrides else entry for entry in entries]
        try:
            reading_defaults()
        except (yaml.YAMLError, ValidationError) as exc:
            raise RegistryError(f"invalid reading defaults in {READING_DEFAULTS_FILE}: {exc}") from exc
        return cls(entries, weights)

    @property
    def families(self) -> dict[str, Family]:
        return families()

    @cached_property
    def probes(self) -> dict[str, Probe]:
        """Software checks, once per process (they run subprocesses)."""
        return {name: family.probe() for name, family in self.families.items()}

    @cached_property
    def _weights_problems(self) -> dict[str, str | None]:
        problems = {}
        for entry in self.entries.values():
            probe = self.probes[entry.backend]
            problems[entry.id] = probe.problem or self.backend_class(entry).missing_weights(entry, self.weights)
            if problems[entry.id]:
                log.debug("model %s is unavailable: %s", entry.id, problems[entry.id])
        unavailable = sorted(model_id for model_id, problem in problems.items() if problem)
        if unavailable:  # one line: the reasons (install hints, folders searched) are on GET /status
            log.warning("%d of %d models are unavailable (GET /status says why for each): %s",
                        len(unavailable), len(problems), ", ".join(unavailable))
        return problems

    @cached_property
    def _downloads(self) -> dict[str, str | None]:
        """Per usable model, the repository its weights are still to be downloaded from, if any."""
        return {model_id: None if problem else self.backend_class(self.entries[model_id]).downloadable_from(
                    self.entries[model_id], self.weights)
                for model_id, problem in self._weights_problems.items()}

    def availability(self, model_id: str, disabled_families: frozenset[str] = frozenset()) -> Availability:
        entry = self.get(model_id)
        if entry.backend in disabled_families:
            return Availability(False, f"the {entry.backend} plugin is disabled (enable it with manage_plugins)")
        problem = self._weights_problems[model_id]
        return Availability(problem is None, problem, self._downloads[model_id])

    def recheck(self, model_id: str) -> Availability:
        """Look for the model's weights again: they may have arrived since (a download, a copy)."""
        entry = self.get(model_id)
        backend = self.backend_class(entry)
        problem = self.probes[entry.backend].problem or backend.missing_weights(entry, self.weights)
        self._weights_problems[model_id] = problem
        self._downloads[model_id] = None if problem else backend.downloadable_from(entry, self.weights)
        return self.availability(model_id)

    def get(self, model_id: str) -> ModelEntry:
        try:
            return self.entries[model_id]
        except KeyError:
            raise BadRequest(f"Unknown model id {model_id!r}; the handshake (GET /) lists the models.") from None

    def usable(self, kind: ModelKind, disabled_families: frozenset[str] = frozenset()) -> list[ModelEntry]:
        return [
            entry for entry in self.entries.values()
            if entry.kind == kind and self.availability(entry.id, disabled_families).usable
        ]

    def reading_pairs(self, code: str) -> list[Pair]:
        """The box + OCR pairs to try for a source language, best first (`reading_defaults.py`)."""
        return reading_pairs(list(self.entries.values()), code)

    def backend_class(self, entry: ModelEntry) -> type[ModelBackend]:
        return self.families[entry.backend].backends[entry.kind]

    def calls_a_server(self, entry: ModelEntry) -> bool:
        """Whether the model is served elsewhere and metered per call (`TranslationBackend.calls_a_server`):
        what a client without the API token, or a reader profile, may use only as the operator allows."""
        return getattr(self.backend_class(entry), "calls_a_server", False)

    def load_backend(self, model_id: str, kind: ModelKind, runtime: Runtime | None = None) -> ModelBackend:
        """Load a model for a deployment; every failure becomes a ModelLoadError saying why."""
        entry = self.get(model_id)
        if entry.kind != kind:
            raise BadRequest(f"Model {model_id!r} is a {entry.kind} model, not a {kind} model.")
        availability = self.availability(model_id)
        if not availability.usable or availability.download:
            availability = self.recheck(model_id)
        if not availability.usable:
            raise ModelLoadError(f"Model {model_id!r} cannot be loaded: {availability.reason}.")
        if availability.download:
            raise ModelLoadError(f"Model {model_id!r} cannot be loaded yet: its weights are not (completely) in the "
                                 f"Hugging Face cache; selecting it downloads them.")
        try:
            return self.backend_class(entry)(entry, replace(runtime or Runtime(), weights=self.weights))
        except ModelLoadError:
            raise
        except Exception as exc:
            log.exception("loading model %s failed", model_id)
            raise ModelLoadError(f"Model {model_id!r} failed to load: {exc}") from exc
