"""Effort (Yan et al., ICML 2025): orthogonal-subspace fine-tuning of a CLIP vision tower.

Every selected Linear ``W`` of the vision tower (default: q/k/v/out projections of all blocks,
96 matrices of 1024 × 1024 on ViT-L/14) becomes ``W_main + U_res diag(S_res) V_res`` (see
:mod:`aigi.layers.svd_residual`): the top ``r = n − trainable_rank`` singular triplets are frozen,
the remaining ones are trained. The feature is the tower's ``pooler_output`` (post-layernorm CLS
token, 1024-d on ViT-L/14, *not* the 768-d projection); the head is ``Linear(D, 1)`` + BCE (UnivFD
codebase, default) or ``Linear(D, 2)`` + cross-entropy (DeepfakeBench codebase; the logit is
``l1 − l0``, so P(fake) = softmax(l)[1]).

Trainable on ViT-L/14 with the defaults: 96 × (1024 + 1 + 1024) = 196,704 residual numbers plus
the head (1,025 for ``Linear(1024, 1)``, 2,050 for ``Linear(1024, 2)``).

Losses: the released code trains with the classification loss only (the default here). The
paper's regularisers are options: ``orthogonality`` ("paper": ``‖ÛᵀÛ − I‖_F² + ‖V̂V̂ᵀ − I‖_F²``;
"released": ``½‖ÛÛᵀ − I‖_F + ½‖V̂V̂ᵀ − I‖_F``) and ``keep_singular_values``
(``| ‖Ŵ‖_F² − ‖W‖_F² |``), combined as ``loss = cls + reg_weight · mean over layers (orth + ksv)``.

Project choices: the head of the UnivFD codebase is initialised N(0, 0.02) (its trainer's
``init_gain``), the DeepfakeBench head keeps PyTorch's default init; preprocessing defaults to
Effort's translate-duplicate protocol (tile small images to 256, never resample; random crop 224
+ flip for training, centre crop 224 at test, which equals a plain centre crop for images of at
least 256 px); ``fold()`` merges every residual into a plain ``nn.Linear`` and records
``folded: true`` in the config, so a folded model can still be saved (in full) and reloaded.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn

from ..data.transforms import PreprocessConfig
from ..layers.svd_residual import (
    SVDResidualLinear,
    apply_svd_residual,
    fold_svd_residuals,
    svd_residual_modules,
)
from .base import CheckpointError, Detector, DetectorConfig
from .clip_base import ClipDetector, ClipDetectorConfig
from .registry import AIGI, FACE_FORGERY, register


def effort_preprocess() -> PreprocessConfig:
    """Effort's protocol: translate-duplicate to 256, random crop 224 + flip; CLIP normalisation."""
    return PreprocessConfig(train="translate_duplicate_random_crop", test="translate_duplicate",
                            resize_to=256, normalize="clip", flip=True)


class EffortConfig(ClipDetectorConfig):
    preprocess: PreprocessConfig = Field(default_factory=effort_preprocess)
    targets: str = Field(
        "attention",
        description="Linear layers to decompose: 'attention' (q/k/v/out of every block; official), "
        "'mlp' (fc1, fc2), 'both', or a regex matched in full against names inside the vision tower "
        "(e.g. 'encoder\\.layers\\.\\d+\\.self_attn\\.(?:q|v)_proj')",
    )
    trainable_rank: int | None = Field(1, ge=1, le=4096, description="n - r: trainable singular triplets per matrix (official: 1)")
    r: int | None = Field(None, ge=0, le=8192, description="frozen principal components per matrix; when set it wins over trainable_rank")
    head: Literal["one_logit", "two_logit"] = Field(
        "one_logit", description="one_logit: Linear(D, 1) + BCE (UnivFD codebase); "
        "two_logit: Linear(D, 2) + cross-entropy, logit = l1 - l0 (DeepfakeBench codebase)")
    orthogonality: Literal["off", "paper", "released"] = Field(
        "off", description="orthogonality regulariser: paper (squared Frobenius, on the Gram matrices) or "
        "released (the official code's non-squared form); off in the released training")
    keep_singular_values: bool = Field(False, description="add | ||W_hat||_F^2 - ||W||_F^2 | (paper); off in the released training")
    reg_weight: float = Field(1.0, ge=0.0, description="weight of mean over layers of (orth + ksv)")
    folded: bool = Field(False, description="residuals merged into dense weights (set by fold(); inference-only)")

    @field_validator("orthogonality", mode="before")
    @classmethod
    def _off(cls, v: Any) -> Any:
        # YAML reads a bare `off` as False; accept it (and None) as "off".
        return "off" if v is False or v is None else v

    @field_validator("targets")
    @classmethod
    def _check_targets(cls, v: str) -> str:
        if v not in ("attention", "mlp", "both"):
            try:
                re.compile(v)
            except re.error as err:
                raise ValueError(f"targets {v!r} is neither attention/mlp/both nor a valid regex: {err}") from None
        return v


@register("effort", task=(AIGI, FACE_FORGERY))
class Effort(ClipDetector):
    """Effort: frozen top-r SVD of CLIP ViT-L/14 attention weights, trainable residual (0.19 M)."""

    config_class: ClassVar[type[DetectorConfig]] = EffortConfig
    config: EffortConfig

    def __init__(self, config: EffortConfig, *, pretrained_backbone: bool = True, decompose: bool = True) -> None:
        """``decompose=False`` allocates the factor shapes without running the SVDs (for loading a full checkpoint)."""
        super().__init__(config, pretrained_backbone=pretrained_backbone)
        cfg = self.config
        if not cfg.folded:
            self.wrapped = apply_svd_residual(
                self.backbone.vision_model, cfg.targets, r=cfg.r, trainable_rank=cfg.trainable_rank,
                decompose=decompose, orthogonal_bases=cfg.orthogonality != "off",
                layer_cls=self.layer_class(), **self.layer_kwargs())
        else:
            self.wrapped = []
        out = 1 if cfg.head == "one_logit" else 2
        self.head = nn.Linear(self.feature_dim, out)
        if out == 1:
            nn.init.normal_(self.head.weight, 0.0, 0.02)

    # -- hooks for variants (MASM) ---------------------------------------------------------
    def layer_class(self) -> type[SVDResidualLinear]:
        return SVDResidualLinear

    def layer_kwargs(self) -> dict[str, Any]:
        return {}

    @classmethod
    def build_for_loading(cls, config: DetectorConfig, *, adapter_only: bool) -> Detector:
        # A full checkpoint overwrites every tensor: skip the pretrained download and the SVDs.
        return cls(config, pretrained_backbone=adapter_only, decompose=adapter_only)

    # -- model -------------------------------------------------------------------------------
    def svd_layers(self) -> list[tuple[str, SVDResidualLinear]]:
        """``(name, layer)`` of every SVD-residual layer (names relative to the vision tower)."""
        return list(svd_residual_modules(self.backbone.vision_model))

    def head_logits(self, pixels: torch.Tensor) -> torch.Tensor:
        """The head's raw output: (B, 1) or (B, 2)."""
        return self.head(self.pooled(pixels))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        logits = self.head_logits(pixels)
        if logits.shape[-1] == 2:
            return logits[:, 1] - logits[:, 0]
        return logits.squeeze(-1)

    # -- training ----------------------------------------------------------------------------
    def regularizers(self) -> dict[str, tuple[float, torch.Tensor]]:
        """Named ``(weight, value)`` terms added to the classification loss."""
        cfg = self.config
        layers = [m for _, m in self.svd_layers()]
        terms: dict[str, tuple[float, torch.Tensor]] = {}
        if not layers:
            return terms
        if cfg.orthogonality != "off":
            orth = torch.stack([m.orthogonality_loss(cfg.orthogonality) for m in layers]).mean()
            terms["orth"] = (cfg.reg_weight, orth)
        if cfg.keep_singular_values:
            ksv = torch.stack([m.keep_sv_loss() for m in layers]).mean()
            terms["ksv"] = (cfg.reg_weight, ksv)
        return terms

    def training_loss(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        logits = self.head_logits(batch["pixels"])
        label = batch["label"]
        if logits.shape[-1] == 2:
            name, cls_loss = "ce", F.cross_entropy(logits, label.long())
        else:
            name, cls_loss = "bce", F.binary_cross_entropy_with_logits(logits.squeeze(-1), label.to(logits.dtype))
        total = cls_loss
        parts = {name: cls_loss.detach()}
        for key, (weight, value) in self.regularizers().items():
            total = total + weight * value
            parts[key] = value.detach()
        return {"loss": total, **parts}

    # -- inference and checkpoints -----------------------------------------------------------
    def fold(self) -> None:
        """Merge every residual into its frozen weight: plain ``nn.Linear`` layers, same logits."""
        if self.svd_layers():
            fold_svd_residuals(self.backbone.vision_model)
        self.wrapped = []
        self.config.folded = True

    def adapter_keys(self) -> list[str]:
        """State-dict keys of the adapter inside the backbone: residual factors (+ variant state)."""
        keys = []
        for name, layer in svd_residual_modules(self.backbone):
            keys.extend(f"backbone.{name}.{k}" for k in layer_adapter_keys(layer))
        return keys

    def adapter_state_dict(self) -> dict[str, torch.Tensor]:
        """Residual factors, variant state and the head; the frozen backbone (W_main included) is left out."""
        if self.config.folded:
            raise CheckpointError(
                "this Effort model is folded (its residuals were merged into the backbone weights), so it "
                "has no separate adapter; save it with adapter_only=False, or save before for_inference()"
            )
        keep = set(self.adapter_keys())
        return {k: v for k, v in self.state_dict().items() if k in keep or not k.startswith(self.backbone_prefixes)}


def layer_adapter_keys(layer: SVDResidualLinear) -> tuple[str, ...]:
    """Tensors of one layer that an adapter checkpoint must carry."""
    return ("U_res", "S_res", "V_res") + tuple(getattr(layer, "adapter_buffers", ()))
