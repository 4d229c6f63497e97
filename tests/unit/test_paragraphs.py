"""Paragraph grouping on rendered pictures: lines join one block only when their text sizes are close,
their colours agree and no empty strip between columns runs through them (issue: a sign's slogan,
English line and Japanese line glued into one block, one translation over the whole sign)."""

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from core.boxes import Box, MergeTolerances, merge_into_blocks
from core.imaging import ink_mask, text_colour
from core.options import resolve
from inference.detection import detect_blocks
from tests.support.images import FONT, encode

DETECTOR = "rapidocr/ppocr-v4-det"
RED, BLACK, GREY = (200, 30, 30), (0, 0, 0), (60, 60, 60)


def picture(size: tuple[int, int], texts: list[tuple[tuple[int, int], str, int, tuple[int, int, int]]]) -> np.ndarray:
    """White picture with each (position, text, font size, colour) drawn on it."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    for position, text, font_size, colour in texts:
        draw.multiline_text(position, text, font=ImageFont.truetype(FONT, font_size), fill=colour, spacing=10)
    return np.array(image)


SLOGAN = picture((760, 330), [((30, 20), "BIG SALE", 72, RED),
                              ((30, 130), "Every shoe in the shop\nat half its price today", 24, BLACK)])
TWO_COLUMNS = picture((820, 300), [
    ((30, 30), "The first column has\nthree short lines of\ntext in one block.", 24, BLACK),
    ((312, 30), "The second column\nstands beside it, a\nnarrow gap apart.", 24, BLACK)])
RED_OVER_BLACK = picture((760, 200), [((30, 30), "Warning: wet floor here", 28, RED),
                                      ((30, 70), "Please walk around it", 28, BLACK)])




def blocks(registry, detector, image, **given):
    return detect_blocks(detector, image, "en", resolve(registry.get(DETECTOR).option_specs, given))


def test_a_large_slogan_stays_apart_from_the_small_lines_under_it(registry, detector):
    found = blocks(registry, detector, SLOGAN)
    assert [len(block.singles) for block in found] == [1, 2]
    assert found[0].box.t < found[1].box.b


def test_columns_side_by_side_are_separate_blocks(registry, detector):
    found = blocks(registry, detector, TWO_COLUMNS)
    assert [len(block.lines) for block in found] == [3, 3], found
    assert found[0].box.r < found[1].box.l


def test_lines_of_different_colours_are_separate_blocks_unless_the_option_allows(registry, detector):
    assert [len(block.singles) for block in blocks(registry, detector, RED_OVER_BLACK)] == [1, 1]
    assert len(blocks(registry, detector, RED_OVER_BLACK, merge_colour_distance=1)) == 1


def test_the_text_colour_is_the_inks_not_the_papers():
    image = picture((300, 80), [((10, 10), "Red text", 40, RED)])
    colour = text_colour(image, ink_mask(image))
    assert max(abs(a - b) for a, b in zip(colour, RED, strict=True)) < 40, colour
    grey = picture((300, 80), [((10, 10), "Grey text", 40, GREY)])
    dark = text_colour(grey, ink_mask(grey))
    assert max(abs(a - 60) for a in dark) < 40, dark


def test_a_line_broken_by_a_wide_gap_is_not_a_column_break():
    pieces = [Box(10, 10, 200, 40), Box(260, 10, 400, 40), Box(10, 50, 400, 80)]
    assert len(merge_into_blocks(pieces, MergeTolerances())) == 1


def test_columns_come_back_as_blocks_over_http(live):
    from tests.support.live import select_models

    select_models(live, {"box_model_id": DETECTOR, "ocr_model_id": "tesseract/eng", "tsl_model_id": "apertium/eng-spa"})
    contents, md5 = encode(Image.fromarray(TWO_COLUMNS))
    response = live.http.post("/run_ocrtsl/", json={"contents": contents, "md5": md5})
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert len(result) == 2, result
    assert result[0]["ocr"].startswith("The first column") and result[1]["ocr"].startswith("The second column")
