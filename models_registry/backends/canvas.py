"""Images of different sizes in one forward pass: pasted at the top left of a shared canvas.

A detector's output map for one image is then the top-left corner of the canvas's map, so boxes
need no moving, only the map cropped to the image's own size. Images of very different sizes go
to different canvases, so a batch never spends most of its work on padding.
"""

import numpy as np

MAX_PADDING = 0.5
"""At most this share of a canvas batch's pixels is padding; images beyond it start another batch."""


def shared_canvases(shapes: list[tuple[int, int]], max_padding: float = MAX_PADDING) -> list[list[int]]:
    """Indexes of `shapes` (height, width) grouped so each group's padded canvas wastes at most
    `max_padding` of its pixels; groups in order of size, indexes in each as given."""
    order = sorted(range(len(shapes)), key=lambda i: (shapes[i][0] * shapes[i][1], i))
    groups: list[list[int]] = []
    for index in order:
        if groups:
            candidate = groups[-1] + [index]
            height = max(shapes[i][0] for i in candidate)
            width = max(shapes[i][1] for i in candidate)
            used = sum(shapes[i][0] * shapes[i][1] for i in candidate)
            if used >= (1 - max_padding) * height * width * len(candidate):
                groups[-1] = candidate
                continue
        groups.append([index])
    return [sorted(group) for group in groups]


def paste(arrays: list[np.ndarray]) -> np.ndarray:
    """Channel-first arrays (C x H x W) stacked on one N x C x H' x W' canvas, each at the top left
    and continued to the canvas's edges by repeating its last row and column: the padding looks like
    the picture's own border (blank paper, a sky), not like an edge a detector might react to."""
    height = max(array.shape[1] for array in arrays)
    width = max(array.shape[2] for array in arrays)
    return np.stack([np.pad(array, ((0, 0), (0, height - array.shape[1]), (0, width - array.shape[2])), mode="edge")
                     for array in arrays]).astype(np.float32, copy=False)
