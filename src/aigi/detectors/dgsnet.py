"""DGS-Net (Yan et al., 2025/26): distillation-guided gradient surgery for CLIP fine-tuning.

Follows the official code (HorizonTEL/DGS-Net, ``networks/trainer.py``, ``models/clip_models*.py``).
Two training stages, one registered detector (``stage`` selects):

**Stage 1** — a linear probe on frozen CLIP: ``img_frozen_fc`` = Linear(768, 1) on
``encode_image`` (the 768-d projected embedding), BCE. Its run folder is the teacher head.

**Stage 2** — the student, with ``f`` its image embedding, ``f_T`` the teacher's and ``t`` the
caption's text embedding::

    student  f = encode_image(x) with LoRA (rank 6, alpha 6, dropout 0.8) on q, k, v of every
             vision block;  img logit = img_fc(f)                          Linear(768, 1)
    teacher  f_T = encode_image(x) of the same tower with LoRA off, no grad;
             L_T = BCE(img_frozen_fc(f_T), y)      (frozen head loaded from stage 1)
    text     t = frozen CLIP text tower(caption);  L_text = BCE(text_fc(t), y)
    g_T   = ∂L_T/∂f_T (detached),   g_help = min(g_T, 0),   L_help = mean_i <f_i, g_help_i>
    g_txt = ∂L_text/∂t,   h = relu(g_txt) / (‖relu(g_txt)‖ + 1e-6)     (per sample)
    hook on f:  grad ← grad − <grad, h> h        (the harmful direction is cut out)
    loss  = L_img + L_text + 0.2 · L_help

Inference uses the student only: ``img_fc(f)``; ``for_inference()`` folds LoRA into the weights.

Project choices and where they differ from the official code:

* **Teacher without a second CLIP.** The official code loads a second full CLIP as the
  teacher. Here the teacher *is* the student's backbone run with every LoRA branch switched
  off (:func:`aigi.layers.lora.lora_disabled`) under ``torch.no_grad()``: the same frozen
  weights, so the same features, without holding ViT-L twice.
* **Stage-2 teacher head.** ``teacher_head`` names the stage-1 run folder (a path; relative
  paths are resolved against the current directory when the detector is built, and the
  resolved path is written back into the config). ``img_frozen_fc`` is read from it and saved
  with the stage-2 detector, so loading a trained stage-2 detector never needs the stage-1
  folder. The folder must hold a stage-1 ``dgsnet`` trained on the same CLIP weights
  (checked via ``backbone.weights_sha256``) and normalisation. Building stage 2 with
  ``teacher_head: null`` leaves the teacher head at its random initialisation and logs a
  warning (that is only useful for tests).
* **Test preprocessing** (preset ``dgsnet-patch-selection``, the default): the official
  datasets normalise with ImageNet statistics although the backbone is CLIP, rank patches
  with the code's own entropy formula, and shuffle the selected patches at test time too
  (from Python's global ``random``, so the official score of an image depends on the loader's
  history). Here the test shuffle is seeded by ``preprocess.patch_seed`` and the image's
  pixels: the same image always gets the same arrangement and score. Official checkpoints
  need these settings (``aigi convert dgsnet`` writes them); a recipe may choose
  ``preprocess.normalize: clip`` for models trained here, in both stages.
* **LoRA scale.** ``alpha / sqrt(r)`` as in the CLIP-LoRA ``loralib`` the official code
  derives from (its ``loralib/utils.py`` is CLIP-LoRA's); ``lora.scaling: alpha/r`` is the
  classic choice.
* **Heads.** nn.Linear's default initialisation, as the official code (no custom init).
* **Captions.** From the batch's ``caption`` list (the official code reads a JSON keyed by
  image path; the captioner is not named). Images without one use ``caption_fallback``
  ("a photo"), announced once in the ``aigi`` log.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from safetensors import safe_open
from torch import nn

from ..data.transforms import PreprocessConfig, preset
from ..layers.captions import DEFAULT_FALLBACK, CaptionSource
from ..layers.lora import LoRAConfig, lora_disabled
from ._clip_family import ClipFamilyDetector
from .base import WEIGHTS_NAME, CheckpointError, DetectorConfig, read_config
from .clip_base import ClipDetectorConfig
from .registry import AIGI, register

log = logging.getLogger("aigi")

HEAD = "img_frozen_fc"


class DGSNetConfig(ClipDetectorConfig):
    preprocess: PreprocessConfig = Field(default_factory=lambda: preset("dgsnet-patch-selection"))
    stage: Literal[1, 2] = Field(2, description="1: linear probe on frozen CLIP (teacher head); 2: the student")
    teacher_head: str | None = Field(
        None, description="stage 2: the stage-1 run folder to read img_frozen_fc from (relative to the current directory)"
    )
    lora: LoRAConfig = Field(default_factory=lambda: LoRAConfig(rank=6, alpha=6.0, dropout=0.8))
    help_weight: float = Field(0.2, ge=0.0, description="weight of the beneficial-direction term L_help")
    caption_fallback: str = Field(DEFAULT_FALLBACK, description="prompt for images without a caption")


def project_off(grad: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """``grad − <grad, h> h`` row by row (``h`` is not renormalised)."""
    h = direction.to(grad.dtype)
    return grad - (grad * h).sum(-1, keepdim=True) * h


def harmful_direction(g_text: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``relu(g) / (‖relu(g)‖ + eps)`` per row."""
    r = torch.relu(g_text)
    return r / (r.norm(dim=-1, keepdim=True) + eps)


@register("dgsnet", task=AIGI)
class DGSNet(ClipFamilyDetector):
    """DGS-Net: LoRA CLIP student, frozen teacher distillation + text-gradient surgery (2 stages)."""

    config_class = DGSNetConfig

    def __init__(self, config: DGSNetConfig, *, pretrained_backbone: bool = True, load_teacher: bool = True) -> None:
        super().__init__(config, pretrained_backbone=pretrained_backbone)
        cfg: DGSNetConfig = self.config
        d = self.embed_dim
        self.img_frozen_fc = nn.Linear(d, 1)
        if cfg.stage == 1:
            if cfg.teacher_head is not None:
                raise ValueError("dgsnet stage 1 trains the teacher head; teacher_head is a stage-2 setting")
            return
        self._add_lora(cfg.lora)
        self._add_text_tower(pretrained_backbone)
        self.img_fc = nn.Linear(d, 1)
        self.text_fc = nn.Linear(d, 1)
        self.img_frozen_fc.requires_grad_(False)
        self.captions = CaptionSource(self.method, cfg.caption_fallback)
        if load_teacher:
            if cfg.teacher_head is None:
                log.warning("dgsnet stage 2 built without teacher_head: the teacher head is untrained, so the "
                            "distillation term is meaningless; set teacher_head to the stage-1 run folder")
            else:
                self.load_teacher_head(cfg.teacher_head)

    @classmethod
    def build_for_loading(cls, config: DetectorConfig, *, adapter_only: bool) -> "DGSNet":
        # the saved state dict already holds img_frozen_fc: never re-read the stage-1 folder
        return cls(config, pretrained_backbone=adapter_only, load_teacher=False)

    # -- stage-1 head --------------------------------------------------------------
    def load_teacher_head(self, folder: str | os.PathLike) -> Path:
        """Copy ``img_frozen_fc`` from a stage-1 run folder; clear errors when it is not one."""
        path = Path(folder).expanduser().resolve()
        if not path.is_dir():
            raise CheckpointError(f"dgsnet teacher_head {folder!r} ({path}) is not a folder; train stage 1 first "
                                  "(configs/dgsnet_stage1.yaml) and pass its run folder")
        meta = read_config(path)
        if meta.get("method") != "dgsnet" or meta.get("stage") != 1:
            raise CheckpointError(
                f"dgsnet teacher_head {path} is not a stage-1 DGS-Net run (method={meta.get('method')!r}, "
                f"stage={meta.get('stage')!r}); point it at the output folder of configs/dgsnet_stage1.yaml"
            )
        mine, theirs = self.config.backbone.weights_sha256, (meta.get("backbone") or {}).get("weights_sha256")
        if mine and theirs and mine != theirs:
            raise CheckpointError(
                f"the stage-1 head in {path} was trained on other CLIP weights (sha256 {theirs[:12]}…) than this "
                f"student's backbone ({mine[:12]}…); train both stages on the same backbone.source"
            )
        norm = (meta.get("preprocess") or {}).get("normalize")
        if norm is not None and norm != self.config.preprocess.normalize:
            raise CheckpointError(
                f"the stage-1 head in {path} was trained with {norm!r} normalisation but this detector uses "
                f"{self.config.preprocess.normalize!r}; set preprocess.normalize the same in both stages"
            )
        weights = path / WEIGHTS_NAME
        if not weights.is_file():
            raise CheckpointError(f"{path} has no {WEIGHTS_NAME}")
        with safe_open(str(weights), framework="pt") as fh:
            keys = set(fh.keys())
            wanted = {f"{HEAD}.weight", f"{HEAD}.bias"}
            if not wanted <= keys:
                raise CheckpointError(f"{weights} lacks {sorted(wanted - keys)}")
            state = {k.split(".", 1)[1]: fh.get_tensor(k) for k in wanted}
        if tuple(state["weight"].shape) != tuple(self.img_frozen_fc.weight.shape):
            raise CheckpointError(
                f"the stage-1 head in {path} has shape {tuple(state['weight'].shape)}, this student needs "
                f"{tuple(self.img_frozen_fc.weight.shape)} (different CLIP architecture)"
            )
        self.img_frozen_fc.load_state_dict(state)
        self.config.teacher_head = str(path)
        return path

    # -- the interface -------------------------------------------------------------
    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.config.stage == 1:
            with torch.no_grad():
                f = self.embeds(pixels)
            return self.img_frozen_fc(f).squeeze(-1)
        return self.img_fc(self.embeds(pixels)).squeeze(-1)

    def training_loss(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        if self.config.stage == 1:
            return super().training_loss(batch)
        pixels = batch["pixels"]
        y = batch["label"].float()
        # student
        f = self.embeds(pixels)
        img_logits = self.img_fc(f).squeeze(-1)
        l_img = F.binary_cross_entropy_with_logits(img_logits, y.to(img_logits.dtype))
        # teacher: the same tower with LoRA off, frozen head from stage 1
        with torch.no_grad(), lora_disabled(self.backbone):
            f_t = self.embeds(pixels)
        f_t = f_t.detach().requires_grad_(True)
        with torch.enable_grad():
            l_teacher = F.binary_cross_entropy_with_logits(self.img_frozen_fc(f_t).squeeze(-1), y.to(f_t.dtype))
            g_t = torch.autograd.grad(l_teacher, f_t)[0].detach()
        # text branch on the captions
        t = self.text_encoder.encode(self.captions(batch, pixels.shape[0])).detach().requires_grad_(True)
        with torch.enable_grad():
            text_logits = self.text_fc(t).squeeze(-1)
            l_text = F.binary_cross_entropy_with_logits(text_logits, y.to(text_logits.dtype))
            g_text = torch.autograd.grad(l_text, t, retain_graph=True)[0].detach()
        # beneficial direction (distillation) and harmful direction (surgery)
        g_help = torch.clamp(g_t, max=0.0)
        l_help = (f * g_help.to(f.dtype)).sum(-1).mean()
        h = harmful_direction(g_text)
        if f.requires_grad:
            f.register_hook(lambda grad: project_off(grad, h))
        loss = l_img + l_text + self.config.help_weight * l_help
        return {"loss": loss, "l_img": l_img.detach(), "l_text": l_text.detach(), "l_help": l_help.detach(),
                "l_teacher": l_teacher.detach()}
