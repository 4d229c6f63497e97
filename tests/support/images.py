"""Test images rendered with Pillow, and the extension's way of sending them."""

import base64
import hashlib
import io
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont
from rapidfuzz.distance import Levenshtein

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
CJK_FONT = "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"
"""Debian fonts-wqy-microhei (installed by `make test`): Chinese and Japanese glyphs."""


def render(paragraphs: list[tuple[tuple[int, int], str]], size=(820, 420), font_size=28, mode="RGB",
           background="white", font_path: str = FONT) -> Image.Image:
    image = Image.new(mode, size, background)
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(font_path, font_size)
    for position, text in paragraphs:
        draw.multiline_text(position, text, font=font, fill="black", spacing=10)
    return image


def render_columns(columns: list[str], size: int = 40, at=(40, 30), page=(400, 360)) -> Image.Image:
    """Vertical CJK text: each column top to bottom, the first on the right, the next to its left, a
    fifth of a character between characters and half a character between columns."""
    image = Image.new("RGB", page, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(CJK_FONT, size)
    right = page[0] - at[0]
    for number, text in enumerate(columns):
        left = right - size - number * int(size * 1.5)
        for index, char in enumerate(text):
            draw.text((left, at[1] + index * int(size * 1.2)), char, font=font, fill="black")
    return image


def encode(image: Image.Image, fmt: str = "PNG") -> tuple[str, str]:
    """(base64 of the file, md5 of that base64 string) as the extension computes them."""
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    contents = base64.b64encode(buffer.getvalue()).decode()
    return contents, hashlib.md5(contents.encode()).hexdigest()


# Set about one blank line apart, as on a poster or a page: the gap between the paragraphs is
# about 0.7 line heights once detected, the gap between lines of one paragraph about zero.
TWO_PARAGRAPHS = [
    ((30, 30), "The quick brown fox jumps\nover the lazy dog today."),
    ((30, 125), "Hello world, this is a test\nof paragraph detection."),
]


def char_error_rate(read: str, truth: str) -> float:
    """Levenshtein distance over the truth's length, whitespace normalised."""
    a, b = " ".join(read.split()), " ".join(truth.split())
    return Levenshtein.distance(a, b) / max(1, len(b))


def assert_same_boxes(found, expected, tolerance_px: int) -> None:
    """The same boxes in number, every edge within `tolerance_px` (paired in reading order)."""
    found, expected = (sorted(boxes, key=lambda box: (box.b, box.l)) for boxes in (found, expected))
    assert len(found) == len(expected), (found, expected)
    for one, other in zip(found, expected, strict=True):
        assert max(abs(a - b) for a, b in zip(one, other, strict=True)) <= tolerance_px, (one, other)


# One line each of English, Spanish and Japanese, far enough apart to be three blocks: a page whose
# source language is detected per block (`lang_src: auto`).
THREE_LANGUAGES = ["The dog eats bread.", "El perro come pan.", "吾輩は猫である。"]


def three_languages_page() -> Image.Image:
    return render([((30, 30 + 110 * i), line) for i, line in enumerate(THREE_LANGUAGES)], size=(700, 360),
                  font_size=36, font_path=CJK_FONT)


WORDS = {"en": ["river", "garden", "yellow", "winter", "market", "window", "silver", "island"],
         "es": ["puerta", "camino", "ventana", "jardín", "mercado", "invierno", "verano", "puente"]}


def write_pages(folder: Path, lang: str, first: int, count: int) -> dict[str, str]:
    """`count` pages of two text blocks, words of `lang`; file name -> md5 as the extension computes it."""
    folder.mkdir(parents=True, exist_ok=True)
    words, md5s = WORDS[lang], {}
    for index in range(first, first + count):
        pick = [words[(index * 3 + k) % len(words)] for k in range(4)]
        image = render([((30, 30), f"{pick[0]} {pick[1]} {index}\n{pick[2]} {pick[3]}"),
                        ((30, 220), f"{pick[3]} {pick[0]}")], size=(640, 330))
        contents, md5 = encode(image)
        (folder / f"page-{lang}-{index}.png").write_bytes(base64.b64decode(contents))
        md5s[f"page-{lang}-{index}.png"] = md5
    return md5s
