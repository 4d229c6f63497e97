"""The reading benchmark (bench/reading.py): its scoring (page CER, block matching with merges and splits,
reading order), the consistency of its development set's ground truth, and a tiny run end to end."""

import os
import re
import subprocess
import sys

import pytest
from PIL import Image

from bench.reading import dataset
from bench.reading.scoring import (
    ReadBlock,
    Summary,
    TruthBlock,
    cer,
    edit_distance,
    normalise,
    order_agreement,
    score_page,
)
from tests.support.paths import ROOT

TWO_PARAGRAPHS = (TruthBlock("The quick brown fox", (10, 10, 210, 40)),
                  TruthBlock("jumps over the dog", (10, 100, 210, 130)))


def test_edit_distance_and_cer():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3
    assert cer("The quick  brown\nfox", "The quick brown fox", "en") == 0.0
    assert cer("The quick brown fix", "The quick brown fox", "en") == pytest.approx(1 / 19)
    assert cer("", "abc", "en") == 1.0
    assert cer("x" * 50, "abc", "en") == 1.0  # capped: noise counts as nothing read
    assert cer("", "", "en") == 0.0


def test_normalisation_drops_spaces_only_where_the_script_has_none():
    # Japanese and Chinese are written without spaces; full-width and vertical presentation forms are plain.
    assert normalise("まだ 話は\n終わって ない", "ja") == "まだ話は終わってない"
    assert cer("ちょっと待って!", "ちょっと待って！", "ja") == 0.0
    assert normalise("︵注︶﹁はい﹂", "ja") == "(注)「はい」"
    assert normalise("오늘의  메뉴", "ko") == "오늘의 메뉴"
    assert normalise("ﬁle", "en") == "file"


def test_a_perfect_reading_scores_perfectly():
    read = [ReadBlock(block.text, block.box) for block in TWO_PARAGRAPHS]
    score = score_page(TWO_PARAGRAPHS, read, "en")
    assert (score.cer, score.recall, score.precision, score.merges, score.splits, score.order) == (0, 1, 1, 0, 0, 1)


def test_a_block_over_two_paragraphs_is_a_merge_and_recalls_neither():
    merged = [ReadBlock("The quick brown fox jumps over the dog", (8, 8, 212, 132))]
    score = score_page(TWO_PARAGRAPHS, merged, "en")
    assert score.merges == 1 and score.splits == 0
    assert score.recalled == 0 and score.recall == 0.0 and score.precision == 0.0
    assert score.cer == 0.0  # the text is all there, in order: only the blocks are wrong


def test_a_paragraph_read_in_two_pieces_is_a_split():
    pieces = [ReadBlock("The quick", (10, 10, 100, 40)), ReadBlock("brown fox", (110, 10, 210, 40)),
              ReadBlock("jumps over the dog", (9, 98, 212, 131))]
    score = score_page(TWO_PARAGRAPHS, pieces, "en")
    assert score.splits == 1 and score.merges == 0
    assert score.recalled == 1 and score.recall == 0.5
    assert score.precise == 1 and score.precision == pytest.approx(1 / 3)
    assert score.matches == {1: 2}


def test_a_box_far_larger_than_its_block_is_no_match():
    # It touches the block (the block lies inside it) but their IoU is far below MATCH_IOU.
    score = score_page(TWO_PARAGRAPHS[:1], [ReadBlock("The quick brown fox", (0, 0, 600, 400))], "en")
    assert score.recalled == 0 and score.merges == 0 and score.splits == 0 and score.spurious == 0


def test_missed_and_spurious_blocks():
    score = score_page(TWO_PARAGRAPHS, [ReadBlock("The quick brown fox", (10, 10, 210, 40)),
                                        ReadBlock("noise", (400, 400, 450, 420))], "en")
    assert score.missed == 1 and score.spurious == 1 and score.recall == 0.5 and score.precision == 0.5


def test_optional_blocks_count_for_nothing():
    truth = (TruthBlock("debian", (300, 0, 400, 40), optional=True), *TWO_PARAGRAPHS)
    with_logo = [ReadBlock("debian", (300, 0, 400, 40)), *(ReadBlock(b.text, b.box) for b in TWO_PARAGRAPHS)]
    without = [ReadBlock(b.text, b.box) for b in TWO_PARAGRAPHS]
    for read in (with_logo, without):
        score = score_page(truth, read, "en")
        assert (score.truth_blocks, score.predicted, score.recall, score.precision, score.cer) == (2, 2, 1, 1, 0)


def test_reading_order():
    assert order_agreement([0, 1, 2]) == 1.0
    assert order_agreement([2, 1, 0]) == 0.0
    assert order_agreement([0, 2, 1]) == pytest.approx(2 / 3)
    assert order_agreement([0]) is None
    backwards = [ReadBlock(b.text, b.box) for b in reversed(TWO_PARAGRAPHS)]
    score = score_page(TWO_PARAGRAPHS, backwards, "en")
    assert score.order == 0.0 and score.recall == 1.0
    assert score.cer > 0  # the page's text comes out in the wrong order
    assert score_page(TWO_PARAGRAPHS, backwards, "en", order_scored=False).order is None


def test_summary_weighs_blocks_for_recall_and_pages_for_cer():
    perfect = score_page(TWO_PARAGRAPHS, [ReadBlock(b.text, b.box) for b in TWO_PARAGRAPHS], "en")
    nothing = score_page(TWO_PARAGRAPHS[:1], [], "en")
    summary = Summary.of([perfect, nothing])
    assert summary.pages == 2 and summary.cer == 0.5 and summary.recall == pytest.approx(2 / 3)


def test_the_development_set_is_consistent():
    pages = dataset.load()
    assert {page.language for page in pages} == set(dataset.LANGUAGES)
    assert sum(page.real for page in pages) >= 20
    assert not any("easyocr" in page.name for page in pages)  # EasyOCR's examples are the independent check
    for page in pages:
        width, height = Image.open(page.file).size
        assert page.blocks, page.name
        for block in page.blocks:
            left, top, right, bottom = block.box
            assert 0 <= left < right <= width and 0 <= top < bottom <= height, (page.name, block)
            assert block.text.strip(), (page.name, block)
        # No two truth blocks touch, so that a perfect reading scores perfectly.
        perfect = score_page(page.blocks, [ReadBlock(b.text, b.box) for b in page.blocks], page.language)
        assert (perfect.cer, perfect.recall, perfect.precision, perfect.merges, perfect.splits) == (0, 1, 1, 0, 0), (
            page.name)


def test_tiny_run_prints_its_tables_and_the_targets():
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "reading.py"), "--tiny"], cwd=ROOT,
                          capture_output=True, text=True, timeout=900,
                          env={key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    out = done.stdout
    assert re.search(r"^reading benchmark: 1 images \(1 real, 0 rendered\) in en; pairs best; tiny$", out, re.M), out
    row = (r"^\| en-tesseract-phototest \| en \| scan \| rapidocr/ppocr-v4-det \+ rapidocr/ppocr-v4-rec \| "
           r"(\d\.\d{3}) \|")
    rows = re.findall(row, out, re.M)
    assert len(rows) == 2, out  # (a) the best pair and (b) the server's own choice, which keeps the default
    assert all(0 <= float(value) <= 1 for value in rows)
    assert "### Per language" in out and "### Overall" in out
    if not (ROOT / "bench" / ".original-venv").exists():
        assert "the original: skipped: the original's virtualenv bench/.original-venv is absent" in out
    targets = [line for line in out.splitlines() if line.startswith("target: ")]
    assert len(targets) == 3, out
    assert all(re.search(r"(PASS|MISS|NOT MEASURED)", line) for line in targets), targets
    assert out.rstrip().splitlines()[-1].startswith("target: not worse than the original's pipeline")
