"""Face crops for face-forgery detectors: a box from the manifest, enlarged, cut before preprocessing.

Face-forgery benchmarks (FaceForensics++, Celeb-DF, DFDC) score *face crops* of video frames,
not whole frames. Boxes come from a face detector run once offline (dlib, RetinaFace, MTCNN…)
and are given per image in a manifest (columns ``x0, y0, x1, y1`` in pixels of the image as
``aigi`` decodes it, i.e. after EXIF orientation; video frames have none; see
:mod:`aigi.data.layouts`). Images with a box are never draft-decoded (that would shrink them). :func:`crop_face` then cuts the region every detector sees,
before the detector's own preprocessing (resize, crop, normalisation).

The rule is the one of the FaceForensics++ reference code (``get_boundingbox``, ``scale = 1.3``),
also used by DeepfakeBench's preprocessing: a **square** of side ``int(max(w, h) · scale)`` centred
on the box centre (integer midpoint), its top-left corner clamped at 0, then the side shrunk so the
square fits inside the image. So the crop is always square, may be smaller than asked at the
image border, and never padded. ``scale`` is the detector's ``preprocess.face_scale`` (stored
in its config, so evaluation crops exactly as training did).

Images without a box (plain folder layouts, ``aigi detect`` on single files) are used whole;
give face-forgery detectors face crops, or a manifest with boxes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from PIL import Image

__all__ = ["DEFAULT_FACE_SCALE", "check_box", "crop_face", "face_square"]

#: FaceForensics++'s box enlargement (its ``get_boundingbox`` default)
DEFAULT_FACE_SCALE: float = 1.3


def check_box(box: Sequence[float], where: str = "box") -> tuple[float, float, float, float]:
    """``(x0, y0, x1, y1)`` as floats; a clear error for a box that is not 4 finite numbers with x0 < x1, y0 < y1."""
    try:
        values = tuple(float(v) for v in box)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: a face box must be 4 numbers x0, y0, x1, y1, got {box!r}") from None
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise ValueError(f"{where}: a face box must be 4 finite numbers x0, y0, x1, y1, got {box!r}")
    x0, y0, x1, y1 = values
    if x0 < 0 or y0 < 0:
        raise ValueError(f"{where}: face box corner ({x0:g}, {y0:g}) is outside the image (negative)")
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"{where}: face box needs x0 < x1 and y0 < y1, got {values}")
    return values


def face_square(box: Sequence[float], width: int, height: int,
                scale: float = DEFAULT_FACE_SCALE) -> tuple[int, int, int]:
    """``(left, top, side)`` of the enlarged square crop inside a ``width`` × ``height`` image (see module)."""
    x0, y0, x1, y1 = check_box(box)
    if scale <= 0:
        raise ValueError(f"face scale must be positive, got {scale}")
    if x0 >= width or y0 >= height:
        raise ValueError(f"face box {tuple(box)} starts outside the {width} x {height} image")
    side = int(max(x1 - x0, y1 - y0) * scale)
    cx, cy = (int(x0) + int(x1)) // 2, (int(y0) + int(y1)) // 2
    left = max(cx - side // 2, 0)
    top = max(cy - side // 2, 0)
    side = min(width - left, height - top, side)
    if side < 1:
        raise ValueError(f"face box {tuple(box)} gives an empty crop in the {width} x {height} image")
    return left, top, side


def crop_face(img: Image.Image, box: Sequence[float], scale: float = DEFAULT_FACE_SCALE) -> Image.Image:
    """The square face crop of ``img`` around ``box`` enlarged by ``scale`` (FaceForensics++ rule)."""
    left, top, side = face_square(box, img.width, img.height, scale)
    return img.crop((left, top, left + side, top + side))
