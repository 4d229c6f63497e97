"""Crops turned into what a horizontal OCR model reads: a column of vertical CJK text becomes a line of
its characters side by side, a line of Latin text set on its side is turned upright, a slanted line is
levelled. Models that read vertical text as it stands (Tesseract's `*_vert`, manga-ocr) get the crop
unchanged; the others read vertical columns as nonsense or not at all (bench/reading/RESULTS.md)."""

import cv2
import numpy as np

from core.boxes import Box
from core.imaging import background, crop, ink_mask

CELL_HEIGHT = 1.15
"""Most rows a character cell of a column may span, in widths of the column's ink: CJK characters are about square,
so ink runs closer than that are parts of one character (二, 三, 小), farther ones the next character."""
SKEW_LIMIT = 20.0
"""Largest slant levelled, in degrees; steeper lines are left as they are (or read as columns)."""
CLEAR_SLANT = 1.15
"""How much sharper the ink's row profile must be at the slant than level for a crop to be turned: a
line's few letters, or a crop of a few strokes, always look best at some angle, but only slightly."""
SKEW_MIN = 2.0
"""Smaller slants are left alone: line readers read them as well, and rotating blurs the glyphs."""


INK_CONTRAST = 40.0
"""Least RGB distance from the background that counts as ink: JPEG noise and paper texture stay below it."""


def character_cells(column: np.ndarray) -> list[tuple[int, int]]:
    """The row ranges of a vertical column's characters, top to bottom."""
    mask = ink_mask(column, INK_CONTRAST)
    rows, ink_columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not rows.size:
        return []
    width = ink_columns[-1] - ink_columns[0] + 1  # the characters' width, whatever margin the crop has
    breaks = np.flatnonzero(np.diff(rows) > 1)
    runs = [(int(rows[s]), int(rows[e]) + 1) for s, e in zip(np.r_[0, breaks + 1], np.r_[breaks, rows.size - 1],
                                                              strict=True)]
    cells = [list(runs[0])]
    for top, bottom in runs[1:]:
        if bottom - cells[-1][0] <= CELL_HEIGHT * width:
            cells[-1][1] = bottom
        else:
            cells.append([top, bottom])
    return [(top, bottom) for top, bottom in cells]


def column_as_line(column: np.ndarray) -> np.ndarray:
    """A vertical column's characters, upright, side by side left to right as a horizontal line."""
    height, width = column.shape[:2]
    cells = character_cells(column)
    if not cells:
        return column
    gap = max(2, width // 8)
    line_height = max(width, *(bottom - top for top, bottom in cells))
    line = np.empty((line_height, gap + len(cells) * (width + gap), 3), dtype=column.dtype)
    line[:] = background(column)
    for index, (top, bottom) in enumerate(cells):
        y, x = (line_height - (bottom - top)) // 2, gap + index * (width + gap)
        line[y:y + bottom - top, x:x + width] = column[top:bottom]
    return line


def lines_on_page(lines: list[np.ndarray]) -> np.ndarray:
    """Lines stacked top to bottom on one page of their background, half a line apart: how a block reader
    (Tesseract) is given a vertical block once its columns are lines."""
    height = max(line.shape[0] for line in lines)
    gap = max(4, height // 2)
    page = np.empty((gap + len(lines) * (height + gap), max(line.shape[1] for line in lines), 3),
                    dtype=lines[0].dtype)
    page[:] = background(lines[0])
    for index, line in enumerate(lines):
        y = gap + index * (height + gap) + (height - line.shape[0]) // 2
        page[y:y + line.shape[0], :line.shape[1]] = line
    return page


def columns_as_lines(image: np.ndarray, columns: list[Box]) -> list[np.ndarray]:
    """Each column of a vertical block (right to left) as a horizontal line."""
    return [column_as_line(crop(image, column)) for column in columns]


def turned_upright(line: np.ndarray) -> np.ndarray:
    """A line of horizontal-script text set on its side (tall and narrow) turned to read left to right.

    Which way it was turned shows in the ink across the line: letters reach above their x-height far
    more often than below it (ascenders and capitals against descenders), so the heavier side is the top.
    """
    mask = ink_mask(line, INK_CONTRAST)
    across = mask.sum(axis=0).astype(np.float64)  # ink per column of the tall crop: across the text
    if not across.any():
        return line
    core = np.flatnonzero(across >= 0.5 * across.max())
    left, right = across[:core[0]].sum(), across[core[-1] + 1:].sum()
    # Tops on the left: the text runs bottom to top, a quarter turn clockwise levels it.
    return np.ascontiguousarray(np.rot90(line, k=-1 if left >= right else 1))


def slant(line: np.ndarray) -> float:
    """The angle of a slanted line of text, in degrees (counter-clockwise positive), found as the angle
    whose row profile of the ink is sharpest; 0 where it is not clearly sharper than level."""
    mask = ink_mask(line, INK_CONTRAST)
    ys, xs = np.nonzero(mask)
    if xs.size < 20:
        return 0.0
    xs = xs - xs.mean()

    def sharpness(angle: float) -> float:
        rows = np.round(ys + xs * np.tan(np.radians(angle))).astype(np.int64)
        return float(np.square(np.bincount(rows - rows.min()).astype(np.float64)).sum())

    level = sharpness(0.0)
    best, sharpest = 0.0, level
    for angle in np.arange(-SKEW_LIMIT, SKEW_LIMIT + 0.1, 1.0):
        if (found := sharpness(float(angle))) > sharpest:
            best, sharpest = float(angle), found
    return best if sharpest >= CLEAR_SLANT * level else 0.0


def levelled(line: np.ndarray) -> np.ndarray:
    """A slanted line (or block of lines) turned level. The corners the turn brings in repeat the crop's
    edge, so no new edges (a grey wedge on a gradient) reach the OCR model."""
    angle = slant(line)
    if abs(angle) < SKEW_MIN:
        return line
    height, width = line.shape[:2]
    turn = cv2.getRotationMatrix2D((width / 2, height / 2), -angle, 1.0)
    cos, sin = abs(turn[0, 0]), abs(turn[0, 1])
    size = (int(np.ceil(width * cos + height * sin)), int(np.ceil(width * sin + height * cos)))
    turn[:, 2] += (size[0] - width) / 2, (size[1] - height) / 2
    return cv2.warpAffine(np.ascontiguousarray(line), turn, size, flags=cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_REPLICATE)
