"""NPR (Tan et al., CVPR 2024): Neighbouring Pixel Relationships.

``npr(x) = x - up2(down2(x))`` with nearest-neighbour sampling: each pixel minus the
top-left pixel of its 2×2 block. The network sees ``npr * 2/3`` (the constant official
checkpoints depend on) through a truncated ResNet-50 (3×3 stride-2 stem, ``layer1``,
``layer2``, pool, ``fc1`` = Linear(512, 1)): about 1.44 M parameters, trained from scratch.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

import torch
from pydantic import Field

from ..backbones.resnet import ResNet
from ..data.transforms import PreprocessConfig, preset
from .base import Detector, DetectorConfig
from .registry import AIGI, register


def npr_residual(x: torch.Tensor) -> torch.Tensor:
    """``x`` minus its nearest-neighbour 2× down-then-up copy; odd H or W is cropped to even."""
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    x = x[..., :h, :w]
    anchor = x[..., ::2, ::2].repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)
    return x - anchor


def _npr_preprocess() -> PreprocessConfig:
    """The ``forensynths-resize256`` preset: the official test.py's protocol for its main tables.

    NPR's test.py resizes ForenSynths, DiffusionForensics and UnivFD images to exactly
    256 x 256 (bilinear, no crop) and keeps GANGen images at their native size
    (``preprocess: native``); GenImage tiles small images before a 224 crop
    (``preprocess: genimage-translate-duplicate224``). NPR reads the up-sampling
    pattern of neighbouring pixels, so the resampling choice changes results, not
    decimals. Training: Resize(256) -> RandomCrop(224) -> flip, ImageNet statistics.
    """
    return preset("forensynths-resize256")


class NPRConfig(DetectorConfig):
    preprocess: PreprocessConfig = Field(default_factory=_npr_preprocess)
    input_scale: float = Field(2.0 / 3.0, gt=0.0, le=1e3, description="factor on the residual before conv1 (official: 2/3)")
    blocks: tuple[Annotated[int, Field(ge=1, le=64)], Annotated[int, Field(ge=1, le=64)]] = (3, 4)
    width: int = Field(64, ge=1, le=1024)


@register("npr", task=AIGI)
class NPR(Detector):
    """NPR: nearest-neighbour up-sampling residual into a truncated ResNet-50 (~1.44 M params)."""

    config_class = NPRConfig
    tiny_overrides: ClassVar[dict[str, Any]] = {"blocks": (1, 1), "width": 4, "preprocess.size": 32,
                                                 "preprocess.resize_to": 36}
    full_size_overrides: ClassVar[dict[str, Any]] = {}

    def __init__(self, config: NPRConfig) -> None:
        super().__init__(config)
        self.net = ResNet(tuple(self.config.blocks), stages=2, stem="npr", width=self.config.width, fc_name="fc1")

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.net(npr_residual(pixels) * self.config.input_scale).squeeze(-1)
