"""What the extension sends, decoded to pixels: transparency laid on white, the first frame of an
animation, `data:` URLs. Asserted on the pixels `decode_image` returns, not on what a stage did with them."""

import base64
import io

import numpy as np
import pytest
from PIL import Image

from core.errors import BadRequest
from core.imaging import decode_image

from .images import TWO_PARAGRAPHS, encode, render

MAX_PIXELS = 1_000_000
WHITE, BLACK, RED, BLUE = (255, 255, 255), (0, 0, 0), (255, 0, 0), (0, 0, 255)


def file_base64(image: Image.Image, fmt: str, **save_args) -> str:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save_args)
    return base64.b64encode(buffer.getvalue()).decode()


def decoded(image: Image.Image, fmt: str = "PNG", **save_args) -> np.ndarray:
    return decode_image(file_base64(image, fmt, **save_args), MAX_PIXELS)


def halves(left: tuple, right: tuple, mode: str) -> Image.Image:
    """A 4x2 image: the left half one colour, the right half another."""
    image = Image.new(mode, (4, 2), left)
    image.paste(right, (2, 0, 4, 2))
    return image


def test_rgba_transparent_pixels_are_white_and_partly_transparent_ones_blend_with_white():
    image = halves((200, 0, 0, 0), (0, 0, 0, 255), "RGBA")  # invisible red | opaque black
    image.putpixel((3, 1), (0, 0, 0, 128))  # black at half opacity
    pixels = decoded(image)
    assert pixels.shape == (2, 4, 3) and pixels.dtype == np.uint8
    assert (pixels[:, :2] == WHITE).all(), "a transparent pixel's hidden colour shows instead of white"
    assert (pixels[:, 2] == BLACK).all() and tuple(pixels[0, 3]) == BLACK
    assert all(abs(int(v) - 127) <= 1 for v in pixels[1, 3]), pixels[1, 3]


def test_grey_with_alpha_transparent_pixels_are_white():
    pixels = decoded(halves((0, 0), (0, 255), "LA"))  # invisible black | opaque black
    assert (pixels[:, :2] == WHITE).all() and (pixels[:, 2:] == BLACK).all()


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_transparency_is_white(fmt):
    image = halves(0, 1, "P")
    image.putpalette([0, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 6))  # index 0 black (transparent), 1 blue
    pixels = decoded(image, fmt, transparency=0)
    assert (pixels[:, :2] == WHITE).all(), "the transparent palette colour (black) shows instead of white"
    assert (pixels[:, 2:] == BLUE).all()


def test_dark_text_on_a_transparent_canvas_stays_readable():
    """The extension's canvas captures: black text on transparent black (0, 0, 0, 0)."""
    image = render(TWO_PARAGRAPHS, mode="RGBA", background=(0, 0, 0, 0))
    pixels = decoded(image)
    alpha = np.asarray(image)[..., 3]
    assert (pixels[alpha == 0] == WHITE).all()
    assert (pixels[alpha == 255] == BLACK).all()
    assert (alpha == 255).sum() > 1000  # there is text to read


def test_an_animated_gif_decodes_to_its_first_frame():
    frames = [Image.new("RGB", (6, 3), colour) for colour in (RED, BLUE, (0, 255, 0))]
    contents = file_base64(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(io.BytesIO(base64.b64decode(contents))).n_frames == 3
    pixels = decode_image(contents, MAX_PIXELS)
    assert pixels.shape == (3, 6, 3) and (pixels == RED).all()


def test_an_animated_webp_decodes_to_its_first_frame():
    frames = [Image.new("RGB", (6, 3), colour) for colour in (RED, BLUE)]
    contents = file_base64(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=100, lossless=True)
    if Image.open(io.BytesIO(base64.b64decode(contents))).n_frames != 2:
        pytest.skip("this Pillow writes no animated WebP")
    assert (decode_image(contents, MAX_PIXELS) == RED).all()


@pytest.mark.parametrize("prefix", ["data:image/png;base64,", "data:image/jpeg;base64,", "data:;base64,",
                                    "data:application/octet-stream;base64,"])
def test_data_urls_decode_to_the_same_pixels_as_the_bare_base64(prefix):
    image = render(TWO_PARAGRAPHS)
    contents, _ = encode(image)
    bare = decode_image(contents, MAX_PIXELS)
    assert (bare == np.asarray(image)).all()
    assert (decode_image(prefix + contents, MAX_PIXELS) == bare).all()


def test_a_data_url_keeps_its_transparency_handling():
    contents = "data:image/png;base64," + file_base64(halves((0, 0, 0, 0), (0, 0, 255, 255), "RGBA"), "PNG")
    pixels = decode_image(contents, MAX_PIXELS)
    assert (pixels[:, :2] == WHITE).all() and (pixels[:, 2:] == BLUE).all()


@pytest.mark.parametrize("contents", ["data:image/png;base64", "data:image/png;base64,@@@@", "data:,"])
def test_broken_data_urls_are_client_errors(contents):
    with pytest.raises(BadRequest):
        decode_image(contents, MAX_PIXELS)
