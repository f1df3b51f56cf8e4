"""Patch-level scores: a grid of model-input-sized crops over an image larger than the input.

The grid has ``ceil(W / size)`` columns and ``ceil(H / size)`` rows, at most ``max_cells``
in all (both counts shrink in proportion when there would be more). Crop ``(r, c)`` is a
``size x size`` window whose left edges are spread evenly from 0 to ``W - size`` (so the
first touches the left border, the last the right one, and neighbours overlap a little
when ``W`` is not a multiple of ``size``; with fewer cells than that, they leave gaps).
An image side shorter than ``size`` gets one crop spanning it. Every crop then goes through
the detector's own test transform, exactly like a whole image would.
"""

from __future__ import annotations

import math

from PIL import Image


def grid_shape(width: int, height: int, size: int, max_cells: int) -> tuple[int, int]:
    """(rows, cols) of the crop grid for a ``width x height`` image."""
    if width < 1 or height < 1 or size < 1 or max_cells < 1:
        raise ValueError("width, height, size and max_cells must be positive")
    rows, cols = max(1, math.ceil(height / size)), max(1, math.ceil(width / size))
    if rows * cols > max_cells:
        f = math.sqrt(max_cells / (rows * cols))
        rows, cols = max(1, math.floor(rows * f)), max(1, math.floor(cols * f))
        while rows * cols > max_cells:  # floor of a product can still overshoot by rounding
            if rows >= cols:
                rows -= 1
            else:
                cols -= 1
    return rows, cols


def _starts(extent: int, size: int, n: int) -> list[int]:
    if extent <= size:
        return [0] * n
    if n == 1:
        return [(extent - size) // 2]
    span = extent - size
    return [round(i * span / (n - 1)) for i in range(n)]


def crop_boxes(width: int, height: int, size: int, max_cells: int) -> tuple[int, int, list[tuple[int, int, int, int]]]:
    """(rows, cols, boxes) with boxes ``(left, top, right, bottom)`` in row-major order."""
    rows, cols = grid_shape(width, height, size, max_cells)
    tops = _starts(height, size, rows)
    lefts = _starts(width, size, cols)
    boxes = [
        (left, top, min(left + size, width), min(top + size, height))
        for top in tops
        for left in lefts
    ]
    return rows, cols, boxes


def crops(img: Image.Image, boxes: list[tuple[int, int, int, int]]) -> list[Image.Image]:
    """The crops of ``img`` at ``boxes`` (each within the image)."""
    return [img.crop(b) for b in boxes]
