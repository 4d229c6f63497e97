"""Crops turned so a horizontal OCR model can read them (inference/upright.py, inference/reading.py): vertical
CJK columns set as lines, Latin lines set on their side turned upright, slanted lines levelled, and a
vertical block sent to the OCR model's vertical sibling (the pipeline and the registry's check)."""

import asyncio

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from core.boxes import Block, Box
from core.slots import chosen
from inference.reading import block_texts, by_orientation, crops_for, in_block_order
from inference.upright import character_cells, column_as_line, levelled, slant, turned_upright
from models_registry import ModelEntry, Registry, RegistryError
from service.jobs import Overrides
from tests.support.images import FONT, encode, render_columns
from tests.support.services import FakeStages, in_process_service


def column(text: str, size: int = 40) -> np.ndarray:
    """A vertical column of CJK characters on a page just wider than it."""
    return np.asarray(render_columns([text], size, at=(6, 6), page=(size + 12, int(size * 1.2) * len(text) + 12)))


def line(text: str, size: int = 32, angle: float = 0, colour="black", ground="white") -> np.ndarray:
    font = ImageFont.truetype(FONT, size)
    width = int(font.getlength(text)) + 40
    image = Image.new("RGB", (width, size * 2), ground)
    ImageDraw.Draw(image).text((20, size // 3), text, font=font, fill=colour)
    return np.asarray(image.rotate(angle, expand=True, fillcolor=ground, resample=Image.Resampling.BICUBIC))


def entry(reads: str, reads_vertical: bool = False) -> ModelEntry:
    return ModelEntry(id="test/reader", kind="ocr", backend="tesseract", description="a reader", languages=["ja"],
                      reads=reads, reads_vertical=reads_vertical)


def test_a_column_is_cut_into_its_characters_even_where_one_character_has_gaps_of_its_own():
    # 二 and 三 are strokes with blank rows between them: each is still one cell.
    assert len(character_cells(column("二三人"))) == 3
    assert len(character_cells(column("東京駅です"))) == 5


def test_a_column_becomes_a_line_of_its_characters_left_to_right():
    pixels = column("東京駅")
    as_line = column_as_line(pixels)
    assert as_line.shape[1] > 2.5 * as_line.shape[0]  # three square cells side by side
    # The first character (東, at the column's top) is now on the left: the left third matches it.
    top = pixels[character_cells(pixels)[0][0]:character_cells(pixels)[0][1]]
    ink_left = (as_line[:, : as_line.shape[1] // 3] < 128).sum()
    assert abs(int(ink_left) - int((top < 128).sum())) <= 0.1 * (top < 128).sum()


@pytest.mark.parametrize("turn", [90, -90])
def test_a_latin_line_set_on_its_side_is_turned_upright_whichever_way_it_was_turned(turn):
    upright = line("Rayon des livres anciens")
    on_its_side = np.asarray(Image.fromarray(upright).rotate(turn, expand=True, fillcolor="white"))
    assert on_its_side.shape[0] > on_its_side.shape[1]
    turned = turned_upright(on_its_side)
    assert turned.shape == upright.shape
    dark = upright < 128
    assert ((turned < 128) == dark).mean() > 0.99 > ((np.rot90(turned, 2) < 128) == dark).mean()


@pytest.mark.parametrize("angle", [-12, -6, 7, 15])
def test_a_slanted_line_is_levelled(angle):
    slanted = line("Attention : sol glissant", angle=angle)
    assert abs(slant(slanted) - angle) <= 1
    assert abs(slant(levelled(slanted))) <= 1


def test_a_level_line_is_left_as_it_is():
    level = line("La boulangerie est fermée")
    assert slant(level) == 0 and levelled(level) is level


def test_line_and_block_readers_get_vertical_blocks_as_lines_unless_they_read_columns():
    pixels = column("東京駅")
    page = np.full((pixels.shape[0] + 20, 200, 3), 255, np.uint8)
    page[10:10 + pixels.shape[0], 100:100 + pixels.shape[1]] = pixels
    box = Box(100, 10, 100 + pixels.shape[1], 10 + pixels.shape[0])
    vertical = [Block(box, [[box]], vertical=True)]
    for reads in ("line", "block"):
        [crop] = crops_for(page, vertical, entry(reads))
        assert crop.shape[1] > 1.5 * crop.shape[0], reads  # a horizontal line (a block reader's with a margin)
        [as_it_stands] = crops_for(page, vertical, entry(reads, reads_vertical=True))
        assert as_it_stands.shape[0] > 2 * as_it_stands.shape[1], reads  # the column itself


def test_a_tall_block_of_short_lines_is_not_turned_but_a_block_of_lines_on_their_side_is():
    words = [line(word) for word in ("Tea", "Coffee", "Cake", "Bread", "Jam")]
    page = np.full((sum(w.shape[0] for w in words), max(w.shape[1] for w in words), 3), 255, np.uint8)
    boxes, top = [], 0
    for word in words:
        page[top:top + word.shape[0], :word.shape[1]] = word
        boxes.append(Box(0, top, word.shape[1], top + word.shape[0]))
        top += word.shape[0]
    listed = Block(Box(0, 0, page.shape[1], page.shape[0]), [[box] for box in boxes])
    assert listed.box.is_column
    [crop] = crops_for(page, [listed], entry("block"))
    assert crop.shape == page.shape  # as it stands: a list, read top to bottom
    on_its_side = np.ascontiguousarray(np.rot90(page))
    turned = Block(Box(0, 0, on_its_side.shape[1], on_its_side.shape[0]),
                   [[Box(b.b, 0, b.t, on_its_side.shape[0])] for b in boxes])
    [crop] = crops_for(on_its_side, [turned], entry("block"))
    assert crop.shape == page.shape


def test_a_column_among_a_vertical_scripts_lines_is_read_as_characters_not_as_a_latin_line_on_its_side():
    pixels = column("東京駅")
    page = np.full((pixels.shape[0] + 20, 300, 3), 255, np.uint8)
    page[10:10 + pixels.shape[0], 10:10 + pixels.shape[1]] = pixels
    box = Box(10, 10, 10 + pixels.shape[1], 10 + pixels.shape[0])
    mixed = [Block(Box(10, 10, 290, 10 + pixels.shape[0]), [[box, Box(100, 10, 290, 50)]])]  # a horizontal block
    standing = page[box.b:box.t, box.l:box.r]
    as_characters, _ = crops_for(page, mixed, entry("line"), vertical_script=True)
    assert np.array_equal(as_characters, column_as_line(standing))
    turned, _ = crops_for(page, mixed, entry("line"))  # a Latin page: a line set on its side
    assert np.array_equal(turned, turned_upright(standing))


def test_texts_read_per_orientation_go_back_in_block_order():
    blocks = [Block(Box(0, 0, 9, 9), [[Box(0, 0, 9, 9)]], vertical=v) for v in (True, False, True)]
    across, columns = by_orientation(blocks)
    assert (len(across), len(columns)) == (1, 2)
    assert in_block_order(blocks, ["h"], ["v1", "v2"]) == ["v1", "h", "v2"]
    assert block_texts([" a\nb "], [blocks[1]], entry("block"), "") == ["a\nb"]


def test_the_registry_refuses_a_vertical_model_that_does_not_read_vertical_text():
    registry = Registry.load()
    entries = list(registry.entries.values())
    broken = [e.model_copy(update={"vertical_model": "tesseract/eng"}) if e.id == "tesseract/jpn" else e
              for e in entries]
    with pytest.raises(RegistryError, match="vertical_model 'tesseract/eng'"):
        Registry(broken)
    assert registry.get("tesseract/jpn").vertical_model == "tesseract/jpn_vert"
    assert registry.get("tesseract/jpn_vert").reads_vertical


class ColumnsAndLines(FakeStages):
    """One vertical block (a column) and one horizontal block per image."""

    def __init__(self):
        super().__init__()
        self.read_by = []

    async def detect(self, model_id, image, lang, options):
        return [Block(Box(100, 0, 130, 90), [[Box(100, 0, 130, 90)]], vertical=True),
                Block(Box(0, 100, 80, 120), [[Box(0, 100, 80, 120)]])]

    async def read(self, model_id, crops, lang, options):
        self.read_by.append((model_id, [crop.shape[:2] for crop in crops], options.get("psm")))
        return [f"{model_id} read it" for _ in crops]


def test_the_pipeline_reads_vertical_blocks_with_the_ocr_models_vertical_sibling(tmp_path):
    stages = ColumnsAndLines()
    service = in_process_service(tmp_path, stages)
    asyncio.run(service.catalogue.set_lang("ja", "en"))
    asyncio.run(service.catalogue.set_models(chosen(box="easyocr/craft", ocr="tesseract/jpn", tsl="original")))
    image = Image.new("RGB", (160, 140), "white")
    contents, md5 = encode(image)
    answer = asyncio.run(service.pipeline.run_ocrtsl(contents=contents, md5=md5, force=False, given_options=None,
                                                     overrides=Overrides()))
    assert [block.ocr for block in answer] == ["tesseract/jpn_vert read it", "tesseract/jpn read it"]
    by_model = {model: (shapes, psm) for model, shapes, psm in stages.read_by}
    assert by_model["tesseract/jpn_vert"] == ([(90, 30)], 5)  # the column as it stands, its own psm
    assert by_model["tesseract/jpn"] == ([(20, 80)], 6)
