"""NS-Net (Yan et al., 2025): CLIP image features projected off the captions' semantic subspace.

No official code; this follows the paper's description and the notes in ``methods.md``.

Pipeline::

    f = CLIP encode_image(x)                      (B, 768) projected embedding, LoRA-adapted
    P = I − W_k W_kᵀ                              W_k: top-k right singular vectors of the
                                                  caption text embeddings (CLIP text tower)
    h = f P                                       semantic directions removed
    logit = fc(h)                                 Linear(768, 1)
    loss = (1 − λ) L_supcon(normalize(h), y) + λ L_bce(logit, y)

Project choices (the paper leaves these open):

* **Where P comes from.** Default ``projection="bank"``: a ring buffer of the most recent
  ``bank_size`` caption embeddings (L2-normalised) is filled from every training batch and
  ``P`` is refitted from it after each update; ``P`` is a persistent buffer, so the saved
  detector reloads with exactly the projection it was trained with and inference needs no
  text. :meth:`NSNet.fit_semantic_subspace` fills the bank from a caption list up front
  (set ``refit_during_training: false`` to keep that ``P`` fixed while training).
  ``projection="batch"`` (the per-batch variant) trains with ``P`` computed from the batch's
  own captions; the bank is still filled and gives the ``P`` used at inference.
* **k.** The exact null space of more than 768 varied captions is empty, so the top ``k``
  directions are removed (default 32, the rank a batch of 32 captions removes in the
  per-batch formulation); ``k: null`` removes the whole numerical span (exact null space).
* **What trains.** LoRA on q/k/v of every vision block with the settings of the same
  authors' DGS-Net (rank 6, alpha 6, dropout 0.8, scale alpha/sqrt(r)), plus ``fc``. A frozen
  encoder (``lora.rank: 0``) would leave the contrastive term nothing to shape.
* **Losses.** SupCon (Khosla et al., ``L_out``) on the L2-normalised projected feature (no
  separate projection head), temperature 0.07; λ = 0.5.
* **Captions.** From the batch's ``caption`` list (a manifest's ``caption`` column); images
  without one use ``caption_fallback`` ("a photo"), announced once in the ``aigi`` log.
* **Preprocessing.** Patch Selection at train and test time (224 × 224 from 49 patches of
  32 × 32, no resize), flip at train time, CLIP normalisation.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ..data.transforms import PreprocessConfig
from ..layers.captions import DEFAULT_FALLBACK, CaptionSource
from ..layers.lora import LoRAConfig
from ..layers.nullspace import SemanticNullSpace, semantic_projector
from ..layers.supcon import supcon_loss
from ._clip_family import ClipFamilyDetector
from .clip_base import ClipDetectorConfig
from .registry import AIGI, register


def patch_selection_preprocess() -> PreprocessConfig:
    """Patch Selection at train and test time, CLIP normalisation (NS-Net / DGS-Net)."""
    return PreprocessConfig(train="patch_selection", test="patch_selection", normalize="clip", size=224)


class NSNetConfig(ClipDetectorConfig):
    preprocess: PreprocessConfig = Field(default_factory=patch_selection_preprocess)
    k: int | None = Field(32, ge=0, description="semantic directions removed (top-k); null = the whole caption span")
    projection: Literal["bank", "batch"] = Field(
        "bank", description="train with P from the caption bank, or from each batch's captions (inference: bank)"
    )
    bank_size: int = Field(1024, ge=1, description="caption embeddings kept in the ring buffer P is fitted on")
    refit_during_training: bool = Field(True, description="add each batch's captions to the bank and refit P")
    lam: float = Field(0.5, ge=0.0, le=1.0, description="loss = (1 - lam) * supcon + lam * bce")
    temperature: float = Field(0.07, gt=0.0, description="SupCon temperature")
    lora: LoRAConfig = Field(default_factory=lambda: LoRAConfig(rank=6, alpha=6.0, dropout=0.8))
    caption_fallback: str = Field(DEFAULT_FALLBACK, description="prompt for images without a caption")


@register("nsnet", task=AIGI)
class NSNet(ClipFamilyDetector):
    """NS-Net: CLIP features projected off the caption (text) subspace; SupCon + BCE, LoRA."""

    config_class = NSNetConfig
    tiny_overrides: ClassVar[dict[str, Any]] = {"backbone": "tiny", "k": 2, "bank_size": 16}

    def __init__(self, config: NSNetConfig, *, pretrained_backbone: bool = True) -> None:
        super().__init__(config, pretrained_backbone=pretrained_backbone)
        cfg: NSNetConfig = self.config
        self._add_lora(cfg.lora)
        self._add_text_tower(pretrained_backbone)
        d = self.embed_dim
        self.nullspace = SemanticNullSpace(d, cfg.k, cfg.bank_size)
        self.fc = nn.Linear(d, 1)
        nn.init.normal_(self.fc.weight, 0.0, 0.02)
        nn.init.zeros_(self.fc.bias)
        self.captions = CaptionSource(self.method, cfg.caption_fallback)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.fc(self.nullspace(self.image_features(pixels))).squeeze(-1)

    @torch.no_grad()
    def fit_semantic_subspace(self, captions: list[str], batch_size: int = 256) -> torch.Tensor:
        """Fill the caption bank from ``captions`` (the newest ``bank_size`` kept) and refit ``P``."""
        if not captions:
            raise ValueError("fit_semantic_subspace needs at least one caption")
        feats = torch.cat([self.text_encoder.encode(captions[i : i + batch_size])
                           for i in range(0, len(captions), batch_size)])
        return self.nullspace.fit(feats)

    def training_loss(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        cfg: NSNetConfig = self.config
        pixels, labels = batch["pixels"], batch["label"]
        text = self.text_encoder.encode(self.captions(batch, pixels.shape[0]))
        if cfg.refit_during_training:
            self.nullspace.add(text)
            self.nullspace.refit()
        f = self.image_features(pixels)
        if cfg.projection == "batch":
            h = f @ semantic_projector(text, cfg.k).to(f.dtype)
        else:
            h = self.nullspace(f)
        logits = self.fc(h).squeeze(-1)
        bce = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
        con = supcon_loss(h, labels, cfg.temperature)
        loss = (1.0 - cfg.lam) * con + cfg.lam * bce
        return {"loss": loss, "bce": bce.detach(), "supcon": con.detach(),
                "removed_dims": torch.tensor(float(self.embed_dim) - float(torch.trace(self.nullspace.projector)))}
