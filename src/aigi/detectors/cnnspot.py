"""CNNSpot (Wang et al., CVPR 2020): ResNet-50 with a one-logit head."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import Field
from torch import nn

from ..backbones.resnet import ResNet, load_imagenet_weights
from ..data.transforms import PreprocessConfig
from .base import Detector, DetectorConfig
from .registry import AIGI, register


def _cnnspot_preprocess() -> PreprocessConfig:
    # Train: shorter side to 256, random crop 224, flip. Test: centre crop 224, no resize.
    return PreprocessConfig(train="resize_random_crop", test="center_crop", normalize="imagenet")


class CNNSpotConfig(DetectorConfig):
    preprocess: PreprocessConfig = Field(default_factory=_cnnspot_preprocess)
    blocks: tuple[int, ...] = (3, 4, 6, 3)
    width: int = 64
    imagenet_weights: str | None = Field(
        None,
        description="torchvision .pth file, or microsoft/resnet-50 (hub id or local folder); "
        "None trains from scratch",
    )


@register("cnnspot", task=AIGI)
class CNNSpot(Detector):
    """CNNSpot: ResNet-50 (ImageNet init), last layer Linear(2048, 1) initialised N(0, 0.02)."""

    config_class = CNNSpotConfig
    tiny_overrides: ClassVar[dict[str, Any]] = {"blocks": (1, 1, 1, 1), "width": 4, "preprocess.size": 32,
                                                 "preprocess.resize_to": 36}
    full_size_overrides: ClassVar[dict[str, Any]] = {}

    def __init__(self, config: CNNSpotConfig, *, load_imagenet: bool = True) -> None:
        super().__init__(config)
        self.net = ResNet(tuple(self.config.blocks), width=self.config.width, fc_name="fc")
        if load_imagenet and self.config.imagenet_weights:
            load_imagenet_weights(self.net, self.config.imagenet_weights)
        nn.init.normal_(self.net.fc.weight, 0.0, 0.02)
        nn.init.zeros_(self.net.fc.bias)

    @classmethod
    def build_for_loading(cls, config: DetectorConfig, *, adapter_only: bool) -> Detector:
        return cls(config, load_imagenet=False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.net(pixels).squeeze(-1)
