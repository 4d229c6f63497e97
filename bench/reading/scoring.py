"""Scores of one reading of a page against its ground truth: page CER, block recall and precision (with the
merges and splits that cost them), reading order. Pure functions over plain data, used by bench/reading.py
and unit-tested in tests/bench/test_reading.py.

Boxes are [left, top, right, bottom] in pixels: the manifests' order and the API's `[l, b, r, t]` (its `b` is
the top edge on screen), so a block of the server's answer is scored as it comes.

- Page CER: the edit distance between the page's text as read (the predicted blocks in the answer's order)
  and as written (the truth's blocks in reading order), over the length of the latter; both NFKC-normalised
  (full-width forms, vertical presentation forms and ligatures become their plain letters) with runs of
  whitespace made one space, and with no whitespace at all in Japanese and Chinese, which write none.
  Capped at 1: a page read as noise counts as a page not read.
- Blocks: a predicted block and a truth block *touch* when their intersection is at least half of the
  smaller one. A truth block is *recalled* when exactly one predicted block touches it, that block touches
  no other truth block, and the two overlap by an IoU of at least MATCH_IOU. A predicted block touching two
  or more truth blocks is a *merge*; a truth block touched by two or more predicted blocks is *split*.
  Recall: recalled / truth blocks; precision: predicted blocks in a one-to-one match / predicted blocks.
  Truth blocks marked optional (logos, icons' labels) count in neither, and predicted blocks that touch
  only optional ones are left out of precision and of the page text.
- Reading order: over the recalled blocks, the share of pairs that the answer puts in the truth's order
  (1.0: all in order); none where fewer than two blocks were recalled or the page has no one order.
"""

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

from rapidfuzz.distance import Levenshtein

MATCH_IOU = 0.5
"""Intersection over union a one-to-one match needs (truth boxes are ink-tight; detectors pad a little)."""
TOUCH = 0.5
"""Share of the smaller box that must lie in the other for two blocks to touch."""
NO_SPACE_LANGUAGES = frozenset({"ja", "zh", "zht"})
"""Scripts written without spaces: whitespace is left out before comparing."""

Box = Sequence[int]


@dataclass(frozen=True)
class TruthBlock:
    text: str
    box: tuple[int, int, int, int]
    optional: bool = False


@dataclass(frozen=True)
class ReadBlock:
    text: str
    box: tuple[int, int, int, int]


@dataclass
class PageScore:
    cer: float
    truth_blocks: int
    recalled: int
    predicted: int
    """Predicted blocks that count for precision (those touching only optional truth left out)."""
    precise: int
    merges: int
    """Predicted blocks that each cover two or more truth blocks."""
    splits: int
    """Truth blocks that each came back in two or more predicted blocks."""
    order: float | None
    missed: int = 0
    """Truth blocks no predicted block touches."""
    spurious: int = 0
    """Predicted blocks touching no truth block."""
    matches: dict[int, int] = field(default_factory=dict)
    """Truth index -> predicted index of each one-to-one match."""

    @property
    def recall(self) -> float:
        return self.recalled / self.truth_blocks if self.truth_blocks else 1.0

    @property
    def precision(self) -> float:
        return self.precise / self.predicted if self.predicted else (1.0 if not self.truth_blocks else 0.0)


def normalise(text: str, lang: str) -> str:
    text = " ".join(unicodedata.normalize("NFKC", text).split())
    return text.replace(" ", "") if lang in NO_SPACE_LANGUAGES else text


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions of one character)."""
    return Levenshtein.distance(a, b)


def cer(read: str, truth: str, lang: str) -> float:
    """Character error rate of `read` against `truth`, normalised as above, capped at 1."""
    a, b = normalise(read, lang), normalise(truth, lang)
    if not b:
        return 0.0 if not a else 1.0
    return min(1.0, edit_distance(a, b) / len(b))


def area(box: Box) -> int:
    return max(0, box[2] - box[0]) * max(0, box[3] - box[1])


def intersection(a: Box, b: Box) -> int:
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))


def iou(a: Box, b: Box) -> float:
    shared = intersection(a, b)
    union = area(a) + area(b) - shared
    return shared / union if union else 0.0


def touch(a: Box, b: Box) -> bool:
    smaller = min(area(a), area(b))
    return smaller > 0 and intersection(a, b) >= TOUCH * smaller


def order_agreement(positions: Sequence[int]) -> float | None:
    """Share of pairs in increasing order (`positions`: the answer's index of each recalled truth block,
    listed in the truth's order); None for fewer than two."""
    pairs = [(i, j) for i in range(len(positions)) for j in range(i + 1, len(positions))]
    if not pairs:
        return None
    return sum(positions[i] < positions[j] for i, j in pairs) / len(pairs)


def score_page(truth: Sequence[TruthBlock], read: Sequence[ReadBlock], lang: str,
               order_scored: bool = True) -> PageScore:
    touching = {p: [t for t, block in enumerate(truth) if touch(read[p].box, block.box)] for p in range(len(read))}
    touched_by = {t: [p for p in range(len(read)) if t in touching[p]] for t in range(len(truth))}
    required = [t for t, block in enumerate(truth) if not block.optional]
    # Predicted blocks over optional truth alone are neither right nor wrong: out of precision and the text.
    ignored = {p for p, ts in touching.items() if ts and all(truth[t].optional for t in ts)}
    counted = [p for p in range(len(read)) if p not in ignored]

    matches = {}
    for t in required:
        ps = touched_by[t]
        if len(ps) == 1:
            p = ps[0]
            others = [u for u in touching[p] if u != t and not truth[u].optional]
            if not others and iou(read[p].box, truth[t].box) >= MATCH_IOU:
                matches[t] = p
    merges = sum(1 for p in counted if sum(not truth[t].optional for t in touching[p]) >= 2)
    splits = sum(1 for t in required if len(touched_by[t]) >= 2)
    positions = [matches[t] for t in required if t in matches]
    truth_text = "\n".join(truth[t].text for t in required)
    read_text = "\n".join(read[p].text for p in counted)
    return PageScore(
        cer=cer(read_text, truth_text, lang), truth_blocks=len(required), recalled=len(matches),
        predicted=len(counted), precise=len(matches), merges=merges, splits=splits,
        order=order_agreement(positions) if order_scored else None,
        missed=sum(1 for t in required if not touched_by[t]),
        spurious=sum(1 for p in counted if not touching[p]), matches=matches)


@dataclass
class Summary:
    """Scores of several pages together: CER and order are means over pages, recall and precision are
    over all their blocks (a page of twenty blocks weighs more than a page of two)."""

    pages: int
    cer: float
    recall: float
    precision: float
    merges: int
    splits: int
    order: float | None

    @classmethod
    def of(cls, scores: Sequence[PageScore]) -> "Summary":
        if not scores:
            return cls(0, float("nan"), float("nan"), float("nan"), 0, 0, None)
        truth = sum(s.truth_blocks for s in scores)
        predicted = sum(s.predicted for s in scores)
        orders = [s.order for s in scores if s.order is not None]
        return cls(
            pages=len(scores), cer=sum(s.cer for s in scores) / len(scores),
            recall=sum(s.recalled for s in scores) / truth if truth else 1.0,
            precision=sum(s.precise for s in scores) / predicted if predicted else 0.0,
            merges=sum(s.merges for s in scores), splits=sum(s.splits for s in scores),
            order=sum(orders) / len(orders) if orders else None)
