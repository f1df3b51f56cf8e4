"""DFFreq (Yan et al., 2025): dual frequency branch with reconstructed sliding windows.

Architecture (official code, a copy inside the AIGIBench repository)::

    x ─┬─ haar_dwt ─ regroup 2x2 blocks ─ LN ─ WindowAttn(4) ─(+)─ ungroup ─ haar_idwt ─ x_idwt
       │                                └──────────────────────┘
       └─ rfft2 ─ |F|, angle(F) ─ WindowAttn(8) over the phase ─ irfft2 ─ × fft_scale ─ x_fft
    x_idwt + 0.2 · x_fft ─▶ truncated ResNet-50 (3×3 stride-2 stem, layer1, layer2, pool, fc1) ─▶ logit

The truncated ResNet-50 is NPR's classifier, without the NPR residual. ``fft_scale`` is a
learnable scalar initialised to 0, so at initialisation the network is exactly the
wavelet branch followed by the ResNet. The attention blocks work on the 3 colour channels
(``dim = 3``, one head, no qkv bias). The parameter count does not depend on the input
size (the attention gates depend on the window, not on the image): 1,437,761 in the
ResNet (exactly NPR's count) and 4,681 in the frequency block, 1,442,442 in all.

Recipe (official): Adam lr 1e-4, batch 128, lr × 0.9 every 10 epochs; Resize(256) →
RandomCrop(224) → flip; ImageNet normalisation; validation Resize(256) → CenterCrop(224).
Project choices: the official loader resizes to exactly 256 × 256, here the shorter side
goes to 256 (identical for square images); AIGIBench's test script feeds the 256 × 256
resized image without a crop (``preprocess.test=resize`` with ``preprocess.size=256``);
the official loop decays the rate after 0-based epochs 10, 20, ... (i.e. after 11, 21,
... epochs), the recipe's step schedule every 10 epochs.

Official checkpoints load after :func:`convert_official_state_dict` (renames, and drops the
``pytorch_wavelets`` filter buffers, which this implementation does not need).
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

import torch
from pydantic import Field

from ..backbones.resnet import ResNet
from ..data.transforms import PreprocessConfig
from ..layers.frequency import DualFrequencyBlock
from .base import Detector, DetectorConfig
from .registry import AIGI, register


def _dffreq_preprocess() -> PreprocessConfig:
    # Train: Resize(256) -> RandomCrop(224) -> flip; validation: Resize(256) -> CenterCrop(224).
    return PreprocessConfig(train="resize_random_crop", test="resize_center_crop", size=224, resize_to=256,
                            normalize="imagenet")


class DFFreqConfig(DetectorConfig):
    preprocess: PreprocessConfig = Field(default_factory=_dffreq_preprocess)
    blocks: tuple[int, int] = Field((3, 4), description="bottleneck blocks in layer1, layer2 (ResNet-50: 3, 4)")
    width: int = Field(64, ge=1, description="stem width of the truncated ResNet (64)")
    num_heads: int = Field(1, ge=1, description="attention heads over the 3 colour channels (official: 1)")
    qkv_bias: bool = Field(False, description="bias in the qkv convolutions (official: False)")
    dwt_window: int = Field(4, ge=1, description="wavelet attention window: 4 = one 2x2 block of all 4 sub-bands")
    fft_window: int = Field(8, ge=1, description="window of the phase attention (official: 8)")
    fft_weight: float = Field(0.2, description="weight of the FFT branch in the fusion x_idwt + w * x_fft")
    fft_scale_init: float = Field(0.0, description="initial value of the learnable FFT scale (official: 0)")


@register("dffreq", task=AIGI)
class DFFreq(Detector):
    """DFFreq: Haar-wavelet and FFT-phase window attention before a truncated ResNet-50 (~1.44 M params)."""

    config_class = DFFreqConfig
    tiny_overrides: ClassVar[dict[str, Any]] = {"blocks": (1, 1), "width": 4, "preprocess.size": 32,
                                                 "preprocess.resize_to": 36}
    full_size_overrides: ClassVar[dict[str, Any]] = {}

    def __init__(self, config: DFFreqConfig) -> None:
        super().__init__(config)
        c = self.config
        self.freq = DualFrequencyBlock(3, num_heads=c.num_heads, bias=c.qkv_bias, dwt_window=c.dwt_window,
                                       fft_window=c.fft_window, fft_weight=c.fft_weight,
                                       fft_scale_init=c.fft_scale_init)
        self.net = ResNet(tuple(c.blocks), stages=2, stem="npr", width=c.width, fc_name="fc1")

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.net(self.freq(pixels)).squeeze(-1)


def convert_official_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an official DFFreq ``resnet50`` state dict to this detector's names.

    ``DFFreq.norm1.body.*`` → ``freq.norm1.*``, ``DFFreq.*.GMLP.*`` → ``freq.*.gate.*``, other
    ``DFFreq.*`` → ``freq.*``, the ResNet (``conv1``, ``bn1``, ``layer1``, ``layer2``, ``fc1``)
    → ``net.*``; a leading ``module.`` (DataParallel) is removed and the Haar filter buffers
    of ``pytorch_wavelets`` (``*dwt_transform.*``) are dropped. Unknown keys raise.
    """
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, value in state.items():
        k = key[len("module."):] if key.startswith("module.") else key
        if "dwt_transform." in k:  # also matches idwt_transform: fixed filters, not weights
            continue
        if k.startswith("DFFreq."):
            k = "freq." + k[len("DFFreq."):]
            k = k.replace(".norm1.body.", ".norm1.").replace(".GMLP.", ".gate.")
        elif k.split(".")[0] in {"conv1", "bn1", "layer1", "layer2", "fc1"}:
            k = "net." + k
        else:
            unknown.append(key)
            continue
        out[k] = value
    if unknown:
        raise KeyError(f"not DFFreq weights: unexpected keys {unknown[:10]}")
    return out
