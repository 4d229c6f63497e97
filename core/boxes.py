"""Box geometry: merge single text boxes into blocks and put both in reading order.

Boxes are `(l, b, r, t)` in image pixels, `b` the smallest y (top edge on screen), as the
extension expects. A detector returns single boxes (a line, or a column of vertical text);
merging groups the lines of one paragraph or speech bubble into one block, so the block is
OCR'd and translated as a whole.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

Colour = tuple[float, float, float]
"""A text colour, RGB in 0-255."""


class Box(NamedTuple):
    l: int
    b: int
    r: int
    t: int

    @property
    def width(self) -> int:
        return self.r - self.l

    @property
    def height(self) -> int:
        return self.t - self.b

    @property
    def is_column(self) -> bool:
        """Tall and narrow: a column of vertical text."""
        return self.height >= 1.5 * self.width

    def x_overlap(self, other: "Box") -> int:
        return min(self.r, other.r) - max(self.l, other.l)

    def y_overlap(self, other: "Box") -> int:
        return min(self.t, other.t) - max(self.b, other.b)


def enclosing(boxes: list[Box]) -> Box:
    return Box(min(b.l for b in boxes), min(b.b for b in boxes), max(b.r for b in boxes), max(b.t for b in boxes))


@dataclass(frozen=True)
class MergeTolerances:
    """How close boxes must be to join one block, as fractions of the text size (line height)."""

    line_gap: float = 0.5
    """Largest gap between two lines (or columns) of one block. Lines of a paragraph nearly touch
    once detected; paragraphs set one blank line apart leave a gap of 0.6-1 line heights."""
    word_gap: float = 1.5
    """Largest gap between two pieces of one line (or column)."""
    height_ratio: float = 2.0
    """Largest ratio between text sizes: a title does not join the paragraph under it. Below 2, a
    word without ascenders or descenders ("on", "we") would leave its line."""
    line_height_ratio: float = 1.5
    """Largest ratio between the text sizes of two lines (or columns) one after the other."""
    align: float = 0.5
    """Largest offset between the edges (or middles) two lines one above the other share: left-aligned
    lines of a paragraph, centred lines of a sign. An indented note under a heading does not join it."""
    indent: float = 3.0
    """Largest indent of a paragraph's first line, which joins the line below it though its left edge
    is further right."""
    early_break: float = 5.0
    """How much further right than a left-aligned line the line under it may run before the first is
    taken as the end of a paragraph or list item (ragged lines differ by a word or two)."""
    colour_distance: float = 0.25
    """Largest difference between two boxes' text colours, as a fraction of the distance from black
    to white: a red slogan does not join the black lines beside it (black and dark grey differ by
    0.2, black and red by 0.45). 1 turns the check off."""


def colour_difference(a: Colour, c: Colour) -> float:
    """Euclidean RGB distance, 0 (the same) to 1 (black and white)."""
    return sum((x - y) ** 2 for x, y in zip(a, c, strict=True)) ** 0.5 / (255 * 3 ** 0.5)


@dataclass
class Block:
    """A merged text block and its single boxes, grouped in lines (or columns) in reading order."""

    box: Box
    lines: list[list[Box]] = field(default_factory=list)
    vertical: bool = False

    @property
    def singles(self) -> list[Box]:
        return [box for line in self.lines for box in line]


def _size(box: Box, columns: bool) -> int:
    return max(1, box.width if columns else box.height)


def _as_columns(a: Box, c: Box, vertical_script: bool) -> bool:
    """Whether two boxes are read as columns: tall ones in a script written vertically, or, in any script,
    tall ones one above the other: the words of a line set on its side. Tall boxes side by side in a
    horizontal script are big letters of one line."""
    return a.is_column and c.is_column and (vertical_script or a.x_overlap(c) >= 0.5 * min(a.width, c.width))


def _contained(a: Box, c: Box) -> bool:
    """Most of one box lies inside the other: a detector's stray piece of the same text (an accent, a
    punctuation mark boxed apart), which joins it whatever its size or colour."""
    inside = max(0, a.x_overlap(c)) * max(0, a.y_overlap(c))
    return inside >= 0.5 * min(a.width * a.height, c.width * c.height)


def _comparable(a: Box, c: Box, ratio: float, columns: bool, colour_pair: tuple[Colour, Colour] | None,
                tol: MergeTolerances) -> bool:
    """Same colour and sizes within `ratio`: one text's pieces."""
    if colour_pair is not None and colour_difference(*colour_pair) > tol.colour_distance:
        return False
    size_a, size_c = _size(a, columns), _size(c, columns)
    return max(size_a, size_c) / min(size_a, size_c) <= ratio


def _along_across(a: Box, c: Box, columns: bool) -> tuple[int, int]:
    """Overlaps along the reading direction of a line (or column) and across it."""
    return (a.y_overlap(c), a.x_overlap(c)) if columns else (a.x_overlap(c), a.y_overlap(c))


def _same_line(a: Box, c: Box, tol: MergeTolerances, vertical_script: bool,
               colour_pair: tuple[Colour, Colour] | None) -> bool:
    if _contained(a, c):
        return True
    columns = _as_columns(a, c, vertical_script)
    if not _comparable(a, c, tol.height_ratio, columns, colour_pair, tol):
        return False
    size = min(_size(a, columns), _size(c, columns))
    along, across = _along_across(a, c, columns)
    return across >= 0.5 * size and -along <= tol.word_gap * size


def _next_line(a: Box, c: Box, tol: MergeTolerances, vertical_script: bool,
               colour_pair: tuple[Colour, Colour] | None) -> bool:
    columns = _as_columns(a, c, vertical_script)
    if not _comparable(a, c, float("inf"), columns, colour_pair, tol):  # sizes: compared line by line
        return False
    size = min(_size(a, columns), _size(c, columns))
    along, across = _along_across(a, c, columns)
    return along > 0 and -across <= tol.line_gap * size


def _aligned(first: Box, second: Box, columns: bool, tol: MergeTolerances) -> bool:
    """Two lines (or columns) one after the other, `first` read first, share an edge: starts, ends or
    middles within `align` text sizes; or `first` is a paragraph's indented first line, running to
    the end of the paragraph."""
    size = min(_size(first, columns), _size(second, columns))
    start_1, end_1, start_2, end_2 = (first.b, first.t, second.b, second.t) if columns else \
        (first.l, first.r, second.l, second.r)
    slack = tol.align * size
    indented = 0 < start_1 - start_2 <= tol.indent * size and end_1 >= end_2 - slack
    return (abs(start_1 - start_2) <= slack or abs(end_1 - end_2) <= slack
            or abs(start_1 + end_1 - start_2 - end_2) <= 2 * slack or indented)


def _group_lines(boxes: list[Box], columns: bool) -> list[list[Box]]:
    """Group boxes into lines (by y centre) or columns (by x centre), in reading order."""
    def centre(box: Box) -> float:
        return (box.l + box.r) / 2 if columns else (box.b + box.t) / 2

    lines: list[list[Box]] = []
    # Columns are read right to left, lines top to bottom.
    for box in sorted(boxes, key=centre, reverse=columns):
        for line in lines:
            anchor = line[0]
            if abs(centre(anchor) - centre(box)) < 0.5 * _size(anchor, columns):
                line.append(box)
                break
        else:
            lines.append([box])
    for line in lines:
        line.sort(key=(lambda box: box.b) if columns else (lambda box: box.l))
    return lines


def _split_columns(members: list[Box]) -> list[list[Box]]:
    """Text columns side by side, apart: where an empty vertical strip at least 0.6 line heights wide runs
    through a group of lines and at least two lines stand on each side of it, the group is two blocks
    (recursively). A line broken into pieces by a wide gap has one row on each side, so it stays whole;
    the spaces between words of a centred title's two lines, one above the other, are no gutter."""
    spans = sorted((box.l, box.r) for box in members)
    gutter = 0.6 * sorted(box.height for box in members)[len(members) // 2]
    reach = spans[0][1]
    for left, right in spans[1:]:
        if left - reach >= gutter:  # an empty strip from `reach` to `left`
            west = [box for box in members if box.r <= reach]
            east = [box for box in members if box.l >= left]
            if len(_group_lines(west, False)) >= 2 and len(_group_lines(east, False)) >= 2:
                return _split_columns(west) + _split_columns(east)
        reach = max(reach, right)
    return [members]


def _split_paragraphs(members: list[Box], tol: MergeTolerances) -> list[list[Box]]:
    """Left-aligned lines cut after a line that stopped early: where the line under it runs more than
    `early_break` text sizes further right, the words that begin it would have fit, so the line ended a
    paragraph or a list item by choice. Centred lines (a sign, a bubble) are left whole."""
    lines = _group_lines(members, False)
    if len(lines) < 2:
        return [members]
    extents = [enclosing(line) for line in lines]
    size = sorted(extent.height for extent in extents)[len(extents) // 2]
    if max(e.l for e in extents) - min(e.l for e in extents) > tol.align * size:
        return [members]
    parts, current = [], list(lines[0])
    for above, below, line in zip(extents, extents[1:], lines[1:], strict=False):
        if below.r - above.r > tol.early_break * size:
            parts.append(current)
            current = []
        current += line
    return [*parts, current]


def reading_order(blocks: list[Block], right_to_left: bool) -> list[Block]:
    """Bands of blocks top to bottom; inside a band left to right (or right to left)."""
    bands: list[list[Block]] = []
    for block in sorted(blocks, key=lambda blk: blk.box.b):
        band = bands[-1] if bands else None
        if band and any(block.box.y_overlap(o.box) > 0.5 * min(block.box.height, o.box.height) for o in band):
            band.append(block)
        else:
            bands.append([block])
    ordered = []
    for band in bands:
        ordered += sorted(band, key=lambda blk: -blk.box.r if right_to_left else blk.box.l)
    return ordered


def merge_into_blocks(
    singles: list[Box], tolerances: MergeTolerances, vertical_script: bool = False,
    colours: Sequence[Colour] | None = None,
) -> list[Block]:
    """Union the single boxes that belong together and return blocks in reading order.

    `vertical_script` says the source language may be written in columns (Japanese, Chinese,
    Korean): tall boxes are then read as columns, right to left. `colours`, one per single box, keep
    text of different colours apart.
    """
    parent = list(range(len(singles)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def pair(i: int, j: int) -> tuple[Colour, Colour] | None:
        return (colours[i], colours[j]) if colours is not None else None

    # Pieces side by side make lines (or columns); then whole lines join the lines next to them, so
    # that alignment and size are judged on lines, not on a detector's word pieces.
    for i, a in enumerate(singles):
        for j in range(i + 1, len(singles)):
            if _same_line(a, singles[j], tolerances, vertical_script, pair(i, j)):
                parent[root(i)] = root(j)
    lines: dict[int, list[int]] = {}
    for i in range(len(singles)):
        lines.setdefault(root(i), []).append(i)
    line_of = {i: line for line, members in lines.items() for i in members}
    extent = {line: enclosing([singles[i] for i in members]) for line, members in lines.items()}

    touching: dict[tuple[int, int], list[tuple[Box, Box]]] = {}
    for i, a in enumerate(singles):
        for j in range(i + 1, len(singles)):
            if line_of[i] != line_of[j] and _next_line(a, singles[j], tolerances, vertical_script, pair(i, j)):
                touching.setdefault(tuple(sorted((line_of[i], line_of[j]))), []).append((a, singles[j]))
    for (one, other), pieces in touching.items():
        columns = _as_columns(extent[one], extent[other], vertical_script)
        line_sizes = [max(_size(singles[i], columns) for i in lines[line]) for line in (one, other)]
        if max(line_sizes) / min(line_sizes) > tolerances.line_height_ratio:
            continue
        first, second = sorted((one, other), key=lambda line: -(extent[line].l + extent[line].r) if columns
                               else extent[line].b + extent[line].t)
        # Pieces that start at one edge are lines of one text column, even where a narrow gutter made a
        # line run on into the next column.
        starts = [(p.b, q.b) if columns else (p.l, q.l) for p, q in pieces]
        if (_aligned(extent[first], extent[second], columns, tolerances)
                or any(abs(x - y) <= tolerances.align * min(_size(p, columns), _size(q, columns))
                       for (x, y), (p, q) in zip(starts, pieces, strict=True))):
            parent[root(one)] = root(other)

    groups: dict[int, list[Box]] = {}
    for i, box in enumerate(singles):
        groups.setdefault(root(i), []).append(box)

    blocks = []
    for group in groups.values():
        vertical = vertical_script and sum(b.is_column for b in group) * 2 > len(group)
        parts = [group] if vertical else [
            paragraph for column in _split_columns(group) for paragraph in _split_paragraphs(column, tolerances)]
        for members in parts:
            blocks.append(Block(box=enclosing(members), lines=_group_lines(members, vertical), vertical=vertical))
    return reading_order(blocks, right_to_left=vertical_script and any(b.vertical for b in blocks))


def join_lines(lines: list[list[str]], separator: str) -> str:
    """Join OCR'd pieces: pieces of a line with the language's word separator, lines with newlines.

    Runs of spaces inside a piece (recognizers emit them for wide letter spacing) become one.
    """
    joined = (separator.join(" ".join(piece.split()) for piece in line if piece.strip()) for line in lines)
    return "\n".join(line for line in joined if line)
