"""PiN-CLIP (2025): positive-incentive noise injected into CLIP features while fine-tuning.

No official code; this follows the paper's description and the notes in ``methods.md``
(the authors' earlier PiNI code classifies the noisy feature exactly this way).

With ``f`` the image embedding (CLIP ``encode_image``, LoRA-adapted) and ``T`` (2 × 768) the
frozen text embeddings of the two class prompts::

    f̂ = f / ‖f‖,   T̂ = rows of T normalised
    a = CrossAttention(query = f̂, keys = values = T̂)            (nn.MultiheadAttention)
    μ = fc_mu(a),  σ = |fc_sigma(a)|,  ε = μ + σ ⊙ z,  z ~ N(0, I)
    f̃ = normalize(f̂ + ε)
    class logits = logit_scale · f̃ T̂ᵀ    (B × 2);   detector logit = l_fake − l_real
    loss = CE(class logits, y) + β · KL(N(μ, σ²) ‖ N(0, I))
    KL   = mean over the batch of Σ_d ½ (μ_d² + σ_d² − 1 − log σ_d²)

At inference ``inference_noise`` decides: ``none`` (ε = 0, the default: the paper turns the
noise off at test time) or ``mean`` (ε = μ). (Not called "off": YAML reads a bare ``off`` as
false.)

Project choices:

* **Prompts.** ``"a photo of a real image"`` / ``"a photo of a fake image"`` (index 0 real,
  1 fake). Their text embeddings are computed once when the detector is built (from the
  frozen CLIP text tower of the same source) and kept as the persistent buffer
  ``class_text``: the text tower is not kept in the module, so checkpoints and inference
  carry no text weights, and a reload is identical.
* **What fine-tunes.** LoRA (rank 6, alpha 6, scale alpha/sqrt(r), no dropout) on q, k, v
  of every vision block — about 0.9 M parameters on ViT-L/14, foldable into the weights
  for zero inference cost, and small checkpoints; tuning whole blocks would store
  12.6 M parameters per block. Plus the noise generator (cross-attention, ``fc_mu``,
  ``fc_sigma``).
* **Feature normalisation.** The noise is added to the unit-norm feature, so its scale means
  the same thing whatever the raw embedding norm.
* **Initialisation.** ``fc_mu`` and ``fc_sigma`` weights N(0, 0.02²); ``fc_mu`` bias 0,
  ``fc_sigma`` bias ``sigma_init`` (0.01): the noise starts small.
* **Constants.** ``logit_scale`` = 100 (CLIP's trained value, fixed); β = 1e-4 on the
  summed (not averaged) KL; one attention head. ``log σ²`` uses ``σ`` clamped at 1e-6 so the
  KL stays finite when a σ is 0 (the noise itself uses the unclamped σ).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn

from ..layers.captions import TextTower
from ..layers.lora import LoRAConfig
from ._clip_family import ClipFamilyDetector
from .clip_base import ClipDetectorConfig
from .registry import AIGI, register

_SIGMA_FLOOR = 1e-6


def gaussian_kl(mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """``KL(N(μ, diag σ²) ‖ N(0, I))``: summed over the last dim, averaged over the rest.

    Each dimension contributes ``½ μ² + ½ (σ² − 1 − log σ²)``; the second part is ≥ 0 for
    every σ > 0 and is clamped at 0 against rounding, so the result is never negative.
    """
    var = sigma.float() ** 2
    log_var = torch.log(sigma.float().abs().clamp_min(_SIGMA_FLOOR) ** 2)
    per_dim = 0.5 * mu.float() ** 2 + 0.5 * (var - 1.0 - log_var).clamp_min(0.0)
    return per_dim.sum(-1).mean()


class PiNCLIPConfig(ClipDetectorConfig):
    prompts: tuple[str, str] = Field(
        ("a photo of a real image", "a photo of a fake image"), description="class prompts (real, fake)"
    )
    lora: LoRAConfig = Field(default_factory=lambda: LoRAConfig(rank=6, alpha=6.0, dropout=0.0))
    attn_heads: int = Field(1, ge=1, description="heads of the noise generator's cross-attention")
    logit_scale: float = Field(100.0, gt=0.0, description="CLIP logit scale on the cosine similarities")
    beta: float = Field(1e-4, ge=0.0, description="weight of the KL term")
    sigma_init: float = Field(0.01, ge=0.0, description="initial noise scale (bias of fc_sigma)")
    inference_noise: Literal["none", "mean"] = Field("none", description="test time: no noise, or the mean noise mu")

    @field_validator("prompts")
    @classmethod
    def _non_empty(cls, v: tuple[str, str]) -> tuple[str, str]:
        if not all(p.strip() for p in v):
            raise ValueError("both class prompts must be non-empty")
        return v


class NoiseGenerator(nn.Module):
    """Cross-attention from the image feature to the class text features → (μ, σ)."""

    def __init__(self, dim: int, heads: int, sigma_init: float) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attn_heads={heads} must divide the feature width {dim}")
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.fc_mu = nn.Linear(dim, dim)
        self.fc_sigma = nn.Linear(dim, dim)
        for fc in (self.fc_mu, self.fc_sigma):
            nn.init.normal_(fc.weight, 0.0, 0.02)
        nn.init.zeros_(self.fc_mu.bias)
        nn.init.constant_(self.fc_sigma.bias, sigma_init)

    def forward(self, feat: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kv = text.unsqueeze(0).expand(feat.shape[0], -1, -1).to(feat.dtype)
        a, _ = self.attn(feat.unsqueeze(1), kv, kv, need_weights=False)
        a = a.squeeze(1)
        return self.fc_mu(a), self.fc_sigma(a).abs()


@register("pinclip", task=AIGI)
class PiNCLIP(ClipFamilyDetector):
    """PiN-CLIP: learned positive-incentive feature noise (cross-attention to class prompts), LoRA CLIP."""

    config_class = PiNCLIPConfig
    tiny_overrides: ClassVar[dict[str, Any]] = {"backbone": "tiny"}

    def __init__(self, config: PiNCLIPConfig, *, pretrained_backbone: bool = True) -> None:
        super().__init__(config, pretrained_backbone=pretrained_backbone)
        cfg: PiNCLIPConfig = self.config
        d = self.embed_dim
        self._add_lora(cfg.lora)
        self.noise = NoiseGenerator(d, cfg.attn_heads, cfg.sigma_init)
        # architecture-only builds (a full checkpoint will fill it) skip the text tower entirely
        self.register_buffer("class_text", torch.zeros(2, d))
        if pretrained_backbone:
            tower = TextTower(self.config.backbone, pretrained=True)
            if tower.dim != d:
                raise ValueError(f"text embedding width {tower.dim} differs from the image embedding width {d}")
            self.class_text.copy_(tower.encode(list(cfg.prompts)).float())

    def _class_logits(self, feat: torch.Tensor) -> torch.Tensor:
        text = F.normalize(self.class_text, dim=-1).to(feat.dtype)
        return self.config.logit_scale * F.normalize(feat, dim=-1) @ text.T

    def noisy_features(self, pixels: torch.Tensor, *, sample: bool) -> dict[str, torch.Tensor]:
        """``f̂``, ``μ``, ``σ`` and the noisy feature (sampled noise, or per ``inference_noise``)."""
        f = F.normalize(self.image_features(pixels), dim=-1)
        mu, sigma = self.noise(f, F.normalize(self.class_text, dim=-1))
        if sample:
            eps = mu + sigma * torch.randn_like(mu)
        elif self.config.inference_noise == "mean":
            eps = mu
        else:
            eps = torch.zeros_like(mu)
        return {"f": f, "mu": mu, "sigma": sigma, "noisy": f + eps}

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.config.inference_noise == "none":
            logits = self._class_logits(self.image_features(pixels))
        else:
            logits = self._class_logits(self.noisy_features(pixels, sample=False)["noisy"])
        return logits[:, 1] - logits[:, 0]

    def training_loss(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        out = self.noisy_features(batch["pixels"], sample=True)
        logits = self._class_logits(out["noisy"])
        ce = F.cross_entropy(logits.float(), batch["label"].long())
        kl = gaussian_kl(out["mu"], out["sigma"])
        loss = ce + self.config.beta * kl
        return {"loss": loss, "ce": ce.detach(), "kl": kl.detach(),
                "sigma_mean": out["sigma"].detach().float().mean()}
