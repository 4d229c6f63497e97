"""Manga (issue 28 point 4): the vertical Japanese of one speech bubble becomes one block, and a
VisionEncoderDecoder reader of manga-ocr's kind (reads: block, reads_vertical: true) is given that block's
whole crop. Shown on a rendered page: a real offline detector finds the columns, a tiny randomly initialised
VisionEncoderDecoder loaded through the real Hugging Face backend records what it is given (geometry and
crops; its random text says nothing), and Tesseract `jpn_vert` reads the bubbles' text.

The columns of a bubble stand further apart than the merge tolerances allow, so merging alone leaves each
column a block of its own: only the bubble step joins them.
"""

from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

import inference.detection
from core.boxes import Block, Box, enclosing
from core.options import resolve
from core.settings import WeightSources
from inference.detection import detect_blocks
from inference.reading import crops_for
from models_registry import Registry
from models_registry.backends.base import Runtime
from tests.support.backends import usable_backend
from tests.support.images import CJK_FONT, char_error_rate
from tests.support.tiny_hf import build_vision_ocr

DETECTOR = "rapidocr/ppocr-v4-det"
MANGA_READER = "tiny/manga-ocr"
"""A tiny random VisionEncoderDecoder declared as kha-white/manga-ocr-base is."""
SIZE = 30
"""Font size: the glyphs' cells are SIZE wide and 1.1 SIZE apart down a column."""
GAP = 1.3
"""Blank between two columns, in font sizes: the detector's boxes stand ~0.7 of their width apart, where
merging joins columns up to 0.5 apart."""
MAX_CER = 0.2
BUBBLES = [  # centre of the bubble, its columns right to left
    ((480, 220), ["明日の朝", "駅で会おう"]),
    ((190, 220), ["本当に", "それでいいの"]),
    ((330, 640), ["まだ話は", "終わっていない", "待ってよ"]),
]
"""In manga order: the two bubbles of the top row right then left, then the one below."""


@dataclass
class Bubble:
    oval: tuple[int, int, int, int]
    columns: list[str]
    ink: Box
    """The bounding box of all the bubble's glyphs."""

    def holds(self, x: float, y: float) -> bool:
        """Whether the point lies inside the oval's outline."""
        left, top, right, bottom = self.oval
        cx, cy, a, b = (left + right) / 2, (top + bottom) / 2, (right - left) / 2 - 3, (bottom - top) / 2 - 3
        return ((x - cx) / a) ** 2 + ((y - cy) / b) ** 2 <= 1

    def holds_box(self, box: Box) -> bool:
        return all(self.holds(x, y) for x in (box.l, box.r) for y in (box.b, box.t))


def render_page() -> tuple[Image.Image, list[Bubble]]:
    """A white page, a panel's frame, oval bubbles with black outlines, each round its columns."""
    image = Image.new("RGB", (660, 900), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((20, 20, 640, 880), outline="black", width=3)
    font = ImageFont.truetype(CJK_FONT, SIZE)
    bubbles = []
    for (cx, cy), columns in BUBBLES:
        width = len(columns) * SIZE + (len(columns) - 1) * int(SIZE * GAP)
        height = max(map(len, columns)) * int(SIZE * 1.1)
        right, top = cx + width // 2, cy - height // 2
        a, b = round(0.71 * width) + 12, round(0.71 * height) + 12  # the columns' rectangle well inside
        oval = (cx - a, cy - b, cx + a, cy + b)
        draw.ellipse(oval, fill="white", outline="black", width=3)
        glyphs = []
        for number, column in enumerate(columns):
            x = right - SIZE // 2 - number * int(SIZE * (1 + GAP))
            for k, char in enumerate(column):
                at = (x, top + k * int(SIZE * 1.1) + SIZE // 2)
                draw.text(at, char, font=font, fill="black", anchor="mm")
                glyphs.append(Box(*draw.textbbox(at, char, font=font, anchor="mm")))
        bubbles.append(Bubble(oval, columns, enclosing(glyphs)))
    return image, bubbles



@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Registry:
    """The built-in entries and the tiny manga reader, declared as manga-ocr is."""
    models, entries = tmp_path_factory.mktemp("models"), tmp_path_factory.mktemp("entries")
    build_vision_ocr(models / MANGA_READER)
    (entries / "manga.yaml").write_text(f"""
- id: {MANGA_READER}
  kind: ocr
  backend: huggingface
  languages: [ja]
  reads: block
  reads_vertical: true
  weights: {{repo: {MANGA_READER}}}
  settings: {{grayscale: true, strip_spaces: true}}
  default_options: {{max_new_tokens: 4, num_beams: 1}}
""")
    return Registry.load([entries], WeightSources(models_dirs=[models]))


@pytest.fixture(scope="module")
def page() -> tuple[np.ndarray, list[Bubble]]:
    image, bubbles = render_page()
    return np.asarray(image), bubbles


@pytest.fixture(scope="module")
def detector(registry):
    return usable_backend(registry, DETECTOR, "box", Runtime("cpu", 1))


def detect(detector, image: np.ndarray) -> list[Block]:
    return detect_blocks(detector, image, "ja", resolve(detector.entry.option_specs, None))


@pytest.fixture(scope="module")
def blocks(detector, page) -> list[Block]:
    return detect(detector, page[0])


def test_merging_alone_leaves_each_column_a_block_of_its_own(detector, page, monkeypatch):
    """The page is one where the bubble step is needed: without it, no block holds two columns."""
    image, bubbles = page
    monkeypatch.setattr(inference.detection, "join_bubbles", lambda image, blocks: blocks)
    merged = detect(detector, image)
    for bubble in bubbles:
        inside = [block for block in merged if bubble.holds_box(block.box)]
        assert len(inside) == len(bubble.columns), (bubble.columns, [block.box for block in inside])
        assert all(len(block.lines) == 1 for block in inside)
    assert len(merged) == sum(len(bubble.columns) for bubble in bubbles)


def test_each_bubble_is_one_vertical_block_in_manga_order(blocks, page):
    _, bubbles = page
    assert len(blocks) == len(bubbles), [block.box for block in blocks]
    for block, bubble in zip(blocks, bubbles, strict=True):  # right to left, then the row below
        assert block.vertical
        assert bubble.holds_box(block.box), (block.box, bubble.oval)
        assert block.box.l <= bubble.ink.l and block.box.b <= bubble.ink.b, (block.box, bubble.ink)
        assert block.box.r >= bubble.ink.r and block.box.t >= bubble.ink.t, (block.box, bubble.ink)
        middles = [(enclosing(column).l + enclosing(column).r) / 2 for column in block.lines]
        assert len(middles) == len(bubble.columns) and middles == sorted(middles, reverse=True), block.lines


def test_a_manga_reader_is_given_each_bubbles_whole_block(registry, blocks, page):
    image, bubbles = page
    reader = usable_backend(registry, MANGA_READER, "ocr")
    assert reader.entry.reads == "block" and reader.entry.reads_vertical
    given, seen = [], []
    read, processor = reader.read, reader.processor

    def spy_read(crops, lang, options):
        given.extend(crops)
        return read(crops, lang, options)

    def spy_processor(images, **kwargs):
        seen.extend(image.size for image in images)
        return processor(images=images, **kwargs)

    reader.read, reader.processor = spy_read, spy_processor
    texts = reader.read(crops_for(image, blocks, reader.entry), "ja", resolve(reader.entry.option_specs, None))

    assert len(texts) == len(given) == len(seen) == len(bubbles)
    for crop, size, block in zip(given, seen, blocks, strict=True):
        box = block.box
        assert crop.shape == (box.height, box.width, 3), (crop.shape, box)
        assert np.array_equal(crop, image[box.b:box.t, box.l:box.r])
        assert size == (box.width, box.height)  # what the VisionEncoderDecoder's processor gets
        assert box.height > box.width  # the columns as they stand, not set as lines


def test_tesseract_vertical_japanese_reads_each_bubble(registry, blocks, page):
    image, bubbles = page
    assert registry.get("tesseract/jpn").vertical_model == "tesseract/jpn_vert"  # what reads vertical blocks
    reader = usable_backend(registry, "tesseract/jpn_vert", "ocr")
    texts = reader.read(crops_for(image, blocks, reader.entry), "ja", resolve(reader.entry.option_specs, None))
    assert len(texts) == len(bubbles)
    for text, bubble in zip(texts, bubbles, strict=True):
        truth = "".join(bubble.columns)
        assert char_error_rate("".join(text.split()), truth) <= MAX_CER, (text, truth)
