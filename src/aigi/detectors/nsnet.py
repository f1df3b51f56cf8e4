"""NS-Net (Yan et al., 2025): CLIP image features projected off the captions' semantic subspace.

No official code; this follows the paper's description and the notes in ``methods.md``.

Pipeline::

    f = CLIP encode_image(x)                      (B, 768) projected embedding, LoRA-adapted
    P = I − W_k W_kᵀ                              W_k: top-k right singular vectors of the
                                                  caption text embeddings (CLIP text tower)
    h = f P                                       semantic directions removed
    logit = fc(h)                                 Linear(768, 1)
    loss = (1 − λ) L_supcon(normalize(h), y) + λ L_bce(logit, y)

Where P comes from (``projection``):

* ``"fitted"`` (default, the paper's form): ``P`` projects onto the null space of *all* training
  caption features, fitted once before training and stored in the checkpoint as the buffer
  ``nullspace.projector``. ``aigi train`` calls :meth:`NSNet.prepare_training` with the training
  samples (only their captions are read: no image is decoded; each distinct caption is encoded
  once, on the GPU when there is one); :meth:`NSNet.fit_null_space` does the same from a list. "Near-zero singular directions" becomes a number through
  ``null_energy`` (our choice, default 1e-3): the kept directions hold at most that share of the
  captions' energy (see :mod:`aigi.layers.nullspace`). A model trained without either call fits
  on its first batch's captions and says so in the log.

The two variants below are project choices (the paper leaves these open):

* ``"bank"``: a ring buffer of the most recent
  ``bank_size`` caption embeddings (L2-normalised) is filled from every training batch and
  ``P`` is refitted from it after each update; ``P`` is a persistent buffer, so the saved
  detector reloads with exactly the projection it was trained with and inference needs no
  text. :meth:`NSNet.fit_semantic_subspace` fills the bank from a caption list up front
  (set ``refit_during_training: false`` to keep that ``P`` fixed while training).
  ``projection="batch"`` (the per-batch variant) trains with ``P`` computed from the batch's
  own captions; the bank is still filled and gives the ``P`` used at inference.
* **k** (variants only). The exact null space of more than 768 varied captions is empty, so the top ``k``
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

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ..data.transforms import PreprocessConfig
from ..layers.captions import DEFAULT_FALLBACK, CaptionSource
from ..layers.lora import LoRAConfig
from ..layers.nullspace import SemanticNullSpace, caption_gram, semantic_projector
from ..layers.supcon import supcon_loss
from ._clip_family import ClipFamilyDetector
from .clip_base import ClipDetectorConfig
from .registry import AIGI, register

log = logging.getLogger("aigi")


def patch_selection_preprocess() -> PreprocessConfig:
    """Patch Selection at train and test time, CLIP normalisation (NS-Net / DGS-Net)."""
    return PreprocessConfig(train="patch_selection", test="patch_selection", normalize="clip", size=224)


class NSNetConfig(ClipDetectorConfig):
    preprocess: PreprocessConfig = Field(default_factory=patch_selection_preprocess)
    k: int | None = Field(32, ge=0, le=4096, description="semantic directions removed (top-k); null = the whole caption span")
    projection: Literal["fitted", "bank", "batch"] = Field(
        "fitted", description="fitted: null space of all training captions, fitted once (paper); bank: top-k "
        "removal refitted from a caption ring buffer; batch: top-k of each batch's captions (inference: bank)"
    )
    null_energy: float = Field(1e-3, ge=0.0, lt=1.0, description="fitted: largest share of the captions' energy "
                               "the kept (near-null) directions may hold")
    bank_size: int = Field(1024, ge=1, le=1_000_000, description="caption embeddings kept in the ring buffer P is fitted on")
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
    def fit_null_space(self, captions: Iterable[str | None], batch_size: int = 256,
                       device: str | torch.device | None = None) -> int:
        """The paper's form: ``P`` onto the null space of every caption in ``captions``; returns its dimension.

        Each distinct caption is encoded once (on ``device`` if given, e.g. a GPU before training
        has moved the model there) and weighted by how often it occurs; only the Gram matrix
        (D × D) is kept, so any number fits in memory. ``None`` or empty entries get
        ``caption_fallback``, as in training.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        fallback = self.config.caption_fallback
        counts = Counter(c if isinstance(c, str) and c.strip() else fallback for c in captions)
        if not counts:
            raise ValueError("fit_null_space needs at least one caption")
        texts = sorted(counts)  # a fixed order: the same Gram matrix (to the last bit) on every process
        home = next(self.text_encoder.parameters()).device
        if device is not None:
            self.text_encoder.to(device)
        try:
            gram = None
            for i in range(0, len(texts), batch_size):
                chunk = texts[i : i + batch_size]
                w = torch.tensor([counts[t] for t in chunk], dtype=torch.float64)
                gram = caption_gram(self.text_encoder.encode(chunk).cpu(), gram, w)
        finally:
            self.text_encoder.to(home)
        self.nullspace.fit_null_space(gram, self.config.null_energy)
        log.info("nsnet: null space fitted on %d training captions (%d distinct): %d of %d dimensions kept",
                 sum(counts.values()), len(texts), self.nullspace.null_dims, self.embed_dim)
        return self.nullspace.null_dims

    def prepare_training(self, samples: Sequence[Any]) -> None:
        """Called by the trainer before the first step: fit the null space on the training captions (fitted mode)."""
        if self.config.projection == "fitted" and not self.nullspace.fitted_once:
            device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else None
            self.fit_null_space((getattr(s, "caption", None) for s in samples), device=device)

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
        captions = self.captions(batch, pixels.shape[0])
        text = self.text_encoder.encode(captions)
        if cfg.projection == "fitted":
            if not self.nullspace.fitted_once:
                log.warning("nsnet: projection 'fitted' but the null space was not fitted on the training captions "
                            "(prepare_training / fit_null_space); fitting it on this batch's %d captions", len(captions))
                self.nullspace.fit_null_space(caption_gram(text), cfg.null_energy)
        elif cfg.refit_during_training:
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
