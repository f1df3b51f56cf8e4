"""Shared base of the CLIP-feature family (NS-Net, DGS-Net, PiN-CLIP, CausalCLIP).

What it adds to :class:`~aigi.detectors.clip_base.ClipDetector`:

* optional LoRA adapters on the vision tower (:mod:`aigi.layers.lora`), folded by ``fold()``;
* an optional frozen CLIP text tower under the ``text_encoder.`` prefix, which is declared in
  ``backbone_prefixes`` so adapter-only checkpoints leave it out like the vision tower; it is
  built pretrained exactly when the vision tower is (``pretrained_backbone``);
* adapter-only state dicts that always carry the LoRA factors (also after
  ``for_inference()`` turned ``requires_grad`` off) and refuse a folded model, whose adaptation
  lives in the frozen backbone weights an adapter checkpoint leaves out.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from ..layers.captions import TextTower
from ..layers.lora import LoRAConfig, fold_lora, inject_lora, lora_layers
from .base import CheckpointError
from .clip_base import ClipDetector


class ClipFamilyDetector(ClipDetector):
    """Base for the CLIP-feature family (not registered itself)."""

    backbone_prefixes: ClassVar[tuple[str, ...]] = ("backbone.", "text_encoder.")

    def _add_lora(self, config: LoRAConfig) -> int:
        """LoRA on the vision tower's transformer blocks; returns the number of adapted layers."""
        self._n_lora = len(inject_lora(self.backbone.vision_model.encoder, config))
        return self._n_lora

    def _add_text_tower(self, pretrained: bool) -> TextTower:
        tower = TextTower(self.config.backbone, pretrained=pretrained)
        if tower.dim != self.embed_dim:
            raise ValueError(
                f"the text tower's embedding width {tower.dim} differs from the vision tower's {self.embed_dim}; "
                "use a CLIP checkpoint whose towers share a projection space"
            )
        self.text_encoder = tower
        return tower

    @property
    def has_lora(self) -> bool:
        return getattr(self, "_n_lora", 0) > 0

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """CLIP's ``encode_image`` (B, projection_dim); without gradients when the tower is frozen."""
        if self.has_lora:
            return self.embeds(pixels)
        with torch.no_grad():
            return self.embeds(pixels)

    def fold(self) -> None:
        fold_lora(self.backbone)

    def adapter_state_dict(self) -> dict[str, torch.Tensor]:
        layers = lora_layers(self.backbone)
        if any(bool(layer.merged) for layer in layers):
            raise CheckpointError(
                f"{self.method}: LoRA is folded into the backbone weights (for_inference()), which an "
                "adapter-only checkpoint leaves out; save before folding or save a full checkpoint"
            )
        state = super().adapter_state_dict()
        full = self.state_dict()
        for k in full:
            if k.endswith((".lora_A", ".lora_B")):
                state[k] = full[k]
        return state
