"""What the extension sends, decoded to pixels: transparency laid on white, the first frame of an
animation, `data:` URLs. Asserted on the pixels `decode_image` returns, not on what a stage did with them."""

import base64
import io

import numpy as np
import pytest
from PIL import Image

from core.boxes import Box
from core.errors import BadRequest, PayloadTooLarge
from core.imaging import crop, decode_image, ink_mask, text_colour
from tests.support.images import TWO_PARAGRAPHS, encode, render

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


def test_a_data_url_with_a_second_comma_is_not_base64():
    """Everything after the first comma is the base64: a comma inside it is an error, not a cut."""
    contents = "data:image/png;base64," + file_base64(halves(RED, BLUE, "RGB"), "PNG") + ",QUJD"
    with pytest.raises(BadRequest, match="not valid base64"):
        decode_image(contents, MAX_PIXELS)


def test_characters_outside_base64_are_refused_not_skipped():
    contents = file_base64(halves(RED, BLUE, "RGB"), "PNG")
    with pytest.raises(BadRequest, match="'contents' is not valid base64"):
        decode_image(contents[:8] + "$" + contents[8:], MAX_PIXELS)


@pytest.mark.parametrize("fmt", ["BMP", "TIFF"])
def test_formats_outside_the_api_are_refused(fmt):
    with pytest.raises(BadRequest, match=r"'contents' is not a readable image \(UnidentifiedImageError\)"):
        decode_image(file_base64(halves(RED, BLUE, "RGB"), fmt), MAX_PIXELS)


def test_the_pixel_limit_counts_width_times_height_and_allows_an_image_at_it():
    contents = file_base64(halves(RED, BLUE, "RGB"), "PNG")  # 4x2
    assert decode_image(contents, max_pixels=8).shape == (2, 4, 3)
    with pytest.raises(PayloadTooLarge, match="Image of 4x2 pixels is larger than the server's limit of 7"):
        decode_image(contents, max_pixels=7)


def test_crop_clamps_to_the_image_and_is_never_empty():
    image = np.arange(10 * 10).reshape(10, 10)
    assert np.array_equal(crop(image, Box(0, 0, 3, 2)), image[0:2, 0:3])
    assert np.array_equal(crop(image, Box(15, 15, 20, 20)), image[9:10, 9:10])  # beyond the far corner
    assert np.array_equal(crop(image, Box(-5, -5, 0, 0)), image[0:1, 0:1])  # before the near corner
    assert np.array_equal(crop(image, Box(5, 4, 5, 4)), image[4:5, 5:6])  # empty box: its one pixel


def test_text_colour_is_the_ink_against_the_border_colour():
    image = np.zeros((20, 20, 3), np.uint8)
    image[:, :] = BLUE
    image[5:15, 5:15] = RED
    assert text_colour(image, ink_mask(image)) == pytest.approx(RED)
    inside = crop(image, Box(6, 6, 14, 14))
    assert text_colour(inside, ink_mask(inside)) == pytest.approx(RED)  # all ink: its colour


@pytest.mark.parametrize("mode,key,ink", [("L", 0, 200), ("RGB", BLACK, BLUE)])
def test_colour_key_transparency_is_white(mode, key, ink):
    """PNG's tRNS colour key on a grey or RGB image: the keyed colour is transparent."""
    pixels = decoded(halves(key, ink, mode), "PNG", transparency=key)
    assert (pixels[:, :2] == WHITE).all(), "the transparent key colour (black) shows instead of white"
    assert not (pixels[:, 2:] == WHITE).all()
