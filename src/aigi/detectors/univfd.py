"""UnivFD (Ojha et al., CVPR 2023): a linear probe on frozen CLIP image embeddings."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from ..data.transforms import PreprocessConfig, preset
from .clip_base import ClipDetector, ClipDetectorConfig
from .registry import AIGI, register


def _univfd_preprocess() -> PreprocessConfig:
    """The ``univfd-center-crop224`` preset: UniversalFakeDetect's validate.py (CenterCrop 224, CLIP statistics)."""
    return preset("univfd-center-crop224")


class UnivFDConfig(ClipDetectorConfig):
    preprocess: PreprocessConfig = Field(default_factory=_univfd_preprocess)


@register("univfd", task=AIGI)
class UnivFD(ClipDetector):
    """UnivFD: frozen CLIP ViT-L/14, Linear(768, 1) on the projected embedding (769 trainable)."""

    config_class = UnivFDConfig

    def __init__(self, config: UnivFDConfig, *, pretrained_backbone: bool = True) -> None:
        super().__init__(config, pretrained_backbone=pretrained_backbone)
        self.fc = nn.Linear(self.embed_dim, 1)
        nn.init.normal_(self.fc.weight, 0.0, 0.02)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            feats = self.embeds(pixels)
        return self.fc(feats).squeeze(-1)
