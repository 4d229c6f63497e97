"""Speech bubbles: the text of one bubble is one block, and never joins text outside it.

In a manga bubble the columns stand further apart than the merge tolerances allow, or as close to a
neighbouring bubble's columns as to each other, so gaps alone group them wrongly; the bubble's outline
says which belong together. A bubble is a connected region of light pixels around the text, closed by a
dark outline, clean inside, and only a few times the size of its text: a page, a panel or a sign's plate
is none of these at once.
"""

import cv2
import numpy as np

from .boxes import Block, Box, enclosing, reading_order

LIGHT = 200
"""Grey level (0-255) from which a pixel is paper: a bubble's inside."""
DARK = 128
"""Grey level below which a pixel is ink: a bubble's outline."""
GAP = 0.15
"""Widest gap in an outline that still closes it, as a fraction of the text size: a tail drawn on
carelessly, an outline broken in the scan. The page's light is eroded by it first, so that a bubble
reaches its panel through no such gap."""
OUTLINE_SHARE = 0.6
"""Least share of the ring around a bubble that is ink: a light plate on a mid-tone ground is no bubble."""
TEXT_RATIO = (1.5, 5.0)
"""Least and largest ratio of a bubble's area to its text boxes' area: text on a dark ground is no bubble
(its boxes alone count as paper), nor is a white panel around a few words."""
CLUTTER = 0.03
"""Largest share of a bubble's area that is ink outside its text boxes: a panel holds drawings and tone."""
INSIDE = 0.8
"""Least share of a text box inside the bubble for the text to be in it."""


def bubble_of_each(image: np.ndarray, boxes: list[Box]) -> list[int | None]:
    """For each box, an id of the speech bubble it sits in (boxes in one bubble share it), or None."""
    if not boxes:
        return []
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    height, width = grey.shape
    # Text counts as paper, so that letters set close to an outline still leave the bubble one region.
    light = (grey >= LIGHT).astype(np.uint8)
    for box in boxes:
        light[box.b:box.t, box.l:box.r] = 1
    gap = max(2, round(GAP * float(np.median([min(box.width, box.height) for box in boxes]))))
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * gap + 1, 2 * gap + 1))
    _, labels, stats, _ = cv2.connectedComponentsWithStats(cv2.erode(light, disc), connectivity=4)
    regions = []
    for box in boxes:
        counts = np.bincount(labels[_within(box, 0, 0, gap)].ravel())
        counts[0] = 0
        regions.append(int(counts.argmax()) if counts.any() else 0)

    found: list[int | None] = [None] * len(boxes)
    for region in set(regions) - {0}:
        x, y, w, h, eroded_area = stats[region]
        members = [i for i, r in enumerate(regions) if r == region]
        if (x == 0 or y == 0 or x + w == width or y + h == height
                or eroded_area > TEXT_RATIO[1] * sum(_area(boxes[i]) for i in members)):
            continue  # the page, or a panel too large for its text even before the costly look
        # The region grown back by the erosion, in a crop with room for it and a ring around it.
        pad = gap + 3
        x0, y0, x1, y1 = max(0, x - pad), max(0, y - pad), min(width, x + w + pad), min(height, y + h + pad)
        own = labels[y0:y1, x0:x1] == region
        outer, _ = cv2.findContours(own.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        eroded = cv2.drawContours(np.zeros(own.shape, np.uint8), outer, -1, 1, cv2.FILLED).astype(bool)
        bubble = cv2.dilate(eroded.astype(np.uint8), disc).astype(bool)
        inside = [i for i in members if bubble[_within(boxes[i], x0, y0)].sum() >= INSIDE * _area(boxes[i])]
        if not inside:
            continue
        clutter = eroded & ~own
        for i in inside:
            clutter[_within(boxes[i], x0, y0, gap)] = False
        ring = cv2.dilate(bubble.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool) & ~bubble
        area = int(bubble.sum())
        low, high = TEXT_RATIO
        text = sum(_area(boxes[i]) for i in inside)
        if (low * text <= area <= high * text and clutter.sum() <= CLUTTER * area
                and (grey[y0:y1, x0:x1][ring] < DARK).mean() >= OUTLINE_SHARE):
            for i in inside:
                found[i] = region
    return found


def _area(box: Box) -> int:
    return box.width * box.height


def _within(box: Box, x0: int, y0: int, grow: int = 0) -> tuple[slice, slice]:
    """The box, grown by `grow` each side, in a crop whose corner is (x0, y0): clipped, as a negative
    start would wrap."""
    return (slice(max(0, box.b - grow - y0), max(0, box.t + grow - y0)),
            slice(max(0, box.l - grow - x0), max(0, box.r + grow - x0)))


def join_bubbles(image: np.ndarray, blocks: list[Block]) -> list[Block]:
    """Blocks with each bubble's text joined into one block and cut from text outside the bubble; text in
    no bubble stays as it was. Reading order as merging gives it."""
    found = iter(bubble_of_each(image, [box for block in blocks for box in block.singles]))
    kept: list[Block] = []
    parts: dict[int, list[Block]] = {}
    for block in blocks:
        tagged = [[(box, next(found)) for box in line] for line in block.lines]
        bubbles = {bubble for line in tagged for _, bubble in line}
        if bubbles == {None}:
            kept.append(block)
            continue
        for bubble in bubbles:
            lines = [kept_line for line in tagged if (kept_line := [box for box, b in line if b == bubble])]
            part = Block(box=enclosing([box for line in lines for box in line]), lines=lines, vertical=block.vertical)
            if bubble is None:
                kept.append(part)
            else:
                parts.setdefault(bubble, []).append(part)
    if len(kept) + len(parts) == len(blocks) and all(len(members) == 1 for members in parts.values()):
        return blocks  # every bubble already one block of its own
    joined = [members[0] if len(members) == 1 else _joined(members) for members in parts.values()]
    result = kept + joined
    return reading_order(result, right_to_left=any(block.vertical for block in result))


def _joined(members: list[Block]) -> Block:
    """One block of a bubble's blocks: its lines (columns, right to left, if any member is vertical) in
    order, pieces of one line or column put together."""
    vertical = any(block.vertical for block in members)

    def across(line: list[Box]) -> tuple[int, int]:
        box = enclosing(line)
        return (box.l, box.r) if vertical else (box.b, box.t)

    lines: list[list[Box]] = []
    for line in sorted((line for block in members for line in block.lines), key=lambda ln: sum(across(ln)),
                       reverse=vertical):
        if lines:
            (low, high), (other_low, other_high) = across(lines[-1]), across(line)
            if min(high, other_high) - max(low, other_low) >= 0.5 * min(high - low, other_high - other_low):
                lines[-1] = sorted(lines[-1] + line, key=lambda box: box.b if vertical else box.l)
                continue
        lines.append(line)
    return Block(box=enclosing([box for line in lines for box in line]), lines=lines, vertical=vertical)
