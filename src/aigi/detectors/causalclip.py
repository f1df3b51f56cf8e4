"""CausalCLIP (Liu, Qin, He; AAAI 2026, arXiv 2512.13285): Gumbel-Softmax feature masking + HSIC independence.

No official code; this follows the paper's abstract (causal / non-causal split of CLIP features,
Gumbel-Softmax-based masking, HSIC independence). What is ours — the keep-ratio term, τ, the frozen
encoder, the HSIC bandwidth and the rest — is listed below and tabulated in ``docs/clip_family.md``.

With ``f`` the CLIP image embedding (``encode_image``, 768-d) and ``ℓ`` per-dimension mask
logits::

    m = GumbelSigmoid(ℓ, τ)          training: sampled, straight-through hard by default
    c = m ⊙ f   (causal),   s = (1 − m) ⊙ f   (non-causal)
    logit = fc(c)                                       Linear(768, 1)
    loss  = BCE(logit, y) + λ_hsic · HSIC(c, s) + λ_ratio · (mean(m) − ρ)²
    HSIC(X, Y) = tr(K H L H) / (n − 1)²,  Gaussian kernels, median-heuristic bandwidths

Inference: the mask is deterministic, ``m = [ℓ > 0]`` (``inference_mask: hard``, default) or
``sigmoid(ℓ / τ)`` (``soft``); no noise.

Our choices (the paper's abstract leaves these open):

* **Mask logits.** ``mask: global`` (default) — one learned logit per feature dimension,
  the literal "per-dimension mask"; ``mask: conditional`` — logits ``W f + b`` computed per
  image (Linear(768, 768), ``W = 0``). Logits (or ``b``) start N(0, 0.01²): every keep
  probability starts near 0.5 and the deterministic mask starts with about half the
  dimensions kept.
* **Temperature and estimator.** τ = 1 (constant), straight-through hard samples at train
  time so training and inference both see a binary mask.
* **Keep-ratio term.** HSIC alone is minimised by the trivial mask m = 1 (s = 0 is
  independent of everything), which turns the method into a plain linear probe; the term
  ``λ_ratio (mean(m) − ρ)²`` with ρ = 0.5, λ_ratio = 1 rules that out (``keep_ratio: null``
  removes it). λ_hsic = 1.
* **Encoder.** Frozen CLIP ViT-L/14 (UnivFD protocol) by default; ``lora.rank > 0`` adapts
  q, k, v of every vision block with LoRA.
* **Features.** The 768-d projected embedding, not normalised (HSIC's bandwidths adapt to the
  scale). HSIC's bandwidths are computed without gradient (see :mod:`aigi.layers.hsic`).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ..layers.gumbel import deterministic_mask, gumbel_sigmoid
from ..layers.hsic import hsic
from ..layers.lora import LoRAConfig
from ._clip_family import ClipFamilyDetector
from .clip_base import ClipDetectorConfig
from .registry import AIGI, register


class CausalCLIPConfig(ClipDetectorConfig):
    mask: Literal["global", "conditional"] = Field("global", description="one logit per dimension, or per image")
    tau: float = Field(1.0, gt=0.0, description="Gumbel-Softmax temperature")
    straight_through: bool = Field(True, description="hard {0,1} mask forward, soft gradient backward (training)")
    inference_mask: Literal["hard", "soft"] = Field("hard", description="noise-free mask at test time")
    hsic_weight: float = Field(1.0, ge=0.0, description="weight of HSIC(causal, non-causal)")
    keep_ratio: float | None = Field(0.5, gt=0.0, lt=1.0, description="target mean of the mask; null: no ratio term")
    ratio_weight: float = Field(1.0, ge=0.0, description="weight of (mean(m) - keep_ratio)^2")
    lora: LoRAConfig = Field(default_factory=lambda: LoRAConfig(rank=0))


@register("causalclip", task=AIGI)
class CausalCLIP(ClipFamilyDetector):
    """CausalCLIP: Gumbel-Softmax mask splits CLIP features; HSIC makes causal ⟂ non-causal."""

    config_class = CausalCLIPConfig
    tiny_overrides: ClassVar[dict[str, Any]] = {"backbone": "tiny"}

    def __init__(self, config: CausalCLIPConfig, *, pretrained_backbone: bool = True) -> None:
        super().__init__(config, pretrained_backbone=pretrained_backbone)
        cfg: CausalCLIPConfig = self.config
        d = self.embed_dim
        self._add_lora(cfg.lora)
        if cfg.mask == "global":
            self.mask_logits = nn.Parameter(torch.empty(d).normal_(0.0, 0.01))
        else:
            self.mask_net = nn.Linear(d, d)
            nn.init.zeros_(self.mask_net.weight)
            nn.init.normal_(self.mask_net.bias, 0.0, 0.01)
        self.fc = nn.Linear(d, 1)
        nn.init.normal_(self.fc.weight, 0.0, 0.02)
        nn.init.zeros_(self.fc.bias)

    def logits_for(self, f: torch.Tensor) -> torch.Tensor:
        """Mask logits (B, D)."""
        if self.config.mask == "global":
            return self.mask_logits.to(f.dtype).expand_as(f)
        return self.mask_net(f)

    def inference_mask(self, f: torch.Tensor) -> torch.Tensor:
        return deterministic_mask(self.logits_for(f), self.config.tau, hard=self.config.inference_mask == "hard")

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        f = self.image_features(pixels)
        return self.fc(self.inference_mask(f) * f).squeeze(-1)

    def training_loss(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        cfg: CausalCLIPConfig = self.config
        f = self.image_features(batch["pixels"])
        m = gumbel_sigmoid(self.logits_for(f), cfg.tau, hard=cfg.straight_through)
        c, s = m * f, (1.0 - m) * f
        logits = self.fc(c).squeeze(-1)
        bce = F.binary_cross_entropy_with_logits(logits, batch["label"].to(logits.dtype))
        dep = hsic(c, s) if f.shape[0] > 1 else logits.sum() * 0.0
        ratio = (m.mean() - cfg.keep_ratio) ** 2 if cfg.keep_ratio is not None else logits.sum() * 0.0
        loss = bce + cfg.hsic_weight * dep + cfg.ratio_weight * ratio
        return {"loss": loss, "bce": bce.detach(), "hsic": dep.detach(), "ratio": ratio.detach(),
                "keep": m.detach().float().mean()}
