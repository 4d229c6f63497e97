"""Grouping rules of issue 28 point 3 on rendered pages, through real offline detectors: each page is drawn
with Pillow, its boxes found by PP-OCRv4's detector (and by CRAFT where a rule concerns a detector's word
pieces), merged into blocks the server's way (`inference.detection.detect_blocks`), and where the rule is
about reading, read with Tesseract the server's way (`inference.reading.crops_for`).

Each test asserts the number of blocks and which rendered lines each holds (by the rendered lines'
positions), so it fails if its rule breaks: a title merged with the small line under it, an indented note
with its heading, two paragraphs run together, a centred title split at its aligned word spaces, vertical
columns read left to right, a line on its side read as letters.
"""

import numpy as np
import pytest
from PIL import Image, ImageChops, ImageDraw, ImageFont

from core.boxes import Block, Box, enclosing
from core.options import resolve
from core.scripts import as_answered
from inference.detection import detect_blocks
from inference.reading import block_texts, crops_for
from models_registry.backends.base import Runtime
from tests.support.backends import usable_backend
from tests.support.images import CJK_FONT, FONT, char_error_rate, render_columns

PPOCR = "rapidocr/ppocr-v4-det"
CRAFT = "easyocr/craft"



@pytest.fixture(scope="module")
def detectors(registry) -> dict:
    return {model_id: usable_backend(registry, model_id, "box", Runtime("cpu", 1)) for model_id in (PPOCR, CRAFT)}


def blocks_on(detector, image: Image.Image, lang: str = "en") -> list[Block]:
    return detect_blocks(detector, np.asarray(image), lang, resolve(detector.entry.option_specs_for(lang), {}))


class Page:
    """A white page and the ink box of each line drawn on it, in the order drawn."""

    def __init__(self, size: tuple[int, int]):
        self.image = Image.new("RGB", size, "white")
        self.draw = ImageDraw.Draw(self.image)
        self.lines: list[Box] = []

    def text(self, at: tuple[float, float], text: str, font_size: int, anchor: str = "la") -> Box:
        """One piece of a line; its ink box is returned (and recorded as a line)."""
        font = ImageFont.truetype(FONT, font_size)
        self.draw.text(at, text, font=font, fill="black", anchor=anchor)
        box = Box(*(round(v) for v in self.draw.textbbox(at, text, font=font, anchor=anchor)))
        self.lines.append(box)
        return box


def holds(block: Block, line: Box) -> bool:
    """Whether the block's boxes cover the rendered line: the middle of the line's ink lies in one of them."""
    x, y = (line.l + line.r) / 2, (line.b + line.t) / 2
    return any(box.l <= x <= box.r and box.b <= y <= box.t for box in block.singles)


def assert_blocks_hold(blocks: list[Block], expected: list[list[Box]]) -> None:
    """The blocks in reading order hold exactly these rendered lines, each block its own."""
    described = [block.singles for block in blocks]
    assert len(blocks) == len(expected), (described, expected)
    every = [line for lines in expected for line in lines]
    for block, lines in zip(blocks, expected, strict=True):
        assert [line for line in every if holds(block, line)] == lines, (described, expected)


# 1. Size: a title does not join the small line under it, though left-aligned and close.
def title_over_small_line() -> Page:
    page = Page((700, 200))
    page.text((30, 20), "Opening Hours", 52)
    page.text((30, 85), "Monday to Friday, nine to five", 24)
    return page


@pytest.mark.parametrize("model_id", [PPOCR, CRAFT])
def test_a_big_title_stays_apart_from_the_small_line_close_under_it(detectors, model_id):
    page = title_over_small_line()
    title, small = page.lines
    assert small.b - title.t < 0.5 * small.height  # closer than the line gap allows: only size keeps them apart
    assert abs(title.l - small.l) <= 2
    assert_blocks_hold(blocks_on(detectors[model_id], page.image), [[title], [small]])


# 2. Alignment: an indented note under a heading stays apart; a centred sign's lines join.
def heading_and_indented_note() -> Page:
    page = Page((760, 180))
    page.text((30, 30), "Chapter Two: The River Crossing", 32)
    page.text((170, 74), "a note on the old maps", 28)
    return page


def centred_sign() -> Page:
    page = Page((760, 200))
    for number, line in enumerate(["NO PARKING", "Loading zone for deliveries only", "Mon to Sat"]):
        page.text((380, 30 + 46 * number), line, 32, anchor="mt")
    return page


@pytest.mark.parametrize("model_id", [PPOCR, CRAFT])
def test_an_indented_note_under_a_heading_is_a_block_of_its_own(detectors, model_id):
    page = heading_and_indented_note()
    heading, note = page.lines
    assert note.l - heading.l > 4 * note.height and heading.r - note.r > 1.5 * note.height  # no edge shared
    assert_blocks_hold(blocks_on(detectors[model_id], page.image), [[heading], [note]])


@pytest.mark.parametrize("model_id", [PPOCR, CRAFT])
def test_the_centred_lines_of_a_sign_are_one_block(detectors, model_id):
    page = centred_sign()
    lines = page.lines
    assert max(line.l for line in lines) - min(line.l for line in lines) > 150  # only the middles agree
    assert_blocks_hold(blocks_on(detectors[model_id], page.image), [lines])


# 3. Early break: a paragraph's short last line, a long first line under it one line gap below.
def two_paragraphs_no_blank() -> Page:
    page = Page((820, 240))
    for number, line in enumerate(["The meeting starts at nine in the main hall", "and ends at noon.",
                                   "A second paragraph opens with a long line here", "and goes on below it."]):
        page.text((30, 30 + 36 * number), line, 26)
    return page


@pytest.mark.parametrize("model_id", [PPOCR, CRAFT])
def test_a_short_last_line_ends_its_paragraph_where_a_long_line_follows(detectors, model_id):
    page = two_paragraphs_no_blank()
    first, last, opening, closing = page.lines
    assert opening.b - last.b == last.b - first.b  # the paragraphs set as one run of lines, no blank between
    assert opening.r - last.r > 5 * 36
    assert_blocks_hold(blocks_on(detectors[model_id], page.image), [[first, last], [opening, closing]])


# 4. Gutters: the word spaces of a centred title's two lines, one above the other, are no gutter.
def wide_set_title() -> Page:
    """Two lines of two words, set wide (0.6 of the font size between words, twice a normal space), centred,
    their word spaces in the same place, so CRAFT boxes each word apart and an empty strip runs through both."""
    page = Page((760, 220))
    font_size, space = 48, 29
    font = ImageFont.truetype(FONT, font_size)
    for y, (left, right) in zip((40, 104), (("OPEN", "DAYS"), ("MAIN", "HALL")), strict=True):
        page.text((380 - font.getlength(left), y), left, font_size)
        page.text((380 + space, y), right, font_size)
    return page


def test_the_aligned_word_spaces_of_a_centred_title_are_no_gutter(detectors):
    page = wide_set_title()
    open_, days, main, hall = page.lines
    centres = [(open_.l + days.r) / 2, (main.l + hall.r) / 2]
    assert abs(centres[0] - centres[1]) <= 6  # centred
    blocks = blocks_on(detectors[CRAFT], page.image)
    assert len(blocks) == 1, [block.lines for block in blocks]
    assert [len(line) for line in blocks[0].lines] == [2, 2], blocks[0].lines  # CRAFT boxed each word apart
    assert_blocks_hold(blocks, [[open_, days, main, hall]])
    gap = min(line[1].l for line in blocks[0].lines) - max(line[0].r for line in blocks[0].lines)
    assert gap > 0  # an empty strip runs down through both lines


# 5. Vertical reading order: two groups of Japanese columns, the right one read first, each right to left.
RIGHT_GROUP = ["日本語の文章", "縦に書いた本"]
LEFT_GROUP = ["二つ目の段落", "左側にある"]
SIZE = 40


def vertical_page() -> tuple[Image.Image, list[list[Box]]]:
    """Each group's columns as `render_columns` sets them (1.5 characters apart); the groups 5.5 apart."""
    page = (640, 330)
    right = render_columns(RIGHT_GROUP, size=SIZE, at=(40, 30), page=page)
    left = render_columns(LEFT_GROUP, size=SIZE, at=(360, 30), page=page)
    groups = []
    for edge, columns in ((page[0] - 40, RIGHT_GROUP), (page[0] - 360, LEFT_GROUP)):
        groups.append([Box(edge - SIZE - n * int(SIZE * 1.5), 30, edge - n * int(SIZE * 1.5),
                           30 + len(text) * int(SIZE * 1.2)) for n, text in enumerate(columns)])
    return ImageChops.darker(right, left), groups


def test_vertical_japanese_groups_are_read_right_first_and_each_right_to_left(registry, detectors):
    image, (right, left) = vertical_page()
    assert right[-1].l - left[0].r > 5 * SIZE  # far apart
    blocks = blocks_on(detectors[PPOCR], image, "ja")
    assert [block.vertical for block in blocks] == [True, True], [block.box for block in blocks]
    assert_blocks_hold(blocks, [right, left])
    for block, group in zip(blocks, (right, left), strict=True):  # columns in reading order: right to left
        assert [[c for c in group if holds(Block(enclosing(column), [column]), c)] for column in block.lines] == \
            [[c] for c in group], (block.lines, group)

    vertical_model = registry.get("tesseract/jpn").vertical_model
    assert vertical_model == "tesseract/jpn_vert"  # what the server reads vertical blocks with
    reader = usable_backend(registry, vertical_model, "ocr")
    options = resolve(reader.entry.option_specs_for("ja"), {})
    pieces = reader.read(crops_for(np.asarray(image), blocks, reader.entry), reader.entry.code_for("ja"), options)
    texts = block_texts(pieces, blocks, reader.entry, "")
    for text, columns in zip(texts, (RIGHT_GROUP, LEFT_GROUP), strict=True):
        truth = "".join(columns)
        assert char_error_rate("".join(text.split()), truth) <= 0.2, (text, truth)


# 6. A Latin line on its side (reading bottom to top) and a slanted one: one block, read right.
SIDE_TEXT = "Rayon des livres anciens"


def turned_line(angle: float) -> Image.Image:
    line = Image.new("RGB", (620, 90), "white")
    ImageDraw.Draw(line).text((20, 20), SIDE_TEXT, font=ImageFont.truetype(FONT, 40), fill="black")
    line = line.rotate(angle, expand=True, fillcolor="white", resample=Image.BICUBIC)
    page = Image.new("RGB", (line.width + 80, line.height + 80), "white")
    page.paste(line, (40, 40))
    return page


@pytest.mark.parametrize("model_id", [PPOCR, CRAFT])
@pytest.mark.parametrize("angle", [90, 8, 15])  # Tesseract reads 8° unlevelled too; 15° only once levelled
def test_a_line_on_its_side_or_slanted_is_one_block_read_right(registry, detectors, model_id, angle):
    image = turned_line(angle)
    blocks = blocks_on(detectors[model_id], image, "fr")
    ink = Box(*ImageChops.invert(image.convert("L")).getbbox())
    assert len(blocks) == 1, [block.lines for block in blocks]
    box = blocks[0].box
    assert box.l <= ink.l + 8 and box.b <= ink.b + 8 and box.r >= ink.r - 8 and box.t >= ink.t - 8, (box, ink)
    if angle == 90 and model_id == CRAFT:  # CRAFT boxes the words apart, one above the other
        assert len(blocks[0].singles) == 4, blocks[0].singles
    reader = usable_backend(registry, "tesseract/fra", "ocr")
    options = resolve(reader.entry.option_specs_for("fr"), {})
    pieces = reader.read(crops_for(np.asarray(image), blocks, reader.entry), reader.entry.code_for("fr"), options)
    [text] = block_texts(pieces, blocks, reader.entry, " ")
    assert char_error_rate(text, SIDE_TEXT) <= 0.1, text


# 7. Script: a CJK line and an English line of one size, left-aligned and close, which CRAFT's boxes join
# by pixels alone, are answered as two blocks once read (`core.scripts`), with a block reader and a line reader.
@pytest.mark.parametrize(("lang", "ocr_id", "lines"), [
    ("ja", "tesseract/jpn+eng", ["ポイ捨て禁止", "NO LITTER"]),
    ("zh", "rapidocr/ppocr-v4-rec", ["禁止吸烟", "NO SMOKING"]),
])
def test_a_cjk_line_and_an_english_line_are_answered_as_two_blocks(registry, detectors, lang, ocr_id, lines):
    page, size = Page((640, 180)), 40
    font = ImageFont.truetype(CJK_FONT, size)
    for number, line in enumerate(lines):
        at = (30, 30 + number * int(size * 1.45))
        page.draw.text(at, line, font=font, fill="black")
        page.lines.append(Box(*page.draw.textbbox(at, line, font=font)))
    blocks = blocks_on(detectors[CRAFT], page.image, lang)
    assert_blocks_hold(blocks, [page.lines])  # one block by size, colour and alignment
    reader = usable_backend(registry, ocr_id, "ocr")
    options = resolve(reader.entry.option_specs_for(lang), {})
    pieces = reader.read(crops_for(np.asarray(page.image), blocks, reader.entry), reader.entry.code_for(lang), options)
    answered = as_answered(blocks, block_texts(pieces, blocks, reader.entry, ""))
    assert len(answered) == 2, answered
    for part, line, box in zip(answered, lines, page.lines, strict=True):
        assert char_error_rate(part.text, line) <= 0.2, (part.text, line)
        assert part.box.l <= box.l and part.box.b <= box.b and part.box.r >= box.r and part.box.t >= box.t, (part, box)
    assert answered[0].box.t <= answered[1].box.b  # each boxed around its own line
