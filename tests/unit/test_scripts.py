"""Blocks whose lines read in two writing systems are answered as two: the rule (core/scripts.py) and the
pipeline's answers built with it (new run, forced run, md5-only call)."""

import asyncio

import pytest
from PIL import Image

from core.boxes import Block, Box, enclosing
from core.scripts import AnsweredBlock, as_answered, by_script, writing_system
from service.jobs import Overrides
from tests.support.images import encode
from tests.support.services import FakeStages, in_process_service, select_all


@pytest.mark.parametrize(("line", "system"), [
    ("ポイ捨て禁止!", "cjk"), ("清潔できれいな港区を", "cjk"), ("NO LITTER", "latin"), ("Café déjà vu", "latin"),
    ("서울특별시", "cjk"), ("北京市", "cjk"), ("Москва", "cyrillic"), ("Αθήνα", "greek"),
    ("ＮＯ ＬＩＴＴＥＲ", "latin"),  # full-width Latin is Latin
    ("2024-05-01", None), ("!!", None), ("A", None),  # too few letters to say
    ("港区 MINATO CITY", None), ("Tシャツ", None), ("ab вг", None), ("BIENVENUE A PARIS 東", None),  # mixed
    ("本文档描述TEXLive软件的主要功能和特性，TEXLive是TEX及其相关程序", None),  # a paragraph's line naming software
])
def test_a_line_is_in_a_system_when_all_its_letters_are(line, system):
    assert writing_system(line) == system


def lines_block(*lines: Box) -> Block:
    return Block(enclosing(list(lines)), [[line] for line in lines])


TOP, MIDDLE, BOTTOM = Box(10, 10, 210, 40), Box(10, 45, 200, 75), Box(10, 80, 190, 110)


def test_a_block_of_two_systems_is_answered_as_one_block_per_run_of_lines():
    block = lines_block(TOP, MIDDLE, BOTTOM)
    assert by_script(block, "ポイ捨て禁止!\nNO LITTER\nPLEASE") == [
        AnsweredBlock(TOP, "ポイ捨て禁止!"), AnsweredBlock(enclosing([MIDDLE, BOTTOM]), "NO LITTER\nPLEASE")]
    assert by_script(block, "NO LITTER\n清潔できれいな港区を\nMINATO CITY") == [
        AnsweredBlock(TOP, "NO LITTER"), AnsweredBlock(MIDDLE, "清潔できれいな港区を"),
        AnsweredBlock(BOTTOM, "MINATO CITY")]


def test_a_split_run_is_boxed_around_all_the_pieces_of_its_lines():
    left, right = Box(10, 45, 90, 75), Box(100, 45, 200, 75)
    block = Block(enclosing([TOP, left, right]), [[TOP], [left, right]])
    assert by_script(block, "Москва\nMOSCOW CITY") == [AnsweredBlock(TOP, "Москва"),
                                                      AnsweredBlock(Box(10, 45, 200, 75), "MOSCOW CITY")]


def test_lines_without_a_system_stay_with_their_neighbours():
    block = lines_block(TOP, MIDDLE, BOTTOM)
    assert by_script(block, "2024\nポイ捨て禁止\nNO LITTER") == [
        AnsweredBlock(enclosing([TOP, MIDDLE]), "2024\nポイ捨て禁止"), AnsweredBlock(BOTTOM, "NO LITTER")]
    assert by_script(block, "ポイ捨て禁止\n03-1234\nNO LITTER") == [
        AnsweredBlock(enclosing([TOP, MIDDLE]), "ポイ捨て禁止\n03-1234"), AnsweredBlock(BOTTOM, "NO LITTER")]


def test_a_block_in_one_system_or_whose_text_does_not_match_its_lines_is_answered_whole():
    block = lines_block(TOP, MIDDLE, BOTTOM)
    japanese = "港区の\n清潔できれいな\n港区を"
    assert by_script(block, japanese) == [AnsweredBlock(block.box, japanese)]
    paragraph = "TEXLive包括了TEX，LATEX2e，ConTEXt，METAFONT\n类繁多的宏包、字体和文档\n它还包含了源代码"
    assert by_script(block, paragraph) == [AnsweredBlock(block.box, paragraph)]  # its first line mixes systems
    # A block reader that read three lines as two (or four): which text belongs to which line is unknown.
    assert by_script(block, "ポイ捨て禁止\nNO LITTER") == [AnsweredBlock(block.box, "ポイ捨て禁止\nNO LITTER")]
    assert by_script(block, "a\nポイ捨て\n禁止\nNO") == [AnsweredBlock(block.box, "a\nポイ捨て\n禁止\nNO")]
    # Blank lines a block reader puts between paragraphs are not lines of the block.
    assert by_script(block, "ポイ捨て禁止\n\nNO LITTER\nPLEASE\n")[0] == AnsweredBlock(TOP, "ポイ捨て禁止")
    single = lines_block(TOP)
    assert by_script(single, "ポイ捨て NO LITTER") == [AnsweredBlock(TOP, "ポイ捨て NO LITTER")]


def test_a_vertical_blocks_columns_split_like_lines():
    right, left = Box(200, 10, 240, 300), Box(150, 10, 190, 300)
    block = Block(enclosing([right, left]), [[right], [left]], vertical=True)
    assert by_script(block, "東京都庁\nTOKYO") == [AnsweredBlock(right, "東京都庁"), AnsweredBlock(left, "TOKYO")]


def test_a_page_is_answered_in_reading_order_with_split_blocks_in_place():
    first, second = lines_block(TOP, MIDDLE), lines_block(Box(10, 200, 100, 230))
    assert as_answered([first, second], ["Москва\nMOSCOW", "Привет"]) == [
        AnsweredBlock(TOP, "Москва"), AnsweredBlock(MIDDLE, "MOSCOW"), AnsweredBlock(second.box, "Привет")]


class ReadsASign(FakeStages):
    """One block of two lines, read as a Japanese line over an English one."""

    async def detect(self, model_id, image, lang, options):
        self.calls["detect"] += 1
        return [lines_block(TOP, MIDDLE)]

    async def read(self, model_id, crops, lang, options):
        self.calls["read"] += len(crops)
        return ["ポイ捨て禁止\nno litter"] * len(crops)


def test_the_server_answers_and_translates_each_system_apart_and_stores_the_detectors_block(tmp_path):
    service = in_process_service(tmp_path, ReadsASign())
    select_all(service)
    contents, md5 = encode(Image.new("RGB", (240, 140), "white"))

    def run(**given):
        call = {"contents": None, "md5": None, "force": False, "given_options": None, "overrides": Overrides()}
        return [(b.ocr, b.tsl, b.box) for b in asyncio.run(service.pipeline.run_ocrtsl(**{**call, **given}))]

    expected = [("ポイ捨て禁止", "ポイ捨て禁止", list(TOP)), ("no litter", "NO LITTER", list(MIDDLE))]
    assert run(contents=contents, md5=md5) == expected  # FakeStages upper-cases
    assert service.stages.calls["translate"] == 2  # each line translated apart
    assert run(md5=md5) == expected  # the md5-only call answers the same blocks from the store
    assert run(contents=contents, md5=md5, force=True) == expected
    [stored] = service.store.find_blocks(md5, service.pipeline.jobs.resolve(Overrides(), None, True).box_key)
    assert stored.block == lines_block(TOP, MIDDLE)  # the detector's block, kept whole
