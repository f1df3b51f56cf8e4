"""DFFreq (Yan et al., 2025; IEEE TIFS 2026): dual frequency branch with reconstructed sliding windows.

Architecture (official code)::

    x ─┬─ haar_dwt ─ regroup 2x2 blocks ─ LN ─ WindowAttn(4) ─(+)─ ungroup ─ haar_idwt ─ x_idwt
       │                                └──────────────────────┘
       └─ rfft2 ─ |F|, angle(F) ─ WindowAttn(8) over the phase ─ irfft2 ─ × fft_scale ─ x_fft
    a · x_idwt + b · x_fft ─▶ truncated ResNet-50 (3×3 stride-2 stem, layer1, layer2, pool, fc1) ─▶ logit

Two releases, selected by ``release`` (default ``current``):

* ``current`` — AIGIBench ``detector_codes/DFFreq-main`` since February 2026 and the standalone
  HorizonTEL/DFFreq-main repository (``checkpoints/model_epoch_last.pth``): module
  ``FreqLCBlock``, gate ``mlp``, fusion ``0.6 · x_idwt + 0.4 · x_ifft``; test transform
  CenterCrop(256) with no resize (preset ``dffreq-center-crop256``), training RandomCrop(256)
  + flip.
* ``2025-05`` — the May 2025 copy in AIGIBench (``networks/DFFreq.py``): module ``DFFreq``,
  gate ``GMLP``, fusion ``x_idwt + 0.2 · x_ifft``; test Resize((256, 256)) without a crop
  (preset ``forensynths-resize256``), training Resize(256) → RandomCrop(224) → flip.

``release`` sets the two fusion weights; the test preprocessing is the ``preprocess`` field
(a preset name is accepted there), and :func:`dffreq_release_preprocess` gives each release's.
Both releases have the same parameters, 1,442,442 in all: 1,437,761 in the ResNet (exactly
NPR's count) and 4,681 in the frequency block. The attention blocks work on the 3 colour
channels (``dim = 3``, one head, no qkv bias). ``fft_scale`` is a learnable scalar
initialised to 0, so at initialisation the network is the scaled wavelet branch followed by
the ResNet. Every convolution, the frequency block's included, starts from the ResNet's
Kaiming fan-out rule, as the official constructor applies it to all its modules.

Recipe (official): Adam lr 1e-4, batch 128, lr × 0.9 every 10 epochs. The official
evaluation loader sets ``drop_last=True`` (a partial last batch is silently skipped);
``aigi`` scores every image.

Official checkpoints (bare state dicts, either release) load with ``aigi convert dffreq``
(:mod:`aigi.convert.dffreq`), which detects the release from the key names.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Mapping

import torch
from pydantic import Field, model_validator
from torch import nn

from ..backbones.resnet import ResNet
from ..data.transforms import PreprocessConfig, preset
from ..layers.frequency import DualFrequencyBlock
from .base import Detector, DetectorConfig
from .registry import AIGI, register


#: fusion weights (idwt, fft) and test preset of each release
RELEASES: dict[str, tuple[float, float, str]] = {
    "current": (0.6, 0.4, "dffreq-center-crop256"),
    "2025-05": (1.0, 0.2, "forensynths-resize256"),
}


def dffreq_release_preprocess(release: str) -> PreprocessConfig:
    """The official test preprocessing of a DFFreq release (``current`` or ``2025-05``)."""
    if release not in RELEASES:
        raise ValueError(f"unknown DFFreq release {release!r}; choose one of {', '.join(RELEASES)}")
    return preset(RELEASES[release][2])


def _dffreq_preprocess() -> PreprocessConfig:
    # the current release: CenterCrop(256), no resize (DFFreq-main data/datasets.py)
    return dffreq_release_preprocess("current")


class DFFreqConfig(DetectorConfig):
    preprocess: PreprocessConfig = Field(default_factory=_dffreq_preprocess)
    release: Literal["current", "2025-05"] = Field(
        "current", description="official release: 'current' (FreqLCBlock, 0.6/0.4 fusion) or '2025-05' (1/0.2)"
    )
    blocks: tuple[Annotated[int, Field(ge=1, le=64)], Annotated[int, Field(ge=1, le=64)]] = Field((3, 4), description="bottleneck blocks in layer1, layer2 (ResNet-50: 3, 4)")
    width: int = Field(64, ge=1, le=1024, description="stem width of the truncated ResNet (64)")
    num_heads: int = Field(1, ge=1, le=3, description="attention heads over the 3 colour channels (official: 1)")
    qkv_bias: bool = Field(False, description="bias in the qkv convolutions (official: False)")
    dwt_window: int = Field(4, ge=1, le=256, description="wavelet attention window: 4 = one 2x2 block of all 4 sub-bands")
    fft_window: int = Field(8, ge=1, le=256, description="window of the phase attention (official: 8)")
    fft_scale_init: float = Field(0.0, description="initial value of the learnable FFT scale (official: 0)")

    @model_validator(mode="before")
    @classmethod
    def _legacy_fft_weight(cls, data: Any) -> Any:
        """Folders written before ``release`` existed stored ``fft_weight: 0.2``: that is the May 2025 fusion."""
        if isinstance(data, dict) and "fft_weight" in data:
            data = dict(data)
            weight = data.pop("fft_weight")
            if weight != 0.2:
                raise ValueError(f"fft_weight={weight!r} matches no DFFreq release; use release: current or 2025-05")
            data.setdefault("release", "2025-05")
        return data


@register("dffreq", task=AIGI)
class DFFreq(Detector):
    """DFFreq: Haar-wavelet and FFT-phase window attention before a truncated ResNet-50 (~1.44 M params)."""

    config_class = DFFreqConfig
    tiny_overrides: ClassVar[dict[str, Any]] = {"blocks": (1, 1), "width": 4, "preprocess.size": 32,
                                                 "preprocess.resize_to": 36}
    full_size_overrides: ClassVar[dict[str, Any]] = {}

    @property
    def fusion_weights(self) -> tuple[float, float]:
        """(idwt, fft) weights of the configured release."""
        idwt, fft, _ = RELEASES[self.config.release]
        return idwt, fft

    def __init__(self, config: DFFreqConfig) -> None:
        super().__init__(config)
        c = self.config
        idwt_w, fft_w, _ = RELEASES[c.release]
        self.freq = DualFrequencyBlock(3, num_heads=c.num_heads, bias=c.qkv_bias, dwt_window=c.dwt_window,
                                       fft_window=c.fft_window, fft_weight=fft_w, idwt_weight=idwt_w,
                                       fft_scale_init=c.fft_scale_init)
        for m in self.freq.modules():  # the official constructor's Kaiming loop covers the block too
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        self.net = ResNet(tuple(c.blocks), stages=2, stem="npr", width=c.width, fc_name="fc1")

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.net(self.freq(pixels)).squeeze(-1)


def convert_official_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An official DFFreq state dict (either release) renamed to this detector's keys.

    Thin alias of :func:`aigi.convert.dffreq.map_official_state` that drops the detected
    release; unknown or missing keys raise a ``CheckpointError`` listing them.
    """
    from ..convert.dffreq import map_official_state

    return map_official_state(state)[0]
