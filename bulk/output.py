"""The output of a bulk run: one Parquet file with a documented schema, written in parts while the run
goes (so a killed run keeps what it finished), merged into the file at the end. Also what a run
skips (images whose result is already in the output), the store writes, and the rendered pages."""

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from core.boxes import Block
from core.scripts import AnsweredBlock, as_answered
from service.jobs import Job
from service.store import Store

from .stages import blocks_from_json

BLOCK = pa.struct([("box", pa.list_(pa.int32(), 4)), ("ocr", pa.string()), ("tsl", pa.string())])
SCHEMA = pa.schema([
    ("path", pa.string()),
    ("md5", pa.string()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("blocks", pa.list_(BLOCK)),
    ("src", pa.string()),
    ("dst", pa.string()),
    ("box_model", pa.string()),
    ("ocr_model", pa.string()),
    ("tsl_model", pa.string()),
    ("options", pa.string()),
    ("error", pa.string()),
])
"""One row per image. `md5`: of the file's base64, as the extension sends it. `blocks`: the text blocks
in reading order, `box` as the server answers it: [l, b, r, t] in pixels, b above t (y grows
downwards). `options`: JSON, model id -> every option value used. `error`: null, or why the image has
no result."""


@dataclass(frozen=True)
class JobColumns:
    """The columns that say which job a row is the result of: a later run of the same job skips it."""

    src: str
    dst: str
    box_model: str
    ocr_model: str
    tsl_model: str
    options: str

    @classmethod
    def of(cls, job: Job) -> "JobColumns":
        models = job.stages.map(lambda stage: stage.entry.id)
        options: dict[str, Any] = {stage.entry.id: stage.options for _, stage in job.stages}
        if job.route.glossary:  # a changed glossary is another job (jobs without one keep their identity)
            options["glossary"] = job.route.glossary.digest()
        if job.ocr_vertical is not None:  # so is reading vertical blocks with another model
            options[job.ocr_vertical.entry.id] = job.ocr_vertical.options
        return cls(job.src, job.dst, box_model=models.box, ocr_model=models.ocr, tsl_model=models.tsl,
                   options=json.dumps(options, sort_keys=True))


def parts_dir(out: Path) -> Path:
    return out.with_name(out.name + ".parts")


def _readable(out: Path) -> Iterator[pa.Table]:
    """The output file and the parts of unfinished runs (a part cut short by a kill is not a part:
    parts are written whole, to a temporary name first)."""
    if out.exists():
        yield pq.read_table(out)
    if parts_dir(out).is_dir():
        for part in sorted(parts_dir(out).glob("*.parquet")):
            yield pq.read_table(part)


def finished(out: Path, columns: JobColumns) -> set[str]:
    """md5s the output already holds a result of this job for (failed rows are tried again)."""
    done = set()
    for table in _readable(out):
        for row in table.select(["md5", "error", *JobColumns.__dataclass_fields__]).to_pylist():
            if row["error"] is None and JobColumns(**{k: row[k] for k in JobColumns.__dataclass_fields__}) == columns:
                done.add(row["md5"])
    return done


@dataclass(frozen=True)
class Result:
    """One image's blocks (with their lines, as the store keeps them) and OCR texts, and the translations of
    its blocks as answered (`answered`: a block whose lines are in two writing systems is two)."""

    blocks: list[Block]
    texts: list[str]
    translations: list[str]

    @property
    def answered(self) -> list[AnsweredBlock]:
        return as_answered(self.blocks, self.texts)


def rows_of(batch: dict[str, Any], columns: JobColumns) -> list[tuple[dict[str, Any], Result | None]]:
    """Output rows of a batch of the last stage, each with its result (None for an error row)."""
    rows = []
    for index, md5 in enumerate(batch["md5"]):
        error = batch["error"][index] or None
        result = None if error else Result(blocks_from_json(batch["blocks"][index]), json.loads(batch["texts"][index]),
                                           json.loads(batch["translations"][index]))
        blocks = [] if result is None else [
            {"box": list(answered.box), "ocr": answered.text, "tsl": translation}
            for answered, translation in zip(result.answered, result.translations, strict=True)]
        rows.append(({"path": batch["path"][index], "md5": md5, "width": int(batch["width"][index]),
                      "height": int(batch["height"][index]), "blocks": blocks, **columns.__dict__, "error": error},
                     result))
    return rows


def write_part(out: Path, rows: list[dict[str, Any]]) -> None:
    folder = parts_dir(out)
    folder.mkdir(parents=True, exist_ok=True)
    name = uuid.uuid4().hex
    temporary = folder / f"{name}.tmp"
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), temporary)
    temporary.rename(folder / f"{name}.parquet")


def merge(out: Path) -> int:
    """The output file and every part as one file (an image's newest row wins per job); returns its rows."""
    tables = list(_readable(out))
    table = pa.concat_tables(tables) if tables else SCHEMA.empty_table()
    newest: dict[tuple, int] = {}
    keys = ["md5", *JobColumns.__dataclass_fields__]
    for index, row in enumerate(table.select(keys).to_pylist()):
        newest[tuple(row[k] for k in keys)] = index  # later rows (parts) replace earlier ones
    table = table.take(pa.array(sorted(newest.values()), type=pa.int64()))
    temporary = out.with_name(out.name + ".tmp")
    pq.write_table(table, temporary)
    temporary.replace(out)
    if parts_dir(out).is_dir():
        for part in parts_dir(out).iterdir():
            part.unlink()
        parts_dir(out).rmdir()
    return table.num_rows


def save_to_store(store: Store, job: Job, md5: str, result: Result) -> None:
    """One image's result under the keys the server uses, so its md5-only call is answered from it.
    A run the store already holds stands (the server's first-writer rule), unless its blocks differ."""
    blocks, texts, translations = result.blocks, result.texts, result.translations
    with store.transaction():
        stored = store.save_blocks(md5, job.box_key, blocks)
        if [s.block for s in stored] != blocks:
            stored = store.replace_run(md5, job.box_key, job.ocr_key, blocks, texts)
        else:
            known = store.find_ocr([s.id for s in stored], job.ocr_key)
            store.save_ocr({s.id: text for s, text in zip(stored, texts, strict=True) if s.id not in known},
                           job.ocr_key)
        store.save_translations({answered.text: translation for answered, translation
                                 in zip(result.answered, translations, strict=True) if answered.text.strip()},
                                job.route.key)


def render(path: str, blocks: list[dict[str, Any]], target: Path) -> None:
    """The page with each block's translation drawn over its box (white box, black text fitted to it)."""
    import io

    import pyarrow.fs
    from PIL import Image, ImageDraw

    filesystem, where = pyarrow.fs.FileSystem.from_uri(path if "://" in path else str(Path(path).resolve()))
    with filesystem.open_input_file(where) as source:
        image = Image.open(io.BytesIO(source.read())).convert("RGB")
    draw = ImageDraw.Draw(image)
    for block in blocks:
        left, top, right, bottom = block["box"]
        draw.rectangle((left, top, right, bottom), fill="white")
        text = block["tsl"] or block["ocr"]
        size = max(8, bottom - top)
        while True:  # the largest size, down to 8 px, whose wrapped text fits the box's height
            font = _font(size)
            wrapped = _wrap(draw, text, font, right - left)
            if size == 8 or draw.multiline_textbbox((left, top), wrapped, font=font)[3] <= bottom:
                break
            size -= 1
        draw.multiline_text((left, top), wrapped, fill="black", font=font)
    target.parent.mkdir(parents=True, exist_ok=True)
    image.save(target)


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        return ImageFont.load_default(size)


def _wrap(draw, text: str, font, width: int) -> str:
    lines, line = [], ""
    for word in text.split():
        candidate = f"{line} {word}".strip()
        if line and draw.textlength(candidate, font=font) > width:
            lines.append(line)
            line = word
        else:
            line = candidate
    return "\n".join([*lines, line])
