"""PiN-CLIP (Yan, Li, Wang, Zeng, Fu; arXiv 2511.16136): positive-incentive noise on CLIP features.

No official code. The abstract gives: a noise generator and the detector trained jointly under a
variational positive-incentive principle; the noise is built in feature space by cross-attention
fusion of visual and categorical text features and injected while fine-tuning the visual encoder.
Everything below that the abstract does not state is our choice (``docs/clip_family.md`` has the
table). PiNI ("Enhance Vision-Language Alignment with Noise", Huang, Zhang, Li; AAAI 2025, arXiv
2412.10817, code ``hyzhang98/PiNI``) is an earlier positive-incentive-noise method by a
*different group*; where we differ from its code, it is said below.

With ``f`` the image embedding (CLIP ``encode_image``, LoRA-adapted) and ``T`` (2 × 768) the
frozen text embeddings of the two class prompts::

    f̂ = f / ‖f‖,   T̂ = rows of T normalised
    a = CrossAttention(query = f̂, keys = values = T̂)            (nn.MultiheadAttention)
    μ = fc_mu(a),  σ = |fc_sigma(a)|,  ε = μ + σ ⊙ z,  z ~ N(0, I)
    f̃ = normalize(f̂ + ε)          (noise_on: normalized; "raw": normalize(f + ε), as PiNI)
    class logits = logit_scale · f̃ T̂ᵀ    (B × 2);   detector logit = l_fake − l_real
    loss = CE(class logits, y) + β · KL(N(μ, σ²) ‖ N(0, I))
    KL   = mean over the batch of Σ_d ½ (μ_d² + σ_d² − 1 − log σ_d²)

At inference ``inference_noise`` decides (no public source says what PiN-CLIP does at test time;
PiNI's code samples one draw): ``none`` (ε = 0, default), ``mean`` (ε = μ), or ``sample``:
``inference_samples`` draws ``z_1 … z_N`` from a generator seeded with ``inference_seed`` at every
call, shared by every image of the batch (so an image's score does not depend on its batch and is
reproducible), reduced by ``inference_reduce``: ``logit`` averages the N detector logits (an
ensemble over noise draws), ``feature`` averages the N noisy features before classifying (a
Monte-Carlo estimate of the ``mean`` forward, to which it converges as N grows). (``none`` is
not called "off": YAML reads a bare ``off`` as false.)

Our choices, each differing from PiNI's code where marked:

* **KL term** β = 1e-4 on the summed KL (PiNI: no KL term; ``beta: 0`` removes it).
* **Noise after normalising** the feature (PiNI: added to the raw feature, then normalised;
  ``noise_on: raw``), so the noise scale means the same whatever the embedding norm.
* **Cross-attention** ``nn.MultiheadAttention`` (scaled dot product, output projection), one head
  (PiNI: q/k/v Linear layers, unscaled softmax(q kᵀ), no output projection).
* **Test time** as above (PiNI samples at test time).
* **Prompts.** ``"a photo of a real image"`` / ``"a photo of a fake image"`` (index 0 real,
  1 fake), embedded once when the detector is built and kept as the persistent buffer
  ``class_text``: no text weights in checkpoints, identical reloads.
* **What fine-tunes.** LoRA (rank 6, alpha 6, scale alpha/sqrt(r), no dropout) on q, k, v of
  every vision block, plus the noise generator.
* **Initialisation.** ``fc_mu`` and ``fc_sigma`` weights N(0, 0.02²); ``fc_mu`` bias 0,
  ``fc_sigma`` bias ``sigma_init`` (0.01): the noise starts small.
* **Constants.** ``logit_scale`` = 100 (CLIP's trained value, fixed). ``log σ²`` uses ``σ``
  clamped at 1e-6 so the KL stays finite when a σ is 0 (the noise itself uses the unclamped σ).
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
    attn_heads: int = Field(1, ge=1, le=64, description="heads of the noise generator's cross-attention")
    logit_scale: float = Field(100.0, gt=0.0, description="CLIP logit scale on the cosine similarities")
    beta: float = Field(1e-4, ge=0.0, description="weight of the KL term")
    sigma_init: float = Field(0.01, ge=0.0, description="initial noise scale (bias of fc_sigma)")
    inference_noise: Literal["none", "mean", "sample"] = Field(
        "none", description="test time: no noise, the mean noise mu, or the average over inference_samples seeded draws")
    inference_samples: int = Field(16, ge=1, le=1024, description="sample: noise draws per image at test time")
    inference_seed: int = Field(0, ge=0, le=2**63 - 1, description="sample: seed of the test-time draws (the same at every call)")
    inference_reduce: Literal["logit", "feature"] = Field(
        "logit", description="sample: average the detector logits, or the noisy features before classifying")
    noise_on: Literal["normalized", "raw"] = Field(
        "normalized", description="add the noise to the unit-norm feature (ours) or to the raw embedding (PiNI)")

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
        """``f̂``, ``μ``, ``σ``, the feature the noise is added to (``base``) and the noisy feature.

        ``sample``: one draw ``ε = μ + σ z`` (training); otherwise ``ε = μ`` for ``inference_noise:
        mean`` and 0 for the others (``sample`` at test time goes through :meth:`sampled_logits`).
        """
        raw = self.image_features(pixels)
        f = F.normalize(raw, dim=-1)
        mu, sigma = self.noise(f, F.normalize(self.class_text, dim=-1))
        base = raw if self.config.noise_on == "raw" else f
        if sample:
            eps = mu + sigma * torch.randn_like(mu)
        elif self.config.inference_noise == "mean":
            eps = mu
        else:
            eps = torch.zeros_like(mu)
        return {"f": f, "mu": mu, "sigma": sigma, "base": base, "noisy": base + eps}

    def sampled_logits(self, pixels: torch.Tensor, samples: int | None = None, seed: int | None = None,
                       reduce: str | None = None) -> torch.Tensor:
        """Detector logits (B,) averaged over ``samples`` seeded noise draws (defaults from the config).

        The draws ``z_1 … z_N`` (N × D) come from a CPU generator seeded with ``seed`` and are
        shared by the whole batch, so a score depends on neither the batch nor earlier calls.
        """
        cfg: PiNCLIPConfig = self.config
        n = cfg.inference_samples if samples is None else int(samples)
        seed = cfg.inference_seed if seed is None else int(seed)
        reduce = cfg.inference_reduce if reduce is None else reduce
        if n < 1:
            raise ValueError(f"samples must be >= 1, got {n}")
        if reduce not in ("logit", "feature"):
            raise ValueError(f"reduce must be 'logit' or 'feature', got {reduce!r}")
        out = self.noisy_features(pixels, sample=False)
        mu, sigma, base = out["mu"], out["sigma"], out["base"]
        g = torch.Generator(device="cpu").manual_seed(seed)
        z = torch.randn(n, mu.shape[-1], generator=g, dtype=torch.float32).to(device=mu.device, dtype=mu.dtype)
        if reduce == "feature":
            return self._detector_logit(self._class_logits(base + mu + sigma * z.mean(0)))
        total = torch.zeros(mu.shape[0], device=mu.device, dtype=torch.float32)
        for zi in z:  # one draw at a time: memory stays that of a single forward of the head
            total += self._detector_logit(self._class_logits(base + mu + sigma * zi)).float()
        return (total / n).to(mu.dtype)

    @staticmethod
    def _detector_logit(class_logits: torch.Tensor) -> torch.Tensor:
        return class_logits[:, 1] - class_logits[:, 0]

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        mode = self.config.inference_noise
        if mode == "sample":
            return self.sampled_logits(pixels)
        if mode == "none":
            return self._detector_logit(self._class_logits(self.image_features(pixels)))
        return self._detector_logit(self._class_logits(self.noisy_features(pixels, sample=False)["noisy"]))

    def training_loss(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        out = self.noisy_features(batch["pixels"], sample=True)
        logits = self._class_logits(out["noisy"])
        ce = F.cross_entropy(logits.float(), batch["label"].long())
        kl = gaussian_kl(out["mu"], out["sigma"])
        loss = ce + self.config.beta * kl
        return {"loss": loss, "ce": ce.detach(), "kl": kl.detach(),
                "sigma_mean": out["sigma"].detach().float().mean()}
