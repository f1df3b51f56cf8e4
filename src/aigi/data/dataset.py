"""A torch Dataset over :class:`~aigi.data.layouts.Sample` lists, and its collate.

Broken files never stop a run: an item that fails to decode comes back as
``{"error": message, "index": i}`` and :func:`collate` moves it to
``batch["errors"]``. Randomness is per sample: item ``i`` of epoch ``e`` uses
``numpy.random.default_rng([seed, e, i])``, so augmentations do not depend on
the number of DataLoader workers or on the order items are fetched.

Batch format (from :func:`collate`):

* ``"pixels"``: float tensor (B, 3, H, W) -- **absent when no item of the
  batch decoded**; check ``batch["index"].numel() == 0`` first;
* ``"label"``: float tensor (B,), -1.0 for unknown labels;
* ``"index"``: long tensor (B,), positions in the dataset's sample list;
* ``"errors"``: list of ``(index, message)`` for the items that failed
  (always present, possibly empty);
* ``"caption"``: list of ``str | None`` (B,), present when the dataset has at
  least one sample with a caption.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .faces import DEFAULT_FACE_SCALE, crop_face
from .io import DEFAULT_MAX_PIXELS, ImageDecodeError, decode_image
from .layouts import Sample

__all__ = ["UNKNOWN_LABEL", "ImageDataset", "collate", "draft_size_for"]

#: Value of ``label`` for samples whose label is unknown.
UNKNOWN_LABEL: float = -1.0

TransformFn = Callable[[Image.Image, np.random.Generator], torch.Tensor]

#: geometric modes that resize the whole image before anything else looks at its pixels
_RESIZE_MODES = ("resize", "resize_center_crop", "resize_random_crop")


def draft_size_for(transform: Any) -> int | None:
    """The safe JPEG ``draft_size`` for a :class:`~aigi.data.transforms.Transform`, or None.

    Rule: only modes that resize the image first (``resize``, ``resize_center_crop``,
    ``resize_random_crop``), only when no pixel-level augmentation runs before the resize
    (blur sigmas and JPEG block sizes are in pixels of the decoded image), and the decoded
    image keeps both sides at least **twice** the resize target (``2 * size`` for
    ``resize``, ``2 * resize_to`` for the others). The resize then still down-samples by
    2x or more, so the output geometry (size, crop offsets) is unchanged and the content
    differs from a full decode only by the DCT-domain pre-shrink (a few grey levels).
    Crop modes, tiling, patch selection and ``none`` look at original pixels: never.
    """
    pre = getattr(transform, "pre", None)
    mode = getattr(transform, "mode", None)
    if pre is None or mode not in _RESIZE_MODES:
        return None
    aug = getattr(transform, "augment", None)
    if aug is not None and (aug.effective_blur_prob > 0 or aug.effective_jpeg_prob > 0
                            or aug.rotation_prob > 0 or aug.color_jitter_prob > 0):
        return None
    return 2 * int(pre.size if mode == "resize" else pre.resize_to)


class ImageDataset(Dataset):
    """Decode and transform samples; failures become error items, not exceptions.

    ``seed`` and the epoch (``set_epoch``) fix every item's random stream:
    ``default_rng([seed, epoch, index])``. ``draft_size`` is passed to
    :func:`~aigi.data.io.decode_image` (JPEG draft decoding; off by default); use
    :func:`draft_size_for` to get a value that is safe for the transform.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        transform: TransformFn,
        *,
        seed: int = 0,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        epoch: int = 0,
        draft_size: int | None = None,
    ) -> None:
        if seed < 0 or epoch < 0:
            raise ValueError(f"seed and epoch must be non-negative, got seed={seed}, epoch={epoch}")
        self.samples = list(samples)
        self.transform = transform
        self.seed = int(seed)
        self.max_pixels = max_pixels
        self.epoch = int(epoch)
        if draft_size is not None and (isinstance(draft_size, bool) or int(draft_size) <= 0):
            raise ValueError(f"draft_size must be a positive int or None, got {draft_size!r}")
        self.draft_size = None if draft_size is None else int(draft_size)
        self.has_captions = any(s.caption is not None for s in self.samples)

    def set_epoch(self, epoch: int) -> None:
        """Change the epoch so the next pass draws fresh (still reproducible) randomness."""
        if epoch < 0:
            raise ValueError(f"epoch must be non-negative, got {epoch}")
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict[str, Any]:
        """Item ``i`` as ``{"pixels", "label", "index"[, "caption"]}`` or ``{"error", "index"}``."""
        i = range(len(self.samples))[i]  # bounds check and negative indices
        sample = self.samples[i]
        try:
            # a face box is in pixels of the stored image: never draft-decode (shrink) those
            draft = None if sample.box is not None else self.draft_size
            img = decode_image(sample.path, max_pixels=self.max_pixels, draft_size=draft)
        except ImageDecodeError as err:
            return {"error": str(err), "index": i}
        if sample.box is not None:  # face-forgery data: the detector sees the enlarged face crop
            scale = getattr(getattr(self.transform, "pre", None), "face_scale", DEFAULT_FACE_SCALE)
            try:
                img = crop_face(img, sample.box, scale)
            except ValueError as err:
                return {"error": f"{sample.path}: {err}", "index": i}
        rng = np.random.default_rng([self.seed, self.epoch, i])
        pixels = self.transform(img, rng)
        label = UNKNOWN_LABEL if sample.label is None else float(sample.label)
        item: dict[str, Any] = {
            "pixels": pixels,
            "label": torch.tensor(label, dtype=torch.float32),
            "index": i,
        }
        if self.has_captions:
            item["caption"] = sample.caption
        return item

    def __repr__(self) -> str:
        return (
            f"ImageDataset({len(self.samples)} samples, seed={self.seed}, epoch={self.epoch}, "
            f"transform={self.transform!r})"
        )


def collate(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack the decoded items of a batch and list the failed ones under ``"errors"``.

    See the module docstring for the batch format; when no item decoded,
    ``"pixels"`` is absent and ``"index"``/``"label"`` are empty tensors.
    Items of different sizes (test mode ``"none"``) cannot be stacked: use
    batch size 1 for them.
    """
    good = [it for it in items if "error" not in it]
    errors = [(int(it["index"]), str(it["error"])) for it in items if "error" in it]
    batch: dict[str, Any] = {"errors": errors}
    if not good:
        batch["label"] = torch.zeros(0, dtype=torch.float32)
        batch["index"] = torch.zeros(0, dtype=torch.long)
        return batch
    shapes = {tuple(it["pixels"].shape) for it in good}
    if len(shapes) > 1:
        raise ValueError(
            f"cannot stack images of different sizes {sorted(shapes)}; use batch_size=1 "
            f"with test mode 'none', or a mode that outputs a fixed size"
        )
    batch["pixels"] = torch.stack([it["pixels"] for it in good])
    batch["label"] = torch.stack(
        [torch.as_tensor(it["label"], dtype=torch.float32) for it in good]
    ).reshape(-1)
    batch["index"] = torch.tensor([int(it["index"]) for it in good], dtype=torch.long)
    if any("caption" in it for it in good):
        batch["caption"] = [it.get("caption") for it in good]
    return batch
