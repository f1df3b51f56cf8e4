"""Captions for the detectors that read text (NS-Net, DGS-Net), and the frozen text tower.

Captions come from the batch's ``caption`` list, which the data package fills from a
manifest's ``caption`` column. An image without one (a ``None`` entry, or a batch with no
``caption`` key at all, as with plain folder layouts) gets the detector's fallback prompt —
by default :data:`DEFAULT_FALLBACK` = ``"a photo"`` — and the detector says so once in the
``aigi`` log.

:class:`TextTower` is the CLIP text tower built by :func:`aigi.backbones.clip.load_clip_text`
from the same source as the vision tower; it is always frozen and run without gradients.
Its tokenizer is loaded lazily, on the first :meth:`TextTower.encode`, so loading a saved
detector for inference never needs the tokenizer files.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

import torch
from torch import nn

from ..backbones.clip import ClipBackboneConfig, load_clip_text, load_tokenizer

__all__ = ["DEFAULT_FALLBACK", "CaptionSource", "TextTower"]

#: prompt used for images without a caption (project choice: neutral, content-free)
DEFAULT_FALLBACK = "a photo"

log = logging.getLogger("aigi")


class CaptionSource:
    """Turns a batch into one caption per image; warns once per instance about fallbacks."""

    def __init__(self, owner: str, fallback: str = DEFAULT_FALLBACK) -> None:
        self.owner = owner
        self.fallback = fallback
        self.warned = False

    def __call__(self, batch: Mapping[str, Any], n: int) -> list[str]:
        """``n`` captions for the batch; missing ones replaced by the fallback prompt."""
        captions = batch.get("caption")
        if captions is None:
            captions = [None] * n
        captions = list(captions)
        if len(captions) != n:
            raise ValueError(f"{self.owner}: the batch has {n} images but {len(captions)} captions")
        out: list[str] = []
        missing = 0
        for i, c in enumerate(captions):
            if c is None or (isinstance(c, str) and not c.strip()):
                out.append(self.fallback)
                missing += 1
            elif isinstance(c, str):
                out.append(c)
            else:
                raise TypeError(f"{self.owner}: caption {i} must be a string or None, got {type(c).__name__}")
        if missing and not self.warned:
            self.warned = True
            log.warning(
                "%s: %d of %d images in a batch have no caption; using the fallback prompt %r "
                "(add a 'caption' column to a manifest to give real captions; this is said once)",
                self.owner, missing, n, self.fallback,
            )
        return out

    # the warned flag is per instance; copies (deepcopy, pickling) start fresh
    def __deepcopy__(self, memo: dict) -> "CaptionSource":
        return CaptionSource(self.owner, self.fallback)


class TextTower(nn.Module):
    """Frozen CLIP text tower: ``encode(list[str]) -> (N, projection_dim)`` text embeddings.

    ``pretrained=False`` builds the architecture only (a full checkpoint then fills it).
    The returned embeddings are CLIP's ``encode_text`` (projected, not normalised).
    """

    def __init__(self, spec: ClipBackboneConfig, *, pretrained: bool = True) -> None:
        super().__init__()
        self.model = load_clip_text(spec, pretrained=pretrained)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.model.eval()
        self._spec = spec
        self._tokenizer = None

    @property
    def dim(self) -> int:
        return int(self.model.config.projection_dim)

    def train(self, mode: bool = True) -> "TextTower":
        # frozen: always in eval mode, whatever the detector does
        super().train(False)
        return self

    @torch.no_grad()
    def encode(self, texts: list[str]) -> torch.Tensor:
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self._spec)
        device = next(self.model.parameters()).device
        tokens = {k: v.to(device) for k, v in self._tokenizer(list(texts)).items()}
        return self.model(**tokens).text_embeds
