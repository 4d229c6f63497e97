"""The Ray Data stages of a bulk run. Each model stage is an actor pool that loads its model once per
actor, as a model replica does, and runs the server's own stage code (`inference/`) on whole batches of
images, so detection, merging, the OCR line policy and translation pre-processing are exactly the server's.

Rows carry their pixels between stages and a JSON `blocks` column; a row that failed anywhere keeps
its `error` and passes the later stages untouched (a corrupt file is a row, never the end of a run).
"""

import base64
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from core import languages
from core.boxes import Block, Box
from core.glossary import NO_TERMS, Glossary
from core.imaging import decode_image
from core.scripts import as_answered
from core.settings import AppArgs, ModelDeploymentSettings
from inference.detection import DetectionItem, detect_grouped
from inference.reading import OCRItem, block_texts, by_orientation, crops_for, in_block_order, read_grouped
from inference.translation import TranslationItem, translate_grouped, translate_texts
from inference.worker import ModelWorker
from models_registry import ModelKind, Registry

Batch = dict[str, np.ndarray]
NO_IMAGE = np.zeros((1, 1, 3), dtype=np.uint8)
"""The pixels of a row whose file could not be decoded (Ray Data needs a value in every row)."""


@dataclass(frozen=True)
class StageJob:
    """What a model stage needs of the job, in plain values that travel to its actors."""

    model_id: str
    src: str
    dst: str
    options: dict[str, Any]
    glossary: Glossary = NO_TERMS
    """The reader's terms for the pair (translation only), as the server would apply them."""
    vertical: tuple[str, dict[str, Any]] | None = None
    """OCR only: the model that reads the vertical blocks and its options (the job's `ocr_vertical`)."""


def blocks_to_json(blocks: list[Block]) -> str:
    return json.dumps([{"box": list(block.box), "lines": [[list(box) for box in line] for line in block.lines],
                        "vertical": block.vertical} for block in blocks])


def blocks_from_json(text: str) -> list[Block]:
    return [Block(Box(*block["box"]), [[Box(*box) for box in line] for line in block["lines"]], block["vertical"])
            for block in json.loads(text)]


def decode_files(batch: Batch, max_pixels: int, done: frozenset[str]) -> Batch:
    """Files (`bytes`, `path`) to rows: the md5 the extension would send for the file (of its base64),
    the pixels, or the reason it cannot be read. Images whose md5 is in `done` are dropped."""
    rows: dict[str, list] = {name: [] for name in ("path", "md5", "width", "height", "image", "error")}
    for data, path in zip(batch["bytes"], batch["path"], strict=True):
        contents = base64.b64encode(bytes(data)).decode("ascii")
        md5 = hashlib.md5(contents.encode("ascii")).hexdigest()
        if md5 in done:
            continue
        try:
            image, error = decode_image(contents, max_pixels), ""
        except Exception as exc:  # noqa: BLE001 - the reason goes in the row, the run goes on
            image, error = NO_IMAGE, f"decode: {exc}"
        for name, value in (("path", str(path)), ("md5", md5), ("width", image.shape[1] if not error else 0),
                            ("height", image.shape[0] if not error else 0), ("image", image), ("error", error)):
            rows[name].append(value)
    out = {name: np.array(values, dtype=object) for name, values in rows.items() if name != "image"}
    out["width"], out["height"] = (np.array(rows[n], dtype=np.int32) for n in ("width", "height"))
    out["image"] = _object_array(rows["image"])
    count = len(rows["md5"])
    out["blocks"] = np.array(["[]"] * count, dtype=object)
    out["texts"] = np.array(["[]"] * count, dtype=object)
    out["translations"] = np.array(["[]"] * count, dtype=object)
    return out


def _object_array(values: list) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


_FILLED = ("error", "blocks", "texts", "translations")
"""The columns the model stages fill in (copied: Ray Data may hand batches over read-only)."""


class _ModelStage:
    """An actor of one model stage: the model loaded once, on the actor's CPU share or GPU."""

    kind: ClassVar[ModelKind]

    def __init__(self, args: AppArgs, settings: ModelDeploymentSettings, job: StageJob):
        registry = Registry.load(args.registry_dirs, args.weight_sources, args.model_settings)
        self.worker = ModelWorker(self.kind, settings, registry)
        self.backend = self.worker.load(job.model_id)
        self.job = job

    def __call__(self, batch: Batch) -> Batch:
        batch = {name: column.copy() if name in _FILLED else column for name, column in batch.items()}
        ok = [i for i, error in enumerate(batch["error"]) if not error]
        started = time.perf_counter()
        if ok:
            self.run(batch, ok)
        seconds = np.zeros(len(batch["error"]))
        seconds[ok] = (time.perf_counter() - started) / max(1, len(ok))  # each image's share of the model time
        batch[f"seconds_{self.kind}"] = seconds
        return batch

    def run(self, batch: Batch, rows: list[int]) -> None:
        raise NotImplementedError

    def fail(self, batch: Batch, row: int, exc: Exception) -> None:
        batch["error"][row] = f"{self.kind}: {exc}"


class DetectStage(_ModelStage):
    kind = "box"

    def run(self, batch: Batch, rows: list[int]) -> None:
        items = [DetectionItem(batch["image"][i], self.job.src, self.job.options) for i in rows]
        for row, found in zip(rows, detect_grouped(self.backend, items)[0], strict=True):
            if isinstance(found, Exception):
                self.fail(batch, row, found)
            else:
                batch["blocks"][row] = blocks_to_json(found)


class ReadStage(_ModelStage):
    kind = "ocr"

    def __init__(self, args: AppArgs, settings: ModelDeploymentSettings, job: StageJob):
        super().__init__(args, settings, job)
        self.vertical = None if job.vertical is None else self.worker.load(job.vertical[0])

    def _read(self, backend, options: dict[str, Any], images: dict[int, np.ndarray], blocks: dict[int, list[Block]],
              ) -> dict[int, list[str] | Exception]:
        """Each row's block texts as `backend` reads them (one grouped call for the batch), or its failure."""
        vertical_script = self.job.src in languages.VERTICAL_LANGUAGES
        crops = {row: crops_for(images[row], blocks[row], backend.entry, vertical_script) for row in blocks}
        items = [OCRItem(crop, self.job.src, options) for row in blocks for crop in crops[row]]
        pieces = iter(read_grouped(backend, items)[0])
        separator = languages.word_separator(self.job.src)
        texts: dict[int, list[str] | Exception] = {}
        for row in blocks:
            read = [next(pieces) for _ in crops[row]]
            failure = next((text for text in read if isinstance(text, Exception)), None)
            texts[row] = failure if failure is not None else block_texts(read, blocks[row], backend.entry, separator)
        return texts

    def run(self, batch: Batch, rows: list[int]) -> None:
        blocks = {row: blocks_from_json(batch["blocks"][row]) for row in rows}
        images = {row: batch["image"][row] for row in rows}
        if self.vertical is None:
            across, columns = blocks, {}
        else:
            split = {row: by_orientation(blocks[row]) for row in rows}
            across, columns = ({row: split[row][side] for row in rows} for side in (0, 1))
        horizontal = self._read(self.backend, self.job.options, images, across)
        vertical = self._read(self.vertical, self.job.vertical[1], images, columns) if columns else {}
        for row in rows:
            found = [horizontal[row], vertical.get(row, [])]
            failure = next((part for part in found if isinstance(part, Exception)), None)
            if failure is not None:
                self.fail(batch, row, failure)
            else:
                texts = found[0] if self.vertical is None else in_block_order(blocks[row], *found)
                batch["texts"][row] = json.dumps(texts)


class TranslateStage(_ModelStage):
    """Each distinct text of the batch once; blank texts translate to "" (as the server answers)."""

    kind = "tsl"

    def run(self, batch: Batch, rows: list[int]) -> None:
        texts = {row: [answered.text for answered in as_answered(blocks_from_json(batch["blocks"][row]),
                                                                  json.loads(batch["texts"][row]))]
                 for row in rows}
        job = self.job
        if self.backend.translates_pages:  # a language model sees each page on its own, as in the server
            for row in rows:
                try:
                    translated = translate_texts(self.backend, texts[row], job.src, job.dst, job.options, job.glossary)
                except Exception as exc:
                    self.fail(batch, row, exc)
                else:
                    batch["translations"][row] = json.dumps(translated)
            return
        wanted = sorted({text for row in rows for text in texts[row] if text.strip()})
        items = [TranslationItem(text, job.src, job.dst, job.options, job.glossary) for text in wanted]
        translated = dict(zip(wanted, translate_grouped(self.backend, items)[0], strict=True))
        for row in rows:
            failure = next((translated[t] for t in texts[row] if isinstance(translated.get(t), Exception)), None)
            if failure is not None:
                self.fail(batch, row, failure)
            else:
                batch["translations"][row] = json.dumps([translated.get(text, "") for text in texts[row]])

    def __call__(self, batch: Batch) -> Batch:
        batch = super().__call__(batch)
        batch.pop("image", None)  # the pixels stop here: the output holds boxes and text
        return batch


class Decode:
    """The first stage, on one small actor: files to rows (`decode_files`), dropping images this job
    already has a result for in the output (`done`) or in the store (when the run writes to one)."""

    def __init__(self, max_pixels: int, done: frozenset[str], database_url: str | None, job):
        from service.store import Store

        self.max_pixels, self.done, self.job = max_pixels, done, job
        self.store = Store(database_url) if database_url else None

    def __call__(self, batch: Batch) -> Batch:
        rows = decode_files(batch, self.max_pixels, self.done)
        if self.store is None:
            return rows
        from service.pipeline import stored_result

        keep = np.array([stored_result(self.store, self.job, md5) is None for md5 in rows["md5"]], dtype=bool)
        return {name: column[keep] for name, column in rows.items()}
