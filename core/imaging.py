"""Decoding what the extension sends (base64 of a PNG/JPEG/GIF/WebP file or canvas PNG) into pixels."""

import base64
import binascii
import io
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from .boxes import Box, Colour
from .errors import BadRequest, PayloadTooLarge

FORMATS = ("PNG", "JPEG", "GIF", "WEBP")
"""What the API accepts; Pillow's other decoders (TIFF, JPEG 2000, PSD, EPS, ...) are never tried."""


def _strip_data_url(contents: str) -> str:
    """Accept `data:image/png;base64,...` as well as the bare base64 the extension sends."""
    if contents.startswith("data:") and "," in contents:
        return contents.split(",", 1)[1]
    return contents


def decode_image(contents: str, max_pixels: int) -> np.ndarray:
    """RGB pixels of the image file in `contents`; the first frame of an animation.

    Transparent pixels are laid on white, so dark text on a transparent canvas stays readable.
    """
    try:
        data = base64.b64decode(_strip_data_url(contents), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("'contents' is not valid base64: send the image file encoded in base64.") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=FORMATS)
            width, height = image.size
            if width * height > max_pixels:
                raise PayloadTooLarge(
                    f"Image of {width}x{height} pixels is larger than the server's limit of {max_pixels} pixels.")
            image.seek(0)
            image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise BadRequest(
            f"'contents' is not a readable image ({type(exc).__name__}): send a PNG, JPEG, GIF or WebP.") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise PayloadTooLarge(f"Image is larger than the server's limit of {max_pixels} pixels.") from None
    if width == 0 or height == 0:
        raise BadRequest("'contents' is an empty image.")
    # A "transparency" entry is a palette index (P) or a colour key (L, RGB: PNG's tRNS chunk).
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return np.asarray(image.convert("RGB"))


def crop(image: np.ndarray, box: Box) -> np.ndarray:
    height, width = image.shape[:2]
    l, r = max(0, min(box.l, width - 1)), max(1, min(box.r, width))
    b, t = max(0, min(box.b, height - 1)), max(1, min(box.t, height))
    return np.ascontiguousarray(image[b:max(t, b + 1), l:max(r, l + 1)])


def text_colour(pixels: np.ndarray, ink: np.ndarray) -> Colour:
    """The colour of the text in a crop whose `ink_mask` is `ink`: the mean of the ink, so anti-aliased
    edges and the paper count little however much of the crop is paper; the background where there is
    no ink. The caller passes the ink it has found already, so no crop's ink is found twice."""
    colour = pixels[ink].astype(np.float32).mean(axis=0) if ink.any() else background(pixels.astype(np.float32))
    return tuple(float(channel) for channel in colour)


def ink_mask(pixels: np.ndarray, least_contrast: float = 0.0) -> np.ndarray:
    """The pixels of the text in a crop: at least half as far from the background (the median of the
    crop's border) as the farthest pixel, and at least `least_contrast` (RGB distance) from it."""
    pixels = pixels.astype(np.float32)
    distance = np.sqrt(np.square(pixels - background(pixels)).sum(axis=2))
    return distance >= max(least_contrast, 0.5 * float(distance.max()), np.finfo(np.float32).tiny)


def background(pixels: np.ndarray) -> np.ndarray:
    """The colour around the text: the median of the crop's border."""
    return np.median(border(pixels), axis=0)


def border(pixels: np.ndarray) -> np.ndarray:
    """The pixels along a crop's four edges (the corners twice), where its ground shows."""
    return np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])


def with_margin(pixels: np.ndarray, margin: int) -> np.ndarray:
    """The crop inside a margin of its background colour: Tesseract misreads text that touches the
    edge (a tight Japanese line read with several languages came out as Latin letters)."""
    height, width = pixels.shape[:2]
    framed = np.empty((height + 2 * margin, width + 2 * margin, 3), dtype=pixels.dtype)
    framed[:] = background(pixels).astype(pixels.dtype)
    framed[margin:margin + height, margin:margin + width] = pixels
    return framed


def split_stacked(image: np.ndarray, box: Box, ratio: float) -> list[tuple[Box, Colour]]:
    """A horizontal box over two lines of clearly different size (a sign's big line over its small
    translation, which a detector may read as one) cut at the empty band between them, each part
    narrowed to its ink; other boxes come back whole. Each box comes with its `text_colour`, taken from
    the ink that decided the cut, so a box's ink is found once.

    Ink is `ink_mask`'s. A line's size is the height of its rows with at least half its densest row's
    ink (a Latin line's x-height, a CJK line's glyphs), so a line without ascenders is not a smaller
    line. The band must be a tenth of the ink's height, so the gap under an accent is no band, and each
    part at least a sixth of it, so an i's dot is no line."""
    pixels = crop(image, box)
    ink = ink_mask(pixels)
    cut = _stacked_cut(ink, ratio) if box.height <= box.width else None
    if cut is None:
        return [(box, text_colour(pixels, ink))]
    columns = np.flatnonzero(ink.any(axis=0))
    margin = int(min(columns[0], ink.shape[1] - 1 - columns[-1]))

    def part(first: int, last: int) -> Box:
        spanned = np.flatnonzero(ink[first:last].any(axis=0))
        return Box(box.l + max(0, int(spanned[0]) - margin), box.b + first,
                   box.l + min(ink.shape[1], int(spanned[-1]) + 1 + margin), box.b + last)

    return [*split_stacked(image, part(0, cut), ratio), *split_stacked(image, part(cut, ink.shape[0]), ratio)]


def _stacked_cut(ink: np.ndarray, ratio: float) -> int | None:
    """The row halfway across the band between a box's two lines of clearly different size (as
    `split_stacked` says), or None where its ink is not two such lines."""
    rows = np.flatnonzero(ink.any(axis=1))
    if len(rows) < 2:
        return None
    gaps = np.diff(rows)
    widest = int(np.argmax(gaps))
    top, bottom = rows[:widest + 1], rows[widest + 1:]
    height = rows[-1] - rows[0] + 1
    if gaps[widest] - 1 < 0.1 * height or min(top[-1] - top[0], bottom[-1] - bottom[0]) + 1 < height / 6:
        return None
    sizes = [_core_height(ink[part[0]:part[-1] + 1]) for part in (top, bottom)]
    if max(sizes) / min(sizes) < ratio:
        return None
    return int(top[-1] + bottom[0] + 1) // 2


def _core_height(ink: np.ndarray) -> int:
    density = ink.sum(axis=1)
    return max(1, int((density >= 0.5 * density.max()).sum()))

