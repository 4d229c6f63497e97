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


def text_colour(image: np.ndarray, box: Box) -> Colour:
    """The colour of the text in the box: the mean of the pixels at least half as far from the
    background (the median of the box's border) as the farthest one, so anti-aliased edges and the
    paper count little however much of the box is paper."""
    pixels = crop(image, box)
    mask = ink_mask(pixels)
    colour = pixels[mask].astype(np.float32).mean(axis=0) if mask.any() else background(pixels.astype(np.float32))
    return tuple(float(channel) for channel in colour)


def ink_mask(pixels: np.ndarray, least_contrast: float = 0.0) -> np.ndarray:
    """The pixels of the text in a crop: at least half as far from the background (the median of the
    crop's border) as the farthest pixel, and at least `least_contrast` (RGB distance) from it."""
    pixels = pixels.astype(np.float32)
    distance = np.sqrt(np.square(pixels - background(pixels)).sum(axis=2))
    return distance >= max(least_contrast, 0.5 * float(distance.max()), np.finfo(np.float32).tiny)


def background(pixels: np.ndarray) -> np.ndarray:
    """The colour around the text: the median of the crop's border."""
    return np.median(np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]]), axis=0)


def with_margin(pixels: np.ndarray, margin: int) -> np.ndarray:
    """The crop inside a margin of its background colour: Tesseract misreads text that touches the
    edge (a tight Japanese line read with several languages came out as Latin letters)."""
    height, width = pixels.shape[:2]
    framed = np.empty((height + 2 * margin, width + 2 * margin, 3), dtype=pixels.dtype)
    framed[:] = background(pixels).astype(pixels.dtype)
    framed[margin:margin + height, margin:margin + width] = pixels
    return framed


def split_stacked(image: np.ndarray, box: Box, ratio: float) -> list[Box]:
    """A horizontal box over two lines of clearly different size (a sign's big line over its small
    translation, which a detector may read as one) cut at the empty band between them, each part
    narrowed to its ink; other boxes come back whole.

    Ink is as in `text_colour`. A line's size is the height of its rows with at least half its
    densest row's ink (a Latin line's x-height, a CJK line's glyphs), so a line without ascenders is
    not a smaller line. The band must be a tenth of the ink's height, so the gap under an accent is
    no band, and each part at least a sixth of it, so an i's dot is no line."""
    if box.height > box.width:
        return [box]
    ink = ink_mask(crop(image, box))
    rows = np.flatnonzero(ink.any(axis=1))
    if len(rows) < 2:
        return [box]
    gaps = np.diff(rows)
    widest = int(np.argmax(gaps))
    top, bottom = rows[:widest + 1], rows[widest + 1:]
    height = rows[-1] - rows[0] + 1
    if gaps[widest] - 1 < 0.1 * height or min(top[-1] - top[0], bottom[-1] - bottom[0]) + 1 < height / 6:
        return [box]
    sizes = [_core_height(ink[part[0]:part[-1] + 1]) for part in (top, bottom)]
    if max(sizes) / min(sizes) < ratio:
        return [box]
    columns = np.flatnonzero(ink.any(axis=0))
    margin = int(min(columns[0], ink.shape[1] - 1 - columns[-1]))
    cut = int(top[-1] + bottom[0] + 1) // 2

    def part(first: int, last: int) -> Box:
        spanned = np.flatnonzero(ink[first:last].any(axis=0))
        return Box(box.l + max(0, int(spanned[0]) - margin), box.b + first,
                   box.l + min(ink.shape[1], int(spanned[-1]) + 1 + margin), box.b + last)

    return [*split_stacked(image, part(0, cut), ratio), *split_stacked(image, part(cut, ink.shape[0]), ratio)]


def _core_height(ink: np.ndarray) -> int:
    density = ink.sum(axis=1)
    return max(1, int((density >= 0.5 * density.max()).sum()))

