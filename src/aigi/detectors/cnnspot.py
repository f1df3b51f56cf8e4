"""CNNSpot (Wang et al., CVPR 2020): ResNet-50 with a one-logit head."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

import torch
from pydantic import Field
from torch import nn

from ..backbones.resnet import ResNet, load_imagenet_weights
from ..data.transforms import PreprocessConfig, preset
from .base import Detector, DetectorConfig
from .registry import AIGI, register


def _cnnspot_preprocess() -> PreprocessConfig:
    """The ``cnnspot-center-crop224`` preset: the official eval.py's protocol.

    CNNDetection's eval.py sets ``no_resize`` and leaves ``no_crop`` off, so test images are
    centre-cropped to 224 without resizing; training resizes the shorter side to 256, crops
    224 at random and flips. (Its demo scripts score the whole image instead:
    ``preprocess: cnnspot-no-crop``.)
    """
    return preset("cnnspot-center-crop224")


class CNNSpotConfig(DetectorConfig):
    preprocess: PreprocessConfig = Field(default_factory=_cnnspot_preprocess)
    blocks: tuple[Annotated[int, Field(ge=1, le=64)], ...] = Field((3, 4, 6, 3), min_length=1, max_length=4)
    width: int = Field(64, ge=1, le=1024)
    imagenet_weights: str | None = Field(
        None,
        description="torchvision .pth file, or microsoft/resnet-50 (hub id or local folder); "
        "None trains from scratch",
    )


@register("cnnspot", task=AIGI)
class CNNSpot(Detector):
    """CNNSpot: ResNet-50 (ImageNet init), last layer Linear(2048, 1), weight N(0, 0.02), default bias init."""

    config_class = CNNSpotConfig
    tiny_overrides: ClassVar[dict[str, Any]] = {"blocks": (1, 1, 1, 1), "width": 4, "preprocess.size": 32,
                                                 "preprocess.resize_to": 36}
    full_size_overrides: ClassVar[dict[str, Any]] = {}

    def __init__(self, config: CNNSpotConfig, *, load_imagenet: bool = True) -> None:
        super().__init__(config)
        self.net = ResNet(tuple(self.config.blocks), width=self.config.width, fc_name="fc")
        if load_imagenet and self.config.imagenet_weights:
            load_imagenet_weights(self.net, self.config.imagenet_weights)
        # the official trainer re-draws only the weight; the bias keeps nn.Linear's default
        # U(-1/sqrt(2048), 1/sqrt(2048)) initialisation
        nn.init.normal_(self.net.fc.weight, 0.0, 0.02)

    @classmethod
    def build_for_loading(cls, config: DetectorConfig, *, adapter_only: bool) -> Detector:
        return cls(config, load_imagenet=False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.net(pixels).squeeze(-1)
