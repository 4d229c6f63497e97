from core.boxes import Box, MergeTolerances, join_lines, merge_into_blocks

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
    assert len(merge_into_blocks([title, body], MergeTolerances(height_ratio=4))) == 1


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
