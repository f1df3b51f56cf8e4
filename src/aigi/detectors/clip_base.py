"""Shared base of every detector built on a CLIP vision tower.

It owns the backbone spec, builds the tower (pretrained for training and for adapter-only
checkpoints, architecture-only when a full checkpoint will overwrite it), fixes the input
side to the tower's ``image_size`` and defaults to CLIP normalisation.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import Field

from ..backbones.clip import ClipBackboneConfig, load_clip_vision
from ..data.transforms import PreprocessConfig
from .base import Detector, DetectorConfig, freeze


def clip_preprocess(**kw: Any) -> PreprocessConfig:
    """CLIP-normalised preprocessing with the field's usual centre crop at test time."""
    return PreprocessConfig(normalize="clip", **kw)


class ClipDetectorConfig(DetectorConfig):
    backbone: ClipBackboneConfig = Field(default_factory=ClipBackboneConfig)
    preprocess: PreprocessConfig = Field(default_factory=clip_preprocess)


class ClipDetector(Detector):
    """Base for CLIP-tower detectors (not registered itself)."""

    config_class: ClassVar[type[DetectorConfig]] = ClipDetectorConfig
    backbone_prefixes: ClassVar[tuple[str, ...]] = ("backbone.",)
    tiny_overrides: ClassVar[dict[str, Any]] = {"backbone": "tiny"}
    full_size_overrides: ClassVar[dict[str, Any]] = {"backbone": "clip-vit-large-patch14-random"}

    def __init__(self, config: ClipDetectorConfig, *, pretrained_backbone: bool = True) -> None:
        super().__init__(config)
        self.backbone = freeze(load_clip_vision(self.config.backbone, pretrained=pretrained_backbone))
        self.config.preprocess.size = int(self.backbone.config.image_size)

    @classmethod
    def build_for_loading(cls, config: DetectorConfig, *, adapter_only: bool) -> Detector:
        return cls(config, pretrained_backbone=adapter_only)

    @property
    def feature_dim(self) -> int:
        return int(self.backbone.config.hidden_size)

    @property
    def embed_dim(self) -> int:
        return int(self.backbone.config.projection_dim)

    def pooled(self, pixels: torch.Tensor) -> torch.Tensor:
        """The tower's ``pooler_output``: post-layernorm CLS token (B, hidden_size)."""
        return self.backbone.vision_model(pixel_values=pixels).pooler_output

    def embeds(self, pixels: torch.Tensor) -> torch.Tensor:
        """The projected image embedding, CLIP's ``encode_image`` (B, projection_dim)."""
        return self.backbone.visual_projection(self.pooled(pixels))
