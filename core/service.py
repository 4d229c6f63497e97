"""What every endpoint of the extension API does, without HTTP or Serve.

The ingress parses requests and calls these methods; the model stages arrive as an injected
`ModelStages` (Serve handles in production, plain objects in unit tests). Store calls are
synchronous SQLAlchemy and run in worker threads so the event loop keeps serving.
"""

import asyncio
import dataclasses
import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np

from models_registry import ANY_LANGUAGE, ModelEntry, ModelKind, Registry

from . import languages, options
from .boxes import Block, join_lines
from .coalescing import Coalescer
from .errors import (
    BadRequest,
    LanguagesNotSet,
    ModelsNotSet,
    NotAcceptable,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
)
from .imaging import crop, decode_image
from .observe import Observer
from .retention import Retention
from .settings import Limits, RetentionSettings
from .store import Selection, Store, StoredBlock
from .text import PreProcessing, pre_tokenize

EXTENSION_API_VERSION = [0, 7, 4]
"""The ocr_translate server version whose API we implement (the extension needs >= 0.6.0)."""
SLOT_OF_KIND: dict[ModelKind, str] = {"box": "box_model", "ocr": "ocr_model", "tsl": "tsl_model"}
_MD5 = re.compile(r"^[0-9a-fA-F]{32}$")

log = logging.getLogger(__name__)
T = TypeVar("T")


class ModelStages(Protocol):
    async def detect(self, model_id: str, image: np.ndarray, lang: str, options: dict[str, Any]) -> list[Block]: ...

    async def read(self, model_id: str, crops: list[np.ndarray], lang: str, options: dict[str, Any]) -> list[str]: ...

    async def translate(
        self, model_id: str, texts: list[str], src: str, dst: str, options: dict[str, Any]
    ) -> list[str]: ...

    async def warm(self, kind: ModelKind, model_id: str) -> None: ...


@dataclass(frozen=True)
class Overrides:
    """Per-request choices of non-extension clients; None keeps the current selection."""

    lang_src: str | None = None
    lang_dst: str | None = None
    box_model_id: str | None = None
    ocr_model_id: str | None = None
    tsl_model_id: str | None = None
    any_model: bool = False
    """The client may name any usable model (it sent the API token); else only the selected ones
    and the operator's `security.override_models`."""


@dataclass(frozen=True)
class StageConfig:
    entry: ModelEntry
    options: dict[str, Any]
    key: str


@dataclass(frozen=True)
class Job:
    src: str
    dst: str
    box: StageConfig | None
    ocr: StageConfig | None
    tsl: StageConfig

    @property
    def identity(self) -> tuple:
        return (self.src, self.dst, *((s.entry.id, s.key) if s else None for s in (self.box, self.ocr, self.tsl)),
                self.tsl.options["favor_manual"])


def _by_usage(names, usage: dict[str, int]) -> list[str]:
    return sorted(set(names), key=lambda name: (-usage.get(name, 0), name))


class OcrTranslateService:
    def __init__(self, store: Store, registry: Registry, stages: ModelStages, limits: Limits,
                 observer: Observer | None = None, override_models: frozenset[str] = frozenset(),
                 retention: RetentionSettings | None = None):
        self.store = store
        self.registry = registry
        self.stages = stages
        self.limits = limits
        self.observer = observer or Observer()
        self.coalescer = Coalescer(store)
        self.retention = Retention(store, retention or RetentionSettings())
        self.override_models = override_models
        self._decodes = asyncio.Semaphore(limits.max_concurrent_decodes)

    @staticmethod
    async def _io(function: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(function, *args)

    # -- languages and models on offer ---------------------------------------------------------
    def _usable(self, kind: ModelKind) -> list[ModelEntry]:
        return self.registry.usable(kind, self.store.disabled_families())

    def _languages(self) -> tuple[list[str], list[str]]:
        entries = [*self._usable("box"), *self._usable("ocr"), *self._usable("tsl")]
        src = {code for entry in entries for code in entry.languages if code != ANY_LANGUAGE}
        dst = {code for entry in entries if entry.kind == "tsl" for code in entry.languages_dst}
        if ANY_LANGUAGE in dst:
            dst = (dst - {ANY_LANGUAGE}) | src
        return (_by_usage(src, self.store.usage("lang_src")), _by_usage(dst, self.store.usage("lang_dst")))

    @staticmethod
    def _fits(entry: ModelEntry, src: str, dst: str) -> bool:
        return entry.translates(src, dst) if entry.kind == "tsl" else entry.reads_language(src)

    def _models(self, kind: ModelKind, selection: Selection) -> list[str]:
        if not selection.lang_src or (kind == "tsl" and not selection.lang_dst):
            return []
        fitting = [e.id for e in self._usable(kind) if self._fits(e, selection.lang_src, selection.lang_dst)]
        return _by_usage(fitting, self.store.usage(SLOT_OF_KIND[kind]))

    def handshake(self) -> dict[str, Any]:
        with self.store.transaction():  # one connection for its dozen small reads
            selection = self.store.selection()
            src, dst = self._languages()
            # The extension fills both its source and target menus from `Languages`: every language
            # a model reads or writes, most used first.
            every = src + [code for code in dst if code not in src]
            return {
                "version": EXTENSION_API_VERSION,
                "Languages": every,
                "Languages_src": src,
                "Languages_dst": dst,
                "Languages_hr": [languages.name_of(code) for code in every],
                "BOXModels": self._models("box", selection),
                "OCRModels": self._models("ocr", selection),
                "TSLModels": self._models("tsl", selection),
                "box_selected": selection.box_model,
                "ocr_selected": selection.ocr_model,
                "tsl_selected": selection.tsl_model,
                "lang_src": selection.lang_src,
                "lang_dst": selection.lang_dst,
            }

    # -- selection -----------------------------------------------------------------------------
    def set_lang(self, lang_src: str, lang_dst: str) -> None:
        src_offered, dst_offered = self._languages()
        languages.check_code(lang_src)
        languages.check_code(lang_dst)
        if lang_src not in src_offered:
            raise BadRequest(f"No installed model reads {languages.name_of(lang_src)} ({lang_src!r}).")
        if lang_dst not in dst_offered:
            raise BadRequest(f"No installed model translates to {languages.name_of(lang_dst)} ({lang_dst!r}).")
        current = self.store.selection()
        slots = {"lang_src": lang_src, "lang_dst": lang_dst}
        for kind, slot in SLOT_OF_KIND.items():
            model_id = getattr(current, slot)
            if model_id and (model_id not in self.registry.entries
                             or not self._fits(self.registry.get(model_id), lang_src, lang_dst)):
                slots[slot] = ""
                log.info("deselected %s model %s: it does not fit %s->%s", kind, model_id, lang_src, lang_dst)
        self.store.update_selection(**slots)

    def _check_selectable(
        self, kind: ModelKind, model_id: str, selection: Selection, disabled: frozenset[str]
    ) -> ModelEntry:
        entry = self.registry.get(model_id)
        if entry.kind != kind:
            raise BadRequest(f"Model {model_id!r} is a {entry.kind} model; it cannot be used as the {kind} model.")
        availability = self.registry.availability(model_id, disabled)
        if not availability.usable:
            raise BadRequest(f"Model {model_id!r} is not available: {availability.reason}.")
        languages_known = selection.lang_src and (entry.kind != "tsl" or selection.lang_dst)
        if languages_known and not self._fits(entry, selection.lang_src, selection.lang_dst):
            raise BadRequest(
                f"Model {model_id!r} does not support the selected languages "
                f"({selection.lang_src}->{selection.lang_dst}); choose one listed by the handshake.")
        return entry

    async def set_models(self, requested: dict[ModelKind, str | None]) -> None:
        chosen = {kind: model_id for kind, model_id in requested.items() if model_id}
        await self._io(self._check_all_selectable, chosen)
        # Load before answering, so the first image is not slow; a failure selects nothing.
        await asyncio.gather(*(self.stages.warm(kind, model_id) for kind, model_id in chosen.items()))
        await self._io(lambda: self.store.update_selection(
            **{SLOT_OF_KIND[kind]: model_id for kind, model_id in chosen.items()}))

    def start_with_defaults(self, defaults: Selection) -> None:
        """A new store (nothing selected) takes the config's default languages and models; each
        default that is not usable here is logged and left unselected for the reader to choose."""
        if self.store.selection() != Selection():
            return
        try:
            if defaults.lang_src and defaults.lang_dst:
                self.set_lang(defaults.lang_src, defaults.lang_dst)
            for kind, slot in SLOT_OF_KIND.items():
                if model_id := getattr(defaults, slot):
                    self._check_all_selectable({kind: model_id})
                    self.store.update_selection(**{slot: model_id})
        except BadRequest as exc:
            log.warning("the default selection was not applied in full: %s", exc.message)

    async def preload_selection(self) -> None:
        """Load the persisted selection's models (at start-up), so the first image after a restart
        is not slow; a model that cannot load is logged and left for `set_models` to explain."""
        selection, disabled = await self._io(self._selection_and_disabled)
        for kind, slot in SLOT_OF_KIND.items():
            model_id = getattr(selection, slot)
            if not model_id or not self.registry.availability(model_id, disabled).usable:
                continue
            try:
                await self.stages.warm(kind, model_id)
                log.info("preloaded the selected %s model %s", kind, model_id)
            except Exception as exc:  # start-up goes on; the reason is logged
                log.warning("could not preload the selected %s model %s: %s", kind, model_id, exc)

    def _selection_and_disabled(self) -> tuple[Selection, frozenset[str]]:
        with self.store.transaction():
            return self.store.selection(), self.store.disabled_families()

    def _check_all_selectable(self, chosen: dict[ModelKind, str]) -> None:
        selection, disabled = self._selection_and_disabled()
        for kind, model_id in chosen.items():
            self._check_selectable(kind, model_id, selection, disabled)

    # -- resolving a request ---------------------------------------------------------------------
    def _stage(self, model_id: str, given: dict[str, dict] | None, src: str) -> StageConfig:
        entry = self.registry.get(model_id)
        specs = entry.option_specs_for(src)
        values = options.resolve(specs, (given or {}).get(model_id))
        beams, tokens = values.get("num_beams", 1), values.get("max_new_tokens", 1)
        if beams * tokens > self.limits.max_beam_tokens:
            raise BadRequest(f"num_beams x max_new_tokens is {beams * tokens}, more than the server's limit of "
                             f"{self.limits.max_beam_tokens}: lower one of them.")
        return StageConfig(entry, values, options.cache_key(specs, values))

    def resolve_job(self, overrides: Overrides, given_options: dict | None, need_ocr: bool) -> Job:
        if given_options is not None and not isinstance(given_options, dict):
            raise BadRequest("'options' must be an object keyed by model id.")
        selection, disabled = self._selection_and_disabled()
        src = overrides.lang_src or selection.lang_src
        dst = overrides.lang_dst or selection.lang_dst
        if not src or not dst:
            raise LanguagesNotSet("Languages are not selected: choose the source and target languages first.")
        languages.check_code(src)
        languages.check_code(dst)
        models = {
            "box": overrides.box_model_id or selection.box_model,
            "ocr": overrides.ocr_model_id or selection.ocr_model,
            "tsl": overrides.tsl_model_id or selection.tsl_model,
        }
        for kind, model_id in models.items():
            chosen_here = model_id and model_id != getattr(selection, SLOT_OF_KIND[kind])
            if chosen_here and not overrides.any_model and model_id not in self.override_models:
                raise Unauthorized(f"Naming the {kind} model {model_id!r} per request needs the server's API token "
                                   f"(the selected one needs none; the operator may allow it with "
                                   f"security.override_models).")
        needed = ["box", "ocr", "tsl"] if need_ocr else ["tsl"]
        missing = [kind for kind in needed if not models[kind]]
        if missing:
            raise ModelsNotSet(f"No {'/'.join(missing)} model selected: choose the models first.")
        selection = Selection(lang_src=src, lang_dst=dst)
        stages = {}
        for kind in needed:
            self._check_selectable(kind, models[kind], selection, disabled)
            stages[kind] = self._stage(models[kind], given_options, src)
        return Job(src, dst, stages.get("box"), stages.get("ocr"), stages["tsl"])

    # -- translation -----------------------------------------------------------------------------
    async def _translations(self, job: Job, texts: list[str], force: bool) -> dict[str, str]:
        wanted = sorted({text for text in texts if text.strip()})
        tsl = job.tsl
        favor_manual = tsl.options["favor_manual"]
        found = {} if force else await self._io(
            self.store.find_translations, wanted, tsl.entry.id, job.src, job.dst, tsl.key, favor_manual)
        missing = [text for text in wanted if text not in found]
        if not force:
            self.observer.cache_lookup("tsl", len(wanted) - len(missing), len(missing))
        if missing:
            self._check_pieces(job, missing)
            async with self.observer.timed("tsl", tsl.entry.id, len(missing)):
                translated = await self.stages.translate(tsl.entry.id, missing, job.src, job.dst, tsl.options)
            fresh = dict(zip(missing, translated, strict=True))
            await self._io(self.store.save_translations, fresh, tsl.entry.id, job.src, job.dst, tsl.key, force)
            found.update(fresh)
            if force and favor_manual:
                manual = await self._io(self.store.find_translations, wanted, "manual", job.src, job.dst, "", True)
                found.update(manual)
        return {text: found.get(text, "") for text in texts}

    def _check_pieces(self, job: Job, texts: list[str]) -> None:
        """Refuse, before any model runs, a text the options would split into too many pieces."""
        settings, separator = PreProcessing.of(job.tsl.options, job.src), languages.word_separator(job.src)
        for text in texts:
            pieces = len(pre_tokenize(text, settings, separator))
            if pieces > self.limits.max_pieces_per_text:
                raise PayloadTooLarge(f"A text splits into {pieces} pieces to translate, more than the server's "
                                      f"limit of {self.limits.max_pieces_per_text}: use fewer break_chars.")

    async def run_tsl(self, text: str, overrides: Overrides, given_options: dict | None) -> str:
        if len(text) > self.limits.max_text_chars:
            raise BadRequest(f"'text' is longer than the limit of {self.limits.max_text_chars} characters.")
        job = await self._io(self.resolve_job, overrides, given_options, False)
        return (await self._translations(job, [text], force=False))[text]

    # -- OCR + translation -----------------------------------------------------------------------
    def _lazy(self, overrides: Overrides, given_options: dict | None, md5: str | None, force: bool) -> list[dict]:
        """The md5-only call: the stored result or 406, in one thread hop and one transaction,
        since the extension sends it first for every image on a page."""
        with self.store.transaction():
            job = self.resolve_job(overrides, given_options, True)
            _check_md5_format(md5)
            if force:
                raise BadRequest("'force' needs 'contents': send the image to run OCR again.")
            if md5 is None:
                raise BadRequest("Send 'contents' (the image in base64) or the 'md5' of a known image.")
            result = self._stored_result(job, md5.lower())
        self.observer.cache_lookup("lazy", int(result is not None), int(result is None))
        if result is not None:
            self.retention.used(md5.lower())
        else:
            raise NotAcceptable("No stored result for this image with these languages, models and options: "
                                "send the image in 'contents'.")
        return result

    def _stored_result(self, job: Job, md5: str) -> list[dict] | None:
        stored = self.store.find_blocks(md5, job.box.entry.id, job.src, job.box.key)
        if stored is None:
            return None
        texts = self.store.find_ocr([s.id for s in stored], job.ocr.entry.id, job.src, job.ocr.key)
        if len(texts) < len(stored):
            return None
        ordered = [texts[s.id] for s in stored]
        wanted = [text for text in ordered if text.strip()]
        found = self.store.find_translations(
            wanted, job.tsl.entry.id, job.src, job.dst, job.tsl.key, job.tsl.options["favor_manual"])
        if any(text not in found for text in wanted):
            return None
        return [_result(s, text, found.get(text, "")) for s, text in zip(stored, ordered, strict=True)]

    async def _read(self, job: Job, image: np.ndarray, blocks: list[Block]) -> list[str]:
        """The OCR model's text of each block (line by line for line readers, joined in reading order)."""
        ocr = job.ocr
        if ocr.entry.reads == "line":
            crops = [crop(image, box) for block in blocks for box in block.singles]
        else:
            crops = [crop(image, block.box) for block in blocks]
        async with self.observer.timed("ocr", ocr.entry.id, len(crops)):
            pieces = iter(await self.stages.read(ocr.entry.id, crops, job.src, ocr.options))
        if ocr.entry.reads == "line":
            separator = languages.word_separator(job.src)
            return [join_lines([[next(pieces) for _ in line] for line in block.lines], separator) for block in blocks]
        return [next(pieces).strip() for _ in blocks]

    async def _ocr(self, job: Job, image: np.ndarray, stored: list[StoredBlock]) -> list[str]:
        ocr = job.ocr
        known = await self._io(self.store.find_ocr, [s.id for s in stored], ocr.entry.id, job.src, ocr.key)
        todo = [s for s in stored if s.id not in known]
        self.observer.cache_lookup("ocr", len(known), len(todo))
        if todo:
            fresh = dict(zip([s.id for s in todo], await self._read(job, image, [s.block for s in todo]),
                             strict=True))
            await self._io(self.store.save_ocr, fresh, ocr.entry.id, job.src, ocr.key)
            known.update(fresh)
        return [known[s.id] for s in stored]

    async def _detect(self, job: Job, image: np.ndarray) -> list[Block]:
        box = job.box
        async with self.observer.timed("box", box.entry.id, 1):
            blocks = await self.stages.detect(box.entry.id, image, job.src, box.options)
        if len(blocks) > self.limits.max_blocks_per_image:
            raise PayloadTooLarge(f"The image has {len(blocks)} text blocks, more than the server's limit of "
                                  f"{self.limits.max_blocks_per_image}: send a smaller part of it.")
        lines = sum(len(block.singles) for block in blocks)
        if lines > self.limits.max_lines_per_image:
            raise PayloadTooLarge(f"The image has {lines} lines of text, more than the server's limit of "
                                  f"{self.limits.max_lines_per_image}: send a smaller part of it.")
        return blocks

    async def _work(self, job: Job, md5: str, image: np.ndarray, force: bool) -> list[dict]:
        if force:
            return await self._forced_work(job, md5, image)
        box = job.box
        stored = await self._io(self.store.find_blocks, md5, box.entry.id, job.src, box.key)
        self.observer.cache_lookup("box", int(stored is not None), int(stored is None))
        if stored is None:
            blocks = await self._detect(job, image)
            stored = await self._io(self.store.save_blocks, md5, box.entry.id, job.src, box.key, blocks)
        texts = await self._ocr(job, image, stored)
        translations = await self._translations(job, texts, force=False)
        return [_result(s, text, translations[text]) for s, text in zip(stored, texts, strict=True)]

    async def _forced_work(self, job: Job, md5: str, image: np.ndarray) -> list[dict]:
        """Every stage again; the stored run is replaced in one transaction once the new one is
        complete, so concurrent requests see the old run or the new, never a missing one."""
        blocks = await self._detect(job, image)
        texts = await self._read(job, image, blocks)
        translations = await self._translations(job, texts, force=True)
        stored = await self._io(self.store.replace_run, md5, job.src, (job.box.entry.id, job.box.key),
                                (job.ocr.entry.id, job.ocr.key), blocks, texts)
        return [_result(s, text, translations[text]) for s, text in zip(stored, texts, strict=True)]

    async def run_ocrtsl(
        self, *, contents: str | None, md5: str | None, force: bool, given_options: dict | None,
        overrides: Overrides,
    ) -> list[dict]:
        if contents is None:
            return await self._io(self._lazy, overrides, given_options, md5, force)
        job = await self._io(self.resolve_job, overrides, given_options, True)
        _check_md5_format(md5)
        async with self._decodes, self.observer.timed("decode", "", 1):
            actual, image = await self._io(self._decoded, contents, md5)
        self.retention.used(actual)
        return await self.coalescer.once((actual, job.identity, force), lambda: self._work(job, actual, image, force),
                                         lambda: self._stored_result_now(job, actual))

    def _decoded(self, contents: str, md5: str | None) -> tuple[str, np.ndarray]:
        """The md5 the extension would give the image, checked against the one sent, and its pixels:
        megabytes of work, done beside the event loop by at most `max_concurrent_decodes` at once."""
        actual = hashlib.md5(contents.encode("utf-8")).hexdigest()
        if md5 is not None and md5.lower() != actual:
            raise BadRequest(f"'md5' does not match 'contents' (md5 of the base64 string is {actual}).")
        return actual, decode_image(contents, self.limits.max_image_pixels)

    def _stored_result_now(self, job: Job, md5: str) -> list[dict] | None:
        with self.store.transaction():
            return self._stored_result(job, md5)

    # -- stored translations -----------------------------------------------------------------------
    def _languages_set(self) -> Selection:
        selection = self.store.selection()
        if not selection.lang_src or not selection.lang_dst:
            raise LanguagesNotSet("Languages are not selected: choose the source and target languages first.")
        return selection

    def get_translations(self, text: str) -> list[dict[str, str]]:
        selection = self._languages_set()
        found = self.store.translations_of(text, selection.lang_src, selection.lang_dst)
        if found is None:
            raise NotFound("This text was never OCR'd or translated here.")
        return [{"text": translation, "model": model} for model, translation in found]

    def set_manual_translation(self, text: str, translation: str) -> None:
        selection = self._languages_set()
        if not self.store.knows_text(text):
            raise NotFound("This text was never OCR'd or translated here, so it has no translation to replace.")
        self.store.set_manual_translation(text, selection.lang_src, selection.lang_dst, translation)

    # -- options and plugins ---------------------------------------------------------------------
    def active_options(self) -> dict[str, dict]:
        selection = self.store.selection()
        result = {}
        for slot in SLOT_OF_KIND.values():
            model_id = getattr(selection, slot)
            entry = self.registry.entries.get(model_id)
            result[slot] = options.describe(entry.option_specs_for(selection.lang_src)) if entry else {}
        return result

    def plugin_data(self) -> dict[str, dict]:
        disabled = self.store.disabled_families()
        data = {}
        for name, family in self.registry.families.items():
            probe = self.registry.probes[name]
            data[name] = {
                "name": name,
                "version": probe.version,
                "description": family.description,
                "homepage": family.homepage,
                "warning": family.warning or probe.problem,
                "installed": probe.ok and name not in disabled,
            }
        return data

    def models_status(self) -> dict[str, Any]:
        """The selection, and every model with whether it can be used and why not."""
        selection, disabled = self._selection_and_disabled()
        models = {}
        for model_id, entry in sorted(self.registry.entries.items()):
            availability = self.registry.availability(model_id, disabled)
            models[model_id] = {"kind": entry.kind, "backend": entry.backend, "usable": availability.usable,
                                "reason": availability.reason}
        return {"selection": dataclasses.asdict(selection), "models": models}

    def manage_plugins(self, plugins: dict[str, bool]) -> None:
        families = self.registry.families
        for name, enable in plugins.items():
            if name not in families:
                raise BadRequest(f"Unknown plugin {name!r}; get_plugin_data lists them.")
            if not isinstance(enable, bool):
                raise BadRequest(f"Plugin {name!r} must be set to true or false.")
            problem = self.registry.probes[name].problem
            if enable and problem:
                raise BadRequest(
                    f"Plugin {name!r} is not installed and this server never installs software: "
                    f"add it to the server's image or environment ({families[name].install_hint}). {problem}")
        disabled = set(self.store.disabled_families())
        disabled |= {name for name, enable in plugins.items() if not enable}
        disabled -= {name for name, enable in plugins.items() if enable}
        self.store.set_disabled_families(disabled)
        selection = self.store.selection()
        cleared = {
            slot: "" for slot in SLOT_OF_KIND.values()
            if getattr(selection, slot) in self.registry.entries
            and self.registry.entries[getattr(selection, slot)].backend in disabled
        }
        if cleared:
            self.store.update_selection(**cleared)


def _check_md5_format(md5: str | None) -> None:
    if md5 is not None and not _MD5.match(md5):
        raise BadRequest("'md5' must be the 32 hex digits of the md5 of the base64 'contents'.")


def _result(stored: StoredBlock, text: str, translation: str) -> dict:
    return {"ocr": text, "tsl": translation, "box": list(stored.block.box)}
