import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from core.boxes import Box, MergeTolerances, colour_difference, join_lines, merge_into_blocks
from core.imaging import crop, ink_mask, split_stacked, text_colour
from tests.support.images import CJK_FONT, FONT

TOL = MergeTolerances()


def test_lines_of_a_paragraph_merge_and_paragraphs_stay_apart():
    singles = [Box(27, 29, 413, 67), Box(28, 66, 152, 96), Box(148, 62, 372, 104),  # paragraph 1, line 2 in 2
               Box(30, 222, 382, 254), Box(27, 254, 361, 292)]                      # paragraph 2
    blocks = merge_into_blocks(singles, TOL)
    assert [b.box for b in blocks] == [Box(27, 29, 413, 104), Box(27, 222, 382, 292)]
    assert [len(line) for line in blocks[0].lines] == [1, 2]
    assert blocks[0].lines[1][0].l < blocks[0].lines[1][1].l  # left to right inside a line


def test_paragraphs_one_blank_line_apart_stay_apart():
    # CRAFT boxes of a poster: two-line paragraphs whose lines touch, 18 px apart at 26 px text.
    first = [Box(246, 169, 595, 196), Box(245, 194, 546, 222)]
    second = [Box(320, 240, 624, 266), Box(318, 266, 528, 292)]
    blocks = merge_into_blocks([*second, *first], TOL)
    assert [b.box for b in blocks] == [Box(245, 169, 595, 222), Box(318, 240, 624, 292)]


def test_title_does_not_join_body_text_of_another_size():
    title = Box(10, 10, 400, 90)  # 80 px high
    body = Box(10, 100, 300, 125)  # 25 px high, close below
    assert len(merge_into_blocks([title, body], TOL)) == 2
    assert len(merge_into_blocks([title, body], MergeTolerances(height_ratio=4, line_height_ratio=4))) == 1


def test_line_gap_tolerance_is_an_option():
    a, c = Box(0, 0, 200, 20), Box(0, 40, 200, 60)  # gap of one line height
    assert len(merge_into_blocks([a, c], TOL)) == 2
    assert len(merge_into_blocks([a, c], MergeTolerances(line_gap=1.2))) == 1


def test_blocks_in_reading_order_rows_then_left_to_right():
    right, left, below = Box(300, 10, 400, 30), Box(10, 12, 100, 32), Box(10, 200, 100, 220)
    assert [b.box for b in merge_into_blocks([below, right, left], TOL)] == [left, right, below]


def test_vertical_japanese_columns_read_right_to_left():
    # Three columns of one speech bubble, and a second bubble to their left.
    columns = [Box(100, 10, 120, 200), Box(130, 10, 150, 150), Box(160, 10, 180, 220)]
    other = Box(10, 10, 30, 100)
    blocks = merge_into_blocks([*columns, other], TOL, vertical_script=True)
    assert len(blocks) == 2
    assert blocks[0].vertical and blocks[0].box == Box(100, 10, 180, 220)
    assert [line[0] for line in blocks[0].lines] == [columns[2], columns[1], columns[0]]
    assert blocks[1].box == other  # the bubble on the left is read after


def test_horizontal_boxes_of_vertical_languages_stay_lines():
    blocks = merge_into_blocks([Box(10, 10, 300, 40), Box(10, 45, 280, 75)], TOL, vertical_script=True)
    assert len(blocks) == 1 and not blocks[0].vertical
    assert blocks[0].lines == [[Box(10, 10, 300, 40)], [Box(10, 45, 280, 75)]]


def test_join_lines_uses_the_language_separator():
    assert join_lines([["The cat", "is"], ["black."]], " ") == "The cat is\nblack."
    assert join_lines([["猫", "は"], ["黒い"]], "") == "猫は\n黒い"
    assert join_lines([[" "], ["x"]], " ") == "x"
    assert join_lines([["Let us   first", " go "]], " ") == "Let us first go"


def test_colour_difference_runs_from_zero_to_one():
    assert colour_difference((255, 0, 0), (255, 0, 0)) == 0
    assert colour_difference((0, 0, 0), (255, 255, 255)) == pytest.approx(1.0)
    assert colour_difference((0, 0, 0), (255, 0, 0)) == pytest.approx(3 ** -0.5)
    with pytest.raises(ValueError):  # an RGBA colour is a caller's mistake, not a shorter distance
        colour_difference((0, 0, 0, 255), (0, 0, 0))


def test_colours_exactly_at_the_tolerance_still_merge():
    line, word = Box(0, 0, 200, 20), Box(210, 0, 260, 20)
    black, grey = (0, 0, 0), (60, 60, 60)
    at = MergeTolerances(colour_distance=colour_difference(black, grey))
    assert len(merge_into_blocks([line, word], at, colours=[black, grey])) == 1
    assert len(merge_into_blocks([line, word], MergeTolerances(colour_distance=0.1), colours=[black, grey])) == 2


def test_a_narrow_word_at_the_end_of_a_line_joins_it():
    # "I" is taller than wide: without a vertical script it is text of the line's height, not a column.
    assert len(merge_into_blocks([Box(0, 0, 200, 40), Box(220, 0, 240, 40)], TOL)) == 1


def test_tall_boxes_are_big_letters_of_one_line_unless_the_script_is_vertical():
    tall = [Box(100, 10, 120, 200), Box(200, 10, 220, 200)]
    blocks = merge_into_blocks(tall, TOL)
    assert len(blocks) == 1 and not blocks[0].vertical and blocks[0].lines == [tall]
    assert len(merge_into_blocks(tall, TOL, vertical_script=True)) == 2


def test_a_column_broken_in_two_pieces_is_one_column_read_top_to_bottom():
    right, left = Box(160, 10, 180, 220), Box(100, 10, 120, 200)
    top, bottom = Box(132, 10, 152, 100), Box(126, 125, 146, 215)  # a 25 px gap, 6 px sideways
    blocks = merge_into_blocks([bottom, left, top, right], TOL, vertical_script=True)
    assert len(blocks) == 1 and blocks[0].vertical
    assert blocks[0].lines == [[right], [top, bottom], [left]]
    alone = merge_into_blocks([bottom, top], TOL, vertical_script=True)
    assert len(alone) == 1 and alone[0].lines == [[top, bottom]]


def test_lines_are_grouped_by_their_middles_and_read_top_to_bottom():
    # Tight detector boxes: the second line starts further left and overlaps the first by 6 px; a
    # word of the first line sits 6 px lower.
    first, word, second = Box(30, 0, 200, 20), Box(210, 6, 300, 26), Box(0, 14, 200, 34)
    blocks = merge_into_blocks([second, word, first], TOL)
    assert len(blocks) == 1 and blocks[0].lines == [[first, word], [second]]


def test_two_columns_of_text_side_by_side_are_two_blocks_but_touching_words_are_not():
    west = [Box(0, 0, 100, 20), Box(0, 25, 150, 45)]  # the second line is the longer one
    east = [Box(170, 0, 300, 20), Box(170, 25, 280, 45)]
    blocks = merge_into_blocks([*west, *east], TOL)
    assert [b.lines for b in blocks] == [[[west[0]], [west[1]]], [[east[0]], [east[1]]]]
    touching = [Box(150, 0, 300, 20), Box(150, 25, 280, 45)]
    assert len(merge_into_blocks([*west, *touching], TOL)) == 1
    # Two lines beside one: a line broken by a gap, not two columns.
    assert len(merge_into_blocks([Box(0, 0, 100, 20), Box(0, 25, 100, 45), Box(120, 0, 300, 20)], TOL)) == 1


def test_blocks_that_overlap_a_little_in_height_are_read_top_first():
    upper_right, lower_left = Box(400, 0, 500, 100), Box(0, 90, 100, 190)
    assert [b.box for b in merge_into_blocks([lower_left, upper_right], TOL)] == [upper_right, lower_left]


def test_a_line_ending_in_one_tall_glyph_stays_a_line_in_a_vertical_script():
    blocks = merge_into_blocks([Box(0, 0, 20, 30), Box(25, 0, 80, 20)], TOL, vertical_script=True)
    assert len(blocks) == 1 and not blocks[0].vertical


def test_horizontal_blocks_of_a_vertical_script_read_left_to_right():
    left, right = Box(10, 10, 100, 30), Box(300, 10, 400, 30)
    assert [b.box for b in merge_into_blocks([right, left], TOL, vertical_script=True)] == [left, right]


@pytest.mark.parametrize("a,c,merged", [
    (Box(0, 0, 200, 30), Box(0, 32, 200, 52), True),  # lines' sizes exactly line_height_ratio apart
    (Box(0, 0, 200, 40), Box(220, 0, 260, 20), True),  # pieces' sizes exactly height_ratio apart
    (Box(0, 0, 100, 20), Box(130, 0, 200, 20), True),  # a gap of exactly word_gap
    (Box(0, 0, 100, 20), Box(110, 10, 200, 30), True),  # beside, overlapping exactly half a line
    (Box(0, 0, 100, 20), Box(110, 15, 200, 35), False),  # beside, but overlapping less than half a line
    (Box(0, 0, 100, 20), Box(100, 25, 200, 45), False),  # corner to corner: neither beside nor below
    (Box(0, 0, 100, 20), Box(99, 25, 105, 45), True),  # below, overlapping by one pixel, right edges aligned
    (Box(0, 0, 100, 20), Box(99, 25, 200, 45), False),  # below, overlapping by one pixel, but not aligned
])
def test_merge_tolerance_edges(a, c, merged):
    assert (len(merge_into_blocks([a, c], TOL)) == 1) is merged


def test_columns_side_by_side_stay_one_vertical_block_even_when_broken():
    # Two columns, each in two pieces: an empty strip between them is no reason to split them.
    right = [Box(160, 10, 180, 100), Box(160, 125, 180, 215)]
    left = [Box(130, 10, 150, 100), Box(130, 125, 150, 215)]
    blocks = merge_into_blocks([*left, *right], TOL, vertical_script=True)
    assert len(blocks) == 1 and blocks[0].vertical and blocks[0].lines == [right, left]


def test_overlapping_columns_are_still_two_columns():
    right, left = Box(114, 10, 134, 200), Box(100, 10, 120, 200)  # 6 px overlap at 20 px width
    blocks = merge_into_blocks([left, right], TOL, vertical_script=True)
    assert len(blocks) == 1 and blocks[0].lines == [[right], [left]]


def test_lines_join_only_when_aligned_left_right_or_centred():
    line = Box(100, 0, 400, 20)
    assert len(merge_into_blocks([line, Box(102, 22, 250, 42)], TOL)) == 1  # a paragraph's short last line
    assert len(merge_into_blocks([line, Box(250, 22, 398, 42)], TOL)) == 1  # right-aligned
    assert len(merge_into_blocks([line, Box(180, 22, 322, 42)], TOL)) == 1  # centred, as on a sign
    assert len(merge_into_blocks([line, Box(140, 22, 300, 42)], TOL)) == 2  # an indented note under it


def test_a_paragraphs_indented_first_line_joins_the_lines_below():
    first, second, last = Box(130, 0, 400, 20), Box(100, 22, 400, 42), Box(100, 44, 220, 64)
    assert len(merge_into_blocks([first, second, last], TOL)) == 1
    # A line indented under a short last line starts the next paragraph.
    assert len(merge_into_blocks([last, Box(130, 66, 400, 86)], TOL)) == 2


def test_columns_join_when_their_tops_or_middles_align():
    right, left = Box(130, 10, 150, 200), Box(100, 10, 120, 120)
    assert len(merge_into_blocks([right, left], TOL, vertical_script=True)) == 1
    middle = Box(100, 60, 120, 150)
    assert len(merge_into_blocks([right, middle], TOL, vertical_script=True)) == 1
    lower = Box(100, 80, 120, 180)
    assert len(merge_into_blocks([right, lower], TOL, vertical_script=True)) == 2


def test_a_line_in_bigger_type_does_not_join_the_small_line_under_it():
    # A sign's line over its translation in small print, both left-aligned: 1.6 times the size.
    sign, translation = Box(140, 80, 300, 128), Box(140, 130, 320, 160)
    assert len(merge_into_blocks([sign, translation], TOL)) == 2
    assert len(merge_into_blocks([sign, translation], MergeTolerances(line_height_ratio=2))) == 1
    # Beside each other, a small word stays in its line (a word without ascenders).
    assert len(merge_into_blocks([Box(0, 0, 200, 48), Box(220, 18, 260, 48)], TOL)) == 1


def _stacked_sign(gap: int) -> tuple[np.ndarray, Box]:
    image = Image.new("RGB", (400, 200), "white")
    draw = ImageDraw.Draw(image)
    draw.text((40, 20), "售票处", font=ImageFont.truetype(CJK_FONT, 56), fill="black")
    draw.text((40, 20 + 64 + gap), "Tickets", font=ImageFont.truetype(FONT, 22), fill="black")
    return np.asarray(image), Box(30, 10, 260, 20 + 64 + gap + 34)


def test_one_box_over_a_big_line_and_a_small_one_is_cut_between_them():
    pixels, box = _stacked_sign(gap=12)
    parts = split_stacked(pixels, box, TOL.line_height_ratio)
    (big, _), (small, _) = parts
    assert big.b == box.b and small.t == box.t and 20 + 60 <= big.t == small.b <= 20 + 64 + 12
    assert small.r < big.r  # each part narrowed to its own ink: "Tickets" is the shorter line
    for part, colour in parts:  # each part's text colour, as from its own ink
        inside = crop(pixels, part)
        assert colour == text_colour(inside, ink_mask(inside))
    # Two lines of one size stay one box, though the second has no ascenders and the first accents.
    same = np.asarray(_two_lines_of_one_size())
    [(whole, _)] = split_stacked(same, Box(30, 10, 360, 110), TOL.line_height_ratio)
    assert whole == Box(30, 10, 360, 110)


def _two_lines_of_one_size() -> Image.Image:
    image = Image.new("RGB", (400, 130), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(FONT, 26)
    draw.text((40, 20), "Élan, idée: équipe", font=font, fill="black")
    draw.text((40, 60), "on we come", font=font, fill="black")
    return image


def test_a_stray_piece_inside_a_lines_box_joins_it_whatever_its_size():
    line, accent = Box(10, 10, 400, 50), Box(200, 12, 212, 22)  # a detector's mark boxed apart
    [block] = merge_into_blocks([line, accent], TOL)
    assert block.box == line


def test_a_latin_line_set_on_its_side_in_two_pieces_is_one_block():
    top, bottom = Box(716, 132, 746, 388), Box(713, 389, 754, 488)  # "des livres anciens" over "Rayon"
    assert len(merge_into_blocks([top, bottom], TOL)) == 1


def test_word_spaces_of_a_centred_titles_two_lines_are_no_gutter():
    # Two centred lines whose word spaces happen to line up: one block, not two columns.
    title = [Box(18, 18, 355, 50), Box(368, 18, 534, 50), Box(40, 52, 340, 84), Box(352, 52, 512, 84)]
    assert len(merge_into_blocks(title, TOL)) == 1
    # A real gutter (two lines of text each side, a line height apart) still splits.
    columns = [Box(0, 0, 200, 30), Box(0, 32, 200, 62), Box(240, 0, 440, 30), Box(240, 32, 440, 62)]
    assert len(merge_into_blocks(columns, TOL)) == 2


def test_a_left_aligned_line_that_stops_early_ends_its_paragraph():
    # A paragraph's short last line, then a new paragraph whose first line runs far further right:
    # the words that begin it would have fit, so the short line ended the paragraph.
    lines = [Box(20, 0, 700, 20), Box(20, 22, 260, 42), Box(20, 44, 720, 64), Box(20, 66, 700, 86)]
    blocks = merge_into_blocks(lines, TOL)
    assert [block.box for block in blocks] == [Box(20, 0, 700, 42), Box(20, 44, 720, 86)]
    # Centred lines of different lengths (a sign, a bubble) stay one block.
    centred = [Box(300, 0, 400, 20), Box(200, 22, 500, 42), Box(250, 44, 450, 64)]
    assert len(merge_into_blocks(centred, TOL)) == 1
