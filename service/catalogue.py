"""The catalogue: the languages and models this server offers, the reader's selection of them,
their options, the plugins and every model's state. What the handshake and the settings endpoints
answer; the pipeline asks it whether a request's models may be used.
"""

import asyncio
import logging
from typing import Protocol

from core import languages, options
from core.answers import (
    ActiveOptions,
    DownloadInfo,
    Handshake,
    ModelInfo,
    OptionDescription,
    PluginData,
    PluginInfo,
)
from core.errors import BadRequest, Forbidden, ModelsNotSet, ServeError
from core.settings import ProfileSettings
from core.slots import KINDS, NO_CHOICE, ModelKind, ModelSlots
from models_registry import ANY_LANGUAGE, ModelEntry, Registry
from models_registry.hub_downloads import Download, DownloadRules, HubDownloads

from .off_loop import in_thread, off_the_loop
from .stages import ModelStages
from .store import DEFAULT_PROFILE, Selection, Store

log = logging.getLogger(__name__)


def _by_usage(names, usage: dict[str, int]) -> list[str]:
    return sorted(set(names), key=lambda name: (-usage.get(name, 0), name))


class Downloads(Protocol):
    """Background downloads of missing weights (`models_registry.hub_downloads.HubDownloads`, in
    production through the application's actor: `deployments/model_downloads.py`)."""

    def start(self, repo: str, revision: str | None = None, rules: DownloadRules | None = None) -> Download: ...

    def state(self, repo: str) -> Download | None: ...

    def states(self) -> dict[str, Download]: ...


def download_message(model_id: str, download: Download) -> str:
    """What a request that needs the model is told while it cannot be used yet."""
    if download.state == "failed":
        return (f"The download of model {model_id!r} failed: {download.error}. Select it again (set_models) "
                f"to retry; GET /status shows the downloads.")
    if download.state == "done":
        return (f"Model {model_id!r} was downloaded into a Hugging Face cache this server does not see: share "
                f"HF_HOME between its machines, or put the weights in a models folder.")
    return (f"Model {model_id!r} is downloading ({download.describe()}) from the Hugging Face hub; it is used once "
            f"the download is complete (GET /status shows the progress).")


def _same_languages(kind: ModelKind, before: Selection, wanted: Selection) -> bool:
    """Whether the slot's languages stay: the source for a box or OCR model, the pair for a translator."""
    return before.lang_src == wanted.lang_src and (kind != "tsl" or before.lang_dst == wanted.lang_dst)


def fits(entry: ModelEntry, src: str, dst: str) -> bool:
    """Whether the model serves the language pair (a reader of the source, a translator of the pair)."""
    return entry.translates(src, dst) if entry.kind == "tsl" else entry.reads_language(src)


class Catalogue:
    def __init__(self, store: Store, registry: Registry, stages: ModelStages, downloads: Downloads | None = None,
                 profiles: ProfileSettings | None = None):
        self.store = store
        self.registry = registry
        self.stages = stages
        self.downloads = downloads or HubDownloads()
        self.profiles = profiles or ProfileSettings()

    # -- languages and models on offer ---------------------------------------------------------
    def _usable(self, kind: ModelKind) -> list[ModelEntry]:
        return self.registry.usable(kind, self.store.disabled_families())

    def _languages(self) -> tuple[list[str], list[str]]:
        """The source languages that a usable box model and a usable OCR model read (`auto` first where they
        read several at once), and the languages a usable translator writes from one of them (`original`:
        each source itself); most used first. Usable: installed, or downloadable where downloads are on."""
        boxes, readers, translators = (self._usable(kind) for kind in KINDS)
        src = {code for entry in readers for code in entry.languages
               if code != ANY_LANGUAGE and any(box.reads_language(code) for box in boxes)}
        dst: set[str] = set()
        for entry in translators:
            if ANY_LANGUAGE in entry.languages or src & set(entry.languages):
                dst |= src if ANY_LANGUAGE in entry.languages_dst else set(entry.languages_dst)
        detect = [languages.AUTO] if self._detects([*boxes, *readers]) else []  # first, as menus put it
        return (detect + _by_usage(src, self.store.usage("lang_src")), _by_usage(dst, self.store.usage("lang_dst")))

    @staticmethod
    def _detects(entries: list[ModelEntry]) -> bool:
        """Whether a source language can be detected: a box model and an OCR model read any language."""
        return all(any(entry.kind == kind and entry.reads_language(languages.AUTO) for entry in entries)
                   for kind in ("box", "ocr"))

    def _models(self, kind: ModelKind, selection: Selection, profile: int) -> list[str]:
        """The models of a kind the profile may select for its languages."""
        if not selection.lang_src or (kind == "tsl" and not selection.lang_dst):
            return []
        fitting = [e.id for e in self._usable(kind) if fits(e, selection.lang_src, selection.lang_dst)
                   and self._profile_refusal(e, profile) is None]
        return _by_usage(fitting, self.store.usage(kind))

    def _profile_refusal(self, entry: ModelEntry, profile: int) -> ServeError | None:
        """Why a reader profile may not select the model (None: it may), by the operator's bounds
        (`profiles.*`): only the models listed in `allowed_models`, or when it lists none every model
        that runs on this server (one that calls a server per request is metered, often paid); a
        download from the hub only with `hub_downloads`. The default profile keeps its own rules."""
        if profile == DEFAULT_PROFILE:
            return None
        allowed = self.profiles.allowed_models
        if allowed is not None and entry.id not in allowed:
            return Forbidden(f"Model {entry.id!r} is not among the models reader profiles may select here: the "
                             f"operator allows others in profiles.allowed_models (the handshake lists them).")
        if allowed is None and self.registry.calls_a_server(entry):
            return Forbidden(f"Model {entry.id!r} calls a server per request (metered): a reader profile may select "
                             f"it only when the operator lists it in profiles.allowed_models.")
        if (not self.profiles.hub_downloads and self.registry.availability(entry.id).download is not None
                and not self._arrived(entry.id)):
            return BadRequest(f"Model {entry.id!r} is not available: its weights are not on this server, and a "
                              f"reader profile may not start their download (the operator allows it with "
                              f"profiles.hub_downloads).")
        return None

    @off_the_loop
    def handshake(self, profile: int = DEFAULT_PROFILE) -> Handshake:
        with self.store.transaction():  # one connection for its dozen small reads
            selection = self.store.selection(profile)
            src, dst = self._languages()
            offered = ModelSlots.by_kind(lambda kind: self._models(kind, selection, profile))
            return Handshake.of(src, dst, offered, selection.models, selection.lang_src, selection.lang_dst,
                                self._selection_note(selection, offered.tsl))

    def _selection_note(self, selection: Selection, offered: list[str]) -> str:
        """Why the selected translator only shows the text as read, where no translator `set_lang` would pick
        translates the pair (the reader sees text in the source language, and is told why)."""
        src, dst, tsl = selection.lang_src, selection.lang_dst, selection.models.tsl
        translators = self._default_translators(self.store.disabled_families())
        if (not self._passes_through(tsl) or src in (dst, languages.AUTO)
                or any(entry.translates(src, dst) for entry in translators)):
            return ""
        others = [model_id for model_id in offered if not self._passes_through(model_id)]
        return (f"No translation model installed here translates {languages.name_of(src)} into "
                f"{languages.name_of(dst)}: {tsl!r} shows the text as read."
                + (f" Selecting {others[0]!r} (TSLModels) translates it." if others else ""))

    # -- selection -----------------------------------------------------------------------------
    @off_the_loop
    def set_lang(self, lang_src: str, lang_dst: str, profile: int = DEFAULT_PROFILE) -> None:
        self._set_lang(lang_src, lang_dst, profile)

    def _set_lang(self, lang_src: str, lang_dst: str, profile: int) -> None:
        src_offered, dst_offered = self._languages()
        languages.check_source(lang_src)
        if lang_dst == languages.AUTO:
            raise BadRequest("'auto' detects the source language; choose the language to translate to.")
        languages.check_code(lang_dst)
        if lang_src == languages.AUTO and lang_src not in src_offered:
            raise BadRequest("Detecting the source language needs an OCR model that reads several languages at "
                             "once (such as tesseract/jpn+eng+spa): none is installed.")
        if lang_src not in src_offered:
            raise BadRequest(f"No installed model reads {languages.name_of(lang_src)} ({lang_src!r}).")
        if lang_dst not in dst_offered:
            raise BadRequest(f"No installed model translates to {languages.name_of(lang_dst)} ({lang_dst!r}).")
        wanted = Selection(lang_src, lang_dst)
        models = self._models_for(wanted, self.store.selection(profile), profile)
        log.info("selected for %s->%s: %s", lang_src, lang_dst, models)
        with self.store.transaction():
            self.store.update_selection(lang_src, lang_dst, profile=profile)
            self.store.update_selection(models=models, profile=profile, counted=False)

    def _models_for(self, wanted: Selection, before: Selection, profile: int) -> ModelSlots[str]:
        """What `set_lang` selects for the new languages, per slot: the model selected before where the slot's
        languages did not change (a translator also wherever it still translates the pair, unless it only shows
        the text as read); else the reader's own earlier choice for these languages (`set_models`); else the
        registry's default. A reader who chose nothing for a language reads at once, never a 513."""
        disabled = self.store.disabled_families()
        own = self.store.own_choices(wanted.lang_src, wanted.lang_dst, profile)

        def kept(kind: ModelKind) -> str:
            current = before.models.get(kind)
            stays = _same_languages(kind, before, wanted) or (kind == "tsl" and not self._passes_through(current))
            candidates = ([current] if stays else []) + [own.get(kind)]
            return next((model_id for model_id in candidates
                         if self._may_select(kind, model_id, wanted, disabled, profile)), "")

        chosen = ModelSlots.by_kind(kept)
        if all(model_id for _, model_id in chosen):
            return chosen
        return chosen.or_(self._defaults(wanted, disabled, profile))

    def _defaults(self, wanted: Selection, disabled: frozenset[str], profile: int) -> ModelSlots[str]:
        """The registry's models for the languages: the first box + OCR pair of `reading_defaults.yaml`'s
        order (or its rule) that the profile may use here, one whose weights are here before one still to
        download; and the default translator."""
        pairs = [pair for pair in self.registry.reading_pairs(wanted.lang_src)
                 if all(self._may_select(kind, model_id, wanted, disabled, profile)
                        for kind, model_id in zip(("box", "ocr"), pair, strict=True))]
        box, ocr = min(pairs, key=lambda pair: any(map(self._to_download, pair)), default=("", ""))
        return ModelSlots(box, ocr, self._default_translator(wanted, disabled, profile))

    def _default_translator(self, wanted: Selection, disabled: frozenset[str], profile: int) -> str:
        """The first translator of the pair, in the registry's order, whose weights are here and that calls no
        server per request; else a pass-through (`original`: the text as read, which the handshake says).
        Never a download or a metered call the reader did not ask for."""
        passing = [entry for entry in self.registry.usable("tsl", disabled) if self._passes_through(entry.id)]
        return next((entry.id for entry in [*self._default_translators(disabled), *passing]
                     if self._may_select("tsl", entry.id, wanted, disabled, profile)), "")

    def _default_translators(self, disabled: frozenset[str]) -> list[ModelEntry]:
        """The translators `set_lang` may pick by itself: usable at once and free to call."""
        return [entry for entry in self._ready_translators(disabled) if not self.registry.calls_a_server(entry)]

    def _may_select(self, kind: ModelKind, model_id: str, selection: Selection, disabled: frozenset[str],
                    profile: int) -> bool:
        """Whether `check_selectable` lets the profile use the model for the languages."""
        if not model_id:
            return False
        try:
            self.check_selectable(kind, model_id, selection, disabled, profile)
        except ServeError:
            return False
        return True

    def _passes_through(self, model_id: str) -> bool:
        entry = self.registry.entries.get(model_id)
        return entry is not None and self.registry.backend_class(entry).passes_through

    def _to_download(self, model_id: str) -> bool:
        return self.registry.availability(model_id).download is not None

    def _ready_translators(self, disabled: frozenset[str]) -> list[ModelEntry]:
        """The translators usable at once, in the registry's order: weights here, and they change the text."""
        return [entry for entry in self.registry.usable("tsl", disabled)
                if not self._to_download(entry.id) and not self._passes_through(entry.id)]

    def translators_for_detection(self, chosen: str, dst: str, ocr: ModelEntry | None,
                                  disabled: frozenset[str], allowed: frozenset[str] | None = None,
                                  ) -> dict[str, str | None]:
        """Per language the OCR model reads (every language a model here reads when there is no OCR),
        the translation model into `dst`: the chosen one where it translates that language, else the
        first in the registry's order whose weights are here and that the client may name (`allowed`;
        None: any). A language only models the client may not name translate maps to None: it is
        still detected (so that its text is not taken for another language) and shown as read. A
        pass-through is never routed to: a text without a translator is shown as read anyway."""
        others = self._ready_translators(disabled)
        if ocr is None or ANY_LANGUAGE in ocr.languages:
            read = sorted({code for entry in self.registry.entries.values() for code in entry.languages}
                          - {ANY_LANGUAGE})
        else:
            read = ocr.languages
        chosen_entry = self.registry.get(chosen)
        translators: dict[str, str | None] = {}
        for code in read:
            if code == dst:  # shown as read
                continue
            found = [entry for entry in [chosen_entry, *others] if entry.translates(code, dst)]
            if found:
                permitted = [entry.id for entry in found
                             if entry is chosen_entry or allowed is None or entry.id in allowed]
                translators[code] = permitted[0] if permitted else None
        return translators

    def check_selectable(
        self, kind: ModelKind, model_id: str, selection: Selection, disabled: frozenset[str],
        profile: int = DEFAULT_PROFILE,
    ) -> ModelEntry:
        """The model's entry, if the profile may use it for the languages; else why not. Asked when a
        model is selected and again by every request, so that the operator's narrower bounds hold at once."""
        entry = self.registry.get(model_id)
        if entry.kind != kind:
            raise BadRequest(f"Model {model_id!r} is a {entry.kind} model; it cannot be used as the {kind} model.")
        availability = self.registry.availability(model_id, disabled)
        if not availability.usable:
            raise BadRequest(f"Model {model_id!r} is not available: {availability.reason}.")
        languages_known = selection.lang_src and (entry.kind != "tsl" or selection.lang_dst)
        if languages_known and not fits(entry, selection.lang_src, selection.lang_dst):
            raise BadRequest(
                f"Model {model_id!r} does not support the selected languages "
                f"({selection.lang_src}->{selection.lang_dst}); choose one listed by the handshake.")
        if refusal := self._profile_refusal(entry, profile):
            raise refusal
        return entry

    async def set_models(self, requested: ModelSlots[str | None], profile: int = DEFAULT_PROFILE) -> str | None:
        """Select the models named (an empty name keeps the slot's); None when they are loaded, else a message
        saying which ones are downloading (selected too, and used once their download is complete)."""
        chosen = {kind: model_id for kind in KINDS if (model_id := requested.get(kind))}
        await in_thread(self._check_all_selectable, chosen, profile)
        downloading = await in_thread(self._start_downloads, list(chosen.values()))
        # Load before answering, so the first image is not slow; a failure selects nothing.
        await asyncio.gather(*(self.stages.warm(kind, model_id) for kind, model_id in chosen.items()
                               if model_id not in downloading))
        await in_thread(self.store.choose_models, ModelSlots.by_kind(chosen.get), profile)
        if not downloading:
            return None
        return " ".join(["Selected."] + [download_message(model_id, download)
                                         for model_id, download in downloading.items()])

    # -- weights downloaded on demand ---------------------------------------------------------------
    def _start_downloads(self, model_ids: list[str]) -> dict[str, Download]:
        """Start (or retry) the downloads of the models whose weights are not here yet; those still to come."""
        downloading = {}
        for model_id in model_ids:
            repo = self.registry.availability(model_id).download
            if repo is None:
                continue
            download = self._start_download(model_id, repo)
            if download.state == "done" and self._arrived(model_id):
                continue
            log.info("model %s is not here yet: %s", model_id, download_message(model_id, download))
            downloading[model_id] = download
        return downloading

    def _start_download(self, model_id: str, repo: str) -> Download:
        """The download of the entry's commit, under the configuration's rules (size, free disk, pinning)."""
        revision = self.registry.get(model_id).weights.revision
        return self.downloads.start(repo, revision, DownloadRules.of(self.registry.weights))

    def _arrived(self, model_id: str) -> bool:
        """Whether the model's weights are complete where this process looks for them."""
        return self.registry.recheck(model_id).download is None

    def check_downloaded(self, model_id: str) -> None:
        """Raise 513 with the reason while the model's weights are downloading or failed to download;
        a selected model whose download is unknown here (the server restarted) has it started."""
        repo = self.registry.availability(model_id).download
        if repo is None:
            return
        download = self.downloads.state(repo) or self._start_download(model_id, repo)
        if download.state == "done" and self._arrived(model_id):
            return
        raise ModelsNotSet(download_message(model_id, download))

    @off_the_loop
    def downloads_status(self) -> dict[str, DownloadInfo]:
        """Per model id, the downloads of its weights this application started (`GET /status`)."""
        states = self.downloads.states()
        return {model_id: DownloadInfo(repo=entry.weights.repo, state=download.state, bytes=download.bytes_done,
                                       total_bytes=download.bytes_total, percent=download.percent,
                                       error=download.error)
                for model_id, entry in sorted(self.registry.entries.items())
                if (download := states.get(entry.weights.repo or "")) is not None}

    def start_with_defaults(self, defaults: Selection, profile: int = DEFAULT_PROFILE) -> None:
        """A profile with nothing selected (a new store's default one) takes the config's default languages
        and models; a default model that is not usable here is logged, and `set_lang`'s choice for the
        languages stays in its slot."""
        if self.store.selection(profile) != Selection():
            return
        try:
            if defaults.lang_src and defaults.lang_dst:
                self._set_lang(defaults.lang_src, defaults.lang_dst, profile)
            for kind, model_id in defaults.models:
                if model_id:
                    self._check_all_selectable({kind: model_id}, profile)
                    self.store.update_selection(models=NO_CHOICE.with_(kind, model_id), profile=profile)
        except BadRequest as exc:
            log.warning("the default selection was not applied in full: %s", exc.message)

    async def preload_selection(self) -> None:
        """Load the persisted selection's models (at start-up), so the first image after a restart
        is not slow; a model that cannot load is logged and left for `set_models` to explain."""
        selection, disabled = await in_thread(self.selection_and_disabled)
        for kind, model_id in selection.models:
            if not model_id or not self.registry.availability(model_id, disabled).usable:
                continue
            try:
                if await in_thread(self._start_downloads, [model_id]):
                    continue  # its download goes on; the first request after it completes loads it
                await self.stages.warm(kind, model_id)
                log.info("preloaded the selected %s model %s", kind, model_id)
            except Exception as exc:  # start-up goes on; the reason is logged
                log.warning("could not preload the selected %s model %s: %s", kind, model_id, exc)

    def selection_and_disabled(self, profile: int = DEFAULT_PROFILE) -> tuple[Selection, frozenset[str]]:
        with self.store.transaction():
            return self.store.selection(profile), self.store.disabled_families()

    def _check_all_selectable(self, chosen: dict[ModelKind, str], profile: int) -> None:
        selection, disabled = self.selection_and_disabled(profile)
        for kind, model_id in chosen.items():
            self.check_selectable(kind, model_id, selection, disabled, profile)

    # -- options and plugins ---------------------------------------------------------------------
    @off_the_loop
    def active_options(self, profile: int = DEFAULT_PROFILE) -> ActiveOptions:
        selection = self.store.selection(profile)

        def described(model_id: str) -> dict[str, OptionDescription]:
            entry = self.registry.entries.get(model_id)
            return options.describe(entry.option_specs_for(selection.lang_src)) if entry else {}

        return ActiveOptions.of(selection.models.map(described))

    @off_the_loop
    def plugin_data(self) -> PluginData:
        disabled = self.store.disabled_families()
        return PluginData({
            name: PluginInfo(name=name, version=self.registry.probes[name].version, description=family.description,
                             homepage=family.homepage, warning=family.warning or self.registry.probes[name].problem,
                             installed=self.registry.probes[name].ok and name not in disabled)
            for name, family in self.registry.families.items()})

    @off_the_loop
    def models_status(self) -> tuple[Selection, dict[str, ModelInfo]]:
        """The selection, and every model with whether it can be used and why not."""
        selection, disabled = self.selection_and_disabled()
        models = {}
        for model_id, entry in sorted(self.registry.entries.items()):
            availability = self.registry.availability(model_id, disabled)
            models[model_id] = ModelInfo(kind=entry.kind, backend=entry.backend, usable=availability.usable,
                                         reason=availability.reason)
        return selection, models

    @off_the_loop
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
        cleared = NO_CHOICE
        for kind, model_id in self.store.selection().models:
            if model_id in self.registry.entries and self.registry.entries[model_id].backend in disabled:
                cleared = cleared.with_(kind, "")
        if cleared != NO_CHOICE:
            self.store.update_selection(models=cleared)
