"""The work of `run_ocrtsl` and `run_tsl`, top to bottom: a request becomes a job (languages, models,
options: `jobs.py`), its image is decoded once, and each stage runs only for what the store does not hold yet
(boxes, then OCR, then translations), identical work in flight shared (`coalescing.py`).

Model stages arrive as an injected `ModelStages` (Serve handles in production, plain objects in unit
tests). Store calls are synchronous SQLAlchemy and run in worker threads (`off_loop.py`).
"""

import asyncio
import hashlib
import re

import numpy as np

from core import languages
from core.answers import TextBlock
from core.boxes import Block
from core.errors import (
    BadRequest,
    Forbidden,
    NotAcceptable,
    PayloadTooLarge,
)
from core.imaging import decode_image
from core.scripts import AnsweredBlock, as_answered
from core.settings import Limits, RetentionSettings, SecuritySettings
from core.text import PreProcessing, pre_tokenize
from inference.reading import block_texts, by_orientation, crops_for, in_block_order

from .catalogue import Catalogue
from .coalescing import Coalescer
from .jobs import Job, Jobs, Overrides, Route, StageConfig
from .observe import Observer
from .off_loop import in_thread
from .retention import Retention
from .stages import ModelStages
from .store import Store, StoredBlock

_MD5 = re.compile(r"^[0-9a-fA-F]{32}$")


class Pipeline:
    def __init__(self, store: Store, catalogue: Catalogue, stages: ModelStages, limits: Limits,
                 observer: Observer | None = None, security: SecuritySettings | None = None,
                 retention: RetentionSettings | None = None, coalesce_across_replicas: bool = True):
        self.store = store
        self.stages = stages
        self.limits = limits
        self.observer = observer or Observer()
        self.coalescer = Coalescer(store, across_replicas=coalesce_across_replicas)
        self.retention = Retention(store, retention or RetentionSettings())
        self.jobs = Jobs(store, catalogue, limits, security)
        self._decodes = asyncio.Semaphore(limits.max_concurrent_decodes)

    # -- OCR + translation, top to bottom ------------------------------------------------
    async def run_ocrtsl(
        self, *, contents: str | None, md5: str | None, force: bool, given_options: dict | None,
        overrides: Overrides,
    ) -> list[TextBlock]:
        if contents is None:
            return await in_thread(self._lazy, overrides, given_options, md5, force)
        job = await in_thread(self.jobs.resolve, overrides, given_options, True)
        _check_md5_format(md5)
        async with self._decodes, self.observer.timed("decode", "", 1):
            actual, image = await in_thread(self._decoded, contents, md5)
        self.retention.used(actual)
        return await self.coalescer.once((actual, job.identity, force), lambda: self._work(job, actual, image, force),
                                         lambda: self._stored_result_now(job, actual))

    def _lazy(self, overrides: Overrides, given_options: dict | None, md5: str | None, force: bool) -> list[TextBlock]:
        """The md5-only call: the stored result or 406, in one thread hop and one transaction,
        since the extension sends it first for every image on a page."""
        with self.store.transaction():
            job = self.jobs.resolve(overrides, given_options, True)
            _check_md5_format(md5)
            if force:
                raise BadRequest("'force' needs 'contents': send the image to run OCR again.")
            if md5 is None:
                raise BadRequest("Send 'contents' (the image in base64) or the 'md5' of a known image.")
            result = stored_result(self.store, job, md5.lower())
        self.observer.cache_lookup("lazy", int(result is not None), int(result is None))
        if result is not None:
            self.retention.used(md5.lower())
        else:
            raise NotAcceptable("No stored result for this image with these languages, models and options: "
                                "send the image in 'contents'.")
        return result

    def _decoded(self, contents: str, md5: str | None) -> tuple[str, np.ndarray]:
        """The md5 the extension would give the image, checked against the one sent, and its pixels:
        megabytes of work, done beside the event loop by at most `max_concurrent_decodes` at once."""
        actual = hashlib.md5(contents.encode("utf-8")).hexdigest()
        if md5 is not None and md5.lower() != actual:
            raise BadRequest(f"'md5' does not match 'contents' (md5 of the base64 string is {actual}).")
        return actual, decode_image(contents, self.limits.max_image_pixels)

    async def _work(self, job: Job, md5: str, image: np.ndarray, force: bool) -> list[TextBlock]:
        if force:
            return await self._forced_work(job, md5, image)
        stored = await in_thread(self.store.find_blocks, md5, job.box_key)
        self.observer.cache_lookup("box", int(stored is not None), int(stored is None))
        if stored is None:
            stored = await self.coalescer.once(("box", md5, job.box_key), lambda: self._detected(job, md5, image),
                                               lambda: self.store.find_blocks(md5, job.box_key))
        answered = as_answered([s.block for s in stored], await self._ocr(job, image, stored))
        translated, found_in = await self._translations(job, [a.text for a in answered], force=False)
        return [_result(job, a, translated, found_in) for a in answered]

    async def _detected(self, job: Job, md5: str, image: np.ndarray) -> list[StoredBlock]:
        """A new detection run, stored. Coalesced on its own key, not the request's: jobs that differ only
        after it (another destination, another profile's manual translations) run it once between them."""
        return await in_thread(self.store.save_blocks, md5, job.box_key, await self._detect(job, image))

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

    async def _ocr(self, job: Job, image: np.ndarray, stored: list[StoredBlock]) -> list[str]:
        known = await in_thread(self.store.find_ocr, [s.id for s in stored], job.ocr_key)
        todo = [s for s in stored if s.id not in known]
        self.observer.cache_lookup("ocr", len(known), len(todo))
        if todo:
            ids = tuple(s.id for s in todo)
            known.update(await self.coalescer.once(
                ("ocr", ids, job.ocr_key), lambda: self._read_and_save(job, image, todo),
                lambda: _all_or_none(self.store.find_ocr(list(ids), job.ocr_key), ids)))
        return [known[s.id] for s in stored]

    async def _read_and_save(self, job: Job, image: np.ndarray, todo: list[StoredBlock]) -> dict[int, str]:
        """The blocks' new OCR texts, stored; coalesced like `_detected`."""
        fresh = dict(zip([s.id for s in todo], await self._read(job, image, [s.block for s in todo]), strict=True))
        await in_thread(self.store.save_ocr, fresh, job.ocr_key)
        return fresh

    async def _read(self, job: Job, image: np.ndarray, blocks: list[Block]) -> list[str]:
        """The OCR model's text of each block; its vertical sibling's for vertical blocks, where it has one."""
        vertical = job.ocr_vertical
        if vertical is None or not any(block.vertical for block in blocks):
            return await self._read_with(job.ocr, job.src, image, blocks)
        across, columns = by_orientation(blocks)
        return in_block_order(blocks, *await asyncio.gather(self._read_with(job.ocr, job.src, image, across),
                                                            self._read_with(vertical, job.src, image, columns)))

    async def _read_with(self, ocr: StageConfig, src: str, image: np.ndarray, blocks: list[Block]) -> list[str]:
        if not blocks:
            return []
        crops = crops_for(image, blocks, ocr.entry, src in languages.VERTICAL_LANGUAGES)
        async with self.observer.timed("ocr", ocr.entry.id, len(crops)):
            pieces = await self.stages.read(ocr.entry.id, crops, src, ocr.options)
        return block_texts(pieces, blocks, ocr.entry, languages.word_separator(src))

    async def _translations(self, job: Job, texts: list[str], force: bool,
                            ) -> tuple[dict[str, str], dict[str, str | None]]:
        """The translations of the texts that have a route, and each text's source language."""
        wanted = list(dict.fromkeys(text for text in texts if text.strip()))  # in reading order
        found_in, routed = await in_thread(job.by_route, wanted) if job.detects else job.by_route(wanted)
        translated: dict[str, str] = {}
        for found in await asyncio.gather(*(self._translate(route, group, force) for route, group in routed)):
            translated.update(found)
        return translated, found_in

    async def _translate(self, route: Route, wanted: list[str], force: bool) -> dict[str, str]:
        tsl = route.tsl
        favor_manual = tsl.options["favor_manual"]
        found = {} if force else await in_thread(self.store.find_translations, wanted, route.key, favor_manual,
                                                 route.profile)
        missing = [text for text in wanted if text not in found]
        if not force:
            self.observer.cache_lookup("tsl", len(wanted) - len(missing), len(missing))
        if missing:
            self._check_pieces(route, missing)
            if force:
                found.update(await self._translated(route, missing, force))
            else:  # machine translations are every profile's: the same texts in flight are translated once
                found.update(await self.coalescer.once(
                    ("tsl", route.key, tuple(missing)), lambda: self._translated(route, missing, force),
                    lambda: _all_or_none(self.store.find_translations(missing, route.key, False), missing)))
            if force and favor_manual:
                found.update(await in_thread(self.store.find_manual_translations, wanted, route.src, route.dst,
                                             route.profile))
        return found

    async def _translated(self, route: Route, missing: list[str], force: bool) -> dict[str, str]:
        """New machine translations of the texts, stored (replacing the stored ones when `force`)."""
        tsl = route.tsl
        async with self.observer.timed("tsl", tsl.entry.id, len(missing)):
            translated = await self.stages.translate(tsl.entry.id, missing, route.src, route.dst, tsl.options,
                                                     route.glossary)
        fresh = dict(zip(missing, translated, strict=True))
        await in_thread(self.store.save_translations, fresh, route.key, force)
        return fresh

    def _check_pieces(self, route: Route, texts: list[str]) -> None:
        """Refuse, before any model runs, a text the options would split into too many pieces."""
        settings, separator = PreProcessing.of(route.tsl.options, route.src), languages.word_separator(route.src)
        for text in texts:
            pieces = len(pre_tokenize(text, settings, separator))
            if pieces > self.limits.max_pieces_per_text:
                raise PayloadTooLarge(f"A text splits into {pieces} pieces to translate, more than the server's "
                                      f"limit of {self.limits.max_pieces_per_text}: use fewer break_chars.")

    async def _forced_work(self, job: Job, md5: str, image: np.ndarray) -> list[TextBlock]:
        """Every stage again; the stored run is replaced in one transaction once the new one is
        complete, so concurrent requests see the old run or the new, never a missing one."""
        blocks = await self._detect(job, image)
        texts = await self._read(job, image, blocks)
        answered = as_answered(blocks, texts)
        translated, found_in = await self._translations(job, [a.text for a in answered], force=True)
        await in_thread(self.store.replace_run, md5, job.box_key, job.ocr_key, blocks, texts)
        return [_result(job, a, translated, found_in) for a in answered]

    def _stored_result_now(self, job: Job, md5: str) -> list[TextBlock] | None:
        with self.store.transaction():
            return stored_result(self.store, job, md5)

    # -- translation alone ----------------------------------------------------------------------
    async def run_tsl(self, text: str, overrides: Overrides, given_options: dict | None) -> str:
        if len(text) > self.limits.max_text_chars:
            raise BadRequest(f"'text' is longer than the limit of {self.limits.max_text_chars} characters.")
        job = await in_thread(self.jobs.resolve, overrides, given_options, False)
        translated, found_in = await self._translations(job, [text], force=False)
        if found_in.get(text) in job.unpermitted:
            raise Forbidden(f"The text is in {languages.name_of(found_in[text])}, which no translation model this "
                            f"request may use translates (the operator may allow others in "
                            f"security.override_models).")
        return _shown(text, translated)


def stored_result(store: Store, job: Job, md5: str) -> list[TextBlock] | None:
    """The image's complete stored answer for the job (boxes, every block's OCR, every translation), or
    None: what the md5-only call answers, and what a bulk run skips."""
    stored = store.find_blocks(md5, job.box_key)
    if stored is None:
        return None
    texts = store.find_ocr([s.id for s in stored], job.ocr_key)
    if len(texts) < len(stored):
        return None
    answered = as_answered([s.block for s in stored], [texts[s.id] for s in stored])
    found_in, routed = job.by_route(list(dict.fromkeys(a.text for a in answered if a.text.strip())))
    translated: dict[str, str] = {}
    for route, group in routed:
        translated.update(store.find_translations(group, route.key, route.tsl.options["favor_manual"],
                                                  route.profile))
        if any(text not in translated for text in group):
            return None
    return [_result(job, a, translated, found_in) for a in answered]


def _all_or_none(found: dict, wanted) -> dict | None:
    """What another replica stored for the coalesced work, once all of it is there."""
    return found if all(item in found for item in wanted) else None


def _check_md5_format(md5: str | None) -> None:
    if md5 is not None and not _MD5.match(md5):
        raise BadRequest("'md5' must be the 32 hex digits of the md5 of the base64 'contents'.")


def _shown(text: str, translated: dict[str, str]) -> str:
    """What a text shows: nothing for a blank one; itself where no route translated it (detected in the
    destination language, or without letters)."""
    return translated.get(text, text) if text.strip() else ""


def _result(job: Job, answered: AnsweredBlock, translated: dict[str, str], found_in: dict[str, str | None],
            ) -> TextBlock:
    text = answered.text
    detected = {"lang_src": found_in.get(text)} if job.detects else {}
    if found_in.get(text) in job.unpermitted:
        detected["untranslated"] = (f"No translator of {languages.name_of(found_in[text])} that this request may "
                                    f"use: the selected model does not translate it (the operator may allow "
                                    f"others in security.override_models).")
    return TextBlock(ocr=text, tsl=_shown(text, translated), box=list(answered.box), **detected)
