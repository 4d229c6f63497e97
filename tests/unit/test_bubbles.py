"""Speech bubbles: a bubble's columns are one block, never joined to text outside the bubble. Pages are
drawn with Pillow; the single boxes a detector would return are the drawn columns' boxes."""

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from core.boxes import Box, MergeTolerances, enclosing, merge_into_blocks
from inference.detection import blocks_of
from tests.support.images import CJK_FONT

SIZE = 32
OPTIONS = {"merge_line_gap": 0.5, "merge_word_gap": 1.5, "merge_height_ratio": 2.0, "merge_line_height_ratio": 1.5,
           "merge_colour_distance": 0.25}
TEXT = "まだ話は終わって"


def column(draw: ImageDraw.ImageDraw, right: int, top: int, text: str = TEXT) -> Box:
    """A column of glyphs whose right edge is at `right`, and its box with a detector's margin of 2 px."""
    font = ImageFont.truetype(CJK_FONT, SIZE)
    cells = []
    for k, char in enumerate(text):
        at = (right - SIZE // 2, top + k * (SIZE + 2) + SIZE // 2)
        draw.text(at, char, font=font, fill="black", anchor="mm")
        cells.append(draw.textbbox(at, char, font=font, anchor="mm"))
    return Box(min(c[0] for c in cells) - 2, min(c[1] for c in cells) - 2,
               max(c[2] for c in cells) + 2, max(c[3] for c in cells) + 2)


def page() -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("RGB", (640, 700), "white")
    return image, ImageDraw.Draw(image)


def blocks(image: Image.Image, singles: list[Box], **options):
    return blocks_of(singles, np.asarray(image), "ja", {**OPTIONS, **options})


def merged(singles: list[Box], line_gap: float = 0.5):
    return merge_into_blocks(singles, MergeTolerances(line_gap=line_gap), vertical_script=True)


BUBBLE = (210, 125, 390, 565)


def columns_in_a_bubble(outline: bool = True, broken: bool = False) -> tuple[Image.Image, list[Box]]:
    """Two columns 24 px apart (merging joins columns up to 16 px apart at this size), in an oval
    bubble or, without its outline, on the plain page. A broken outline has a 4 px gap, as where a tail
    was drawn on carelessly."""
    image, draw = page()
    if outline:
        draw.ellipse(BUBBLE, fill="white", outline="black", width=3)
    if broken:
        draw.rectangle((BUBBLE[0] - 2, 343, BUBBLE[0] + 5, 346), fill="white")
    right = column(draw, 340, 210)
    left = column(draw, right.l - 24 + 2, 210)
    return image, [left, right]


@pytest.mark.parametrize("broken", [False, True], ids=["closed", "broken outline"])
def test_columns_of_one_bubble_wider_apart_than_merging_allows_are_one_block(broken):
    image, (left, right) = columns_in_a_bubble(broken=broken)
    assert len(merged([left, right])) == 2

    [block] = blocks(image, [left, right])
    assert block.vertical
    assert block.lines == [[right], [left]]


def test_a_bubbles_block_is_its_text_not_its_outline():
    image, (left, right) = columns_in_a_bubble()
    [block] = blocks(image, [left, right])
    assert block.box == enclosing([left, right])
    assert block.box.width < 0.6 * (BUBBLE[2] - BUBBLE[0])


def test_text_in_no_bubble_stays_as_merging_made_it():
    plain, singles = columns_in_a_bubble(outline=False)
    framed = plain.copy()  # the columns in a panel: a white page closed by a dark frame is no bubble
    ImageDraw.Draw(framed).rectangle((30, 30, 610, 670), outline="black", width=3)
    expected = [(b.box, b.lines) for b in merged(singles)]
    assert len(expected) == 2
    for image in (plain, framed):
        assert [(b.box, b.lines) for b in blocks(image, singles)] == expected


def test_two_bubbles_side_by_side_stay_two_blocks_in_right_to_left_order():
    image, draw = page()
    draw.rounded_rectangle((60, 100, 220, 440), radius=24, fill="white", outline="black", width=3)
    draw.rounded_rectangle((226, 100, 386, 440), radius=24, fill="white", outline="black", width=3)
    west = [column(draw, 166, 130), column(draw, 209, 130)]
    east = [column(draw, 269, 130), column(draw, 312, 130)]
    # Merging generously joins the facing columns across the two outlines.
    assert len(merged(west + east, line_gap=1.0)) == 1

    found = blocks(image, west + east, merge_line_gap=1.0)
    assert [b.lines for b in found] == [[[east[1]], [east[0]]], [[west[1]], [west[0]]]]
    assert [b.box for b in found] == [enclosing(east), enclosing(west)]
