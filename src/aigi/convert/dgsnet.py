"""Import official DGS-Net checkpoints (HorizonTEL/DGS-Net) into detector folders.

The official stage-2 wrapper (``models/clip_models.py``, ``CLIPModel``) is saved as a bare
``state_dict`` (``test.py`` loads it with ``strict=True``). Its keys, from the released code:

* ``clip_model.*`` — an OpenAI-CLIP model (``clip.load``): the vision tower under ``visual.``
  (``conv1``, ``class_embedding``, ``positional_embedding``, ``ln_pre``,
  ``transformer.resblocks.N.{ln_1, attn, ln_2, mlp.c_fc, mlp.c_proj}``, ``ln_post``, ``proj``)
  and the text tower (``token_embedding``, ``positional_embedding``, ``transformer.resblocks.N``,
  ``ln_final``, ``text_projection``, ``logit_scale``). In the vision blocks CLIP-LoRA's
  ``PlainMultiheadAttentionLoRA`` replaced ``attn``: ``attn.{q,k,v}_proj.{weight, bias,
  w_lora_A, w_lora_B}`` and ``attn.proj.{weight, bias}`` (the output projection); the text
  blocks keep ``nn.MultiheadAttention``'s ``in_proj_weight``/``in_proj_bias``/``out_proj``.
* ``clip_model_frozen.clip_model_frozen.*`` — a second, frozen OpenAI CLIP (the teacher), and
  ``clip_model_frozen.img_frozen_fc.{weight,bias}`` — its stage-1 head;
* ``img_fc``, ``text_fc`` — Linear(768, 1) heads on the student's image and text embeddings.

Mapping: OpenAI names onto Hugging Face ``CLIPVisionModelWithProjection`` /
``CLIPTextModelWithProjection`` names (``in_proj`` split into q, k, v; ``proj`` and
``text_projection`` transposed into the projection Linears), ``w_lora_A``/``w_lora_B`` onto our
``lora_A``/``lora_B``, the three heads onto ``img_fc``, ``text_fc`` and ``img_frozen_fc``.

What is dropped, and why: the teacher's CLIP copy (``clip_model_frozen.clip_model_frozen.*``):
in ``aigi`` the teacher is the student's own tower with LoRA switched off, and inference never
uses it; the converter compares its vision weights with the student's frozen ones and records
the largest difference (0 for checkpoints trained as released). ``logit_scale`` (unused).

The LoRA rank is read from the factors; alpha is not stored in the file and defaults to the
official 6 (``--lora-alpha``); the scale is CLIP-LoRA's ``alpha / sqrt(r)``. The official
LinearLoRA merges its factors into ``weight`` in eval mode; the trainer saves in train mode, so
``weight`` is the frozen CLIP weight and the factors are separate (assumed here and recorded).
The test preprocessing written into the folder is ``dgsnet-patch-selection`` (ImageNet
statistics, the code's entropy rule, seeded test-time shuffle) unless ``preset`` names another.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from ..backbones.clip import DEFAULT_CLIP, PRESETS as CLIP_PRESETS, ClipBackboneConfig
from ..data.transforms import preset as get_preset
from ..detectors.base import CheckpointError
from ..detectors.dgsnet import DGSNet, DGSNetConfig
from ..layers.lora import LoRAConfig
from .baselines import _finish, _prepare_output, _short, _with_threshold, load_checkpoint, unwrap_state_dict

__all__ = ["convert_dgsnet", "map_official_state"]

DEFAULT_PRESET = "dgsnet-patch-selection"
_KNOWN = {DEFAULT_CLIP: CLIP_PRESETS["clip-vit-large-patch14-random"]}
_BLOCK = re.compile(r"transformer\.resblocks\.(\d+)\.(.+)")
_COMMON = {"ln_1.weight": "layer_norm1.weight", "ln_1.bias": "layer_norm1.bias",
           "ln_2.weight": "layer_norm2.weight", "ln_2.bias": "layer_norm2.bias",
           "mlp.c_fc.weight": "mlp.fc1.weight", "mlp.c_fc.bias": "mlp.fc1.bias",
           "mlp.c_proj.weight": "mlp.fc2.weight", "mlp.c_proj.bias": "mlp.fc2.bias",
           "attn.out_proj.weight": "self_attn.out_proj.weight", "attn.out_proj.bias": "self_attn.out_proj.bias",
           "attn.proj.weight": "self_attn.out_proj.weight", "attn.proj.bias": "self_attn.out_proj.bias"}
_LORA = {"weight": "weight", "bias": "bias", "w_lora_A": "lora_A", "w_lora_B": "lora_B"}


def _block(rest: str, dst: str, out: dict[str, torch.Tensor], value: torch.Tensor, *, lora_ok: bool) -> bool:
    """Map one ``transformer.resblocks.N.*`` tensor; False when the name is unknown."""
    m = _BLOCK.fullmatch(rest)
    if not m:
        return False
    n, leaf = m.groups()
    layer = f"{dst}encoder.layers.{n}."
    if leaf in _COMMON:
        out[layer + _COMMON[leaf]] = value
        return True
    if leaf in ("attn.in_proj_weight", "attn.in_proj_bias"):
        kind = "weight" if leaf.endswith("weight") else "bias"
        for name, part in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0)):
            out[f"{layer}self_attn.{name}.{kind}"] = part.contiguous()
        return True
    lm = re.fullmatch(r"attn\.([qkv])_proj\.(weight|bias|w_lora_A|w_lora_B)", leaf)
    if lm and (lora_ok or lm.group(2) in ("weight", "bias")):
        out[f"{layer}self_attn.{lm.group(1)}_proj.{_LORA[lm.group(2)]}"] = value
        return True
    return False


def map_official_state(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, Any], list[str]]:
    """``(our state, facts, notes)`` from the official wrapper's state dict.

    ``facts`` holds the LoRA rank and the teacher-difference measurement. Unknown keys raise a
    ``CheckpointError`` that lists them.
    """
    if not any(k.startswith("clip_model.visual.") for k in state) or "img_fc.weight" not in state:
        raise CheckpointError(
            "not an official DGS-Net checkpoint: expected 'clip_model.visual.*' and 'img_fc.*' keys "
            f"(the stage-2 CLIPModel wrapper), found {_short(sorted(state), 8)}"
        )
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    teacher: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    vis, txt = "backbone.vision_model.", "text_encoder.model.text_model."
    for key, value in state.items():
        if key.startswith("clip_model.visual."):
            rest = key[len("clip_model.visual."):]
            simple = {"conv1.weight": "embeddings.patch_embedding.weight",
                      "class_embedding": "embeddings.class_embedding",
                      "positional_embedding": "embeddings.position_embedding.weight",
                      "ln_pre.weight": "pre_layrnorm.weight", "ln_pre.bias": "pre_layrnorm.bias",
                      "ln_post.weight": "post_layernorm.weight", "ln_post.bias": "post_layernorm.bias"}
            if rest in simple:
                out[vis + simple[rest]] = value
            elif rest == "proj":
                out["backbone.visual_projection.weight"] = value.t().contiguous()
            elif not _block(rest, vis, out, value, lora_ok=True):
                unknown.append(key)
        elif key.startswith("clip_model."):
            rest = key[len("clip_model."):]
            simple = {"token_embedding.weight": "embeddings.token_embedding.weight",
                      "positional_embedding": "embeddings.position_embedding.weight",
                      "ln_final.weight": "final_layer_norm.weight", "ln_final.bias": "final_layer_norm.bias"}
            if rest in simple:
                out[txt + simple[rest]] = value
            elif rest == "text_projection":
                out["text_encoder.model.text_projection.weight"] = value.t().contiguous()
            elif rest in ("logit_scale", "input_resolution", "context_length", "vocab_size"):
                dropped.append(key)
            elif not _block(rest, txt, out, value, lora_ok=False):
                unknown.append(key)
        elif key.startswith("clip_model_frozen.clip_model_frozen."):
            teacher[key[len("clip_model_frozen.clip_model_frozen."):]] = value
        elif key in ("clip_model_frozen.img_frozen_fc.weight", "clip_model_frozen.img_frozen_fc.bias"):
            out["img_frozen_fc." + key.rsplit(".", 1)[1]] = value
        elif key in ("img_fc.weight", "img_fc.bias", "text_fc.weight", "text_fc.bias"):
            out[key] = value
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(f"unexpected keys in the DGS-Net checkpoint: {_short(sorted(unknown))}")
    ranks = sorted({int(v.shape[0]) for k, v in out.items() if k.endswith(".lora_A")})
    if len(ranks) != 1:
        raise CheckpointError(
            "the DGS-Net checkpoint has " + ("no LoRA factors (w_lora_A) in its vision tower" if not ranks
                                             else f"LoRA factors of several ranks {ranks}") + "; expected one rank")
    notes = [f"student: OpenAI-CLIP names mapped onto Hugging Face CLIP; LoRA rank {ranks[0]} on q, k, v"]
    # the teacher copy: compare its vision tower with the student's frozen weights, then drop it
    diff = 0.0
    compared = 0
    for key, value in state.items():
        if not key.startswith("clip_model.visual.") or "lora" in key:
            continue
        rest = key[len("clip_model."):]  # "visual.…", as in the teacher's copy
        base = re.sub(r"attn\.([qkv])_proj\.(weight|bias)$", "attn.in_proj_\\2", rest)
        other = teacher.get(rest)
        if other is None and base != rest and base in teacher:
            idx = "qkv".index(re.search(r"attn\.([qkv])_proj", rest).group(1))
            other = teacher[base].chunk(3, dim=0)[idx]
        if other is None and ".attn.proj." in rest:
            other = teacher.get(rest.replace(".attn.proj.", ".attn.out_proj."))
        if other is not None and tuple(other.shape) == tuple(value.shape):
            diff = max(diff, float((other.float() - value.float()).abs().max()))
            compared += 1
    if teacher:
        notes.append(f"dropped the teacher's CLIP copy clip_model_frozen.clip_model_frozen.* ({len(teacher)} tensors): "
                     f"the teacher is the student's tower with LoRA off; largest difference from the student's "
                     f"frozen vision weights over {compared} tensors: {diff:.3g}")
    if dropped:
        notes.append(f"dropped {', '.join(sorted(dropped))} (unused)")
    return out, {"lora_rank": ranks[0], "teacher_max_abs_diff": diff if teacher else None}, notes


def convert_dgsnet(
    checkpoint: str | os.PathLike,
    output: str | os.PathLike,
    *,
    backbone: str = DEFAULT_CLIP,
    lora_alpha: float = 6.0,
    preset: str | None = None,
    threshold: float | None = None,
    overwrite: bool = False,
) -> Path:
    """An official DGS-Net stage-2 checkpoint → a full detector folder at ``output``.

    ``backbone`` names the CLIP architecture the checkpoint was trained on (a hub id known
    here, a preset, or a local folder / hub id whose config is read); its weights are not
    downloaded: they all come from the checkpoint. Returns ``output``.
    """
    checkpoint, output = Path(checkpoint), Path(output)
    _prepare_output(output, overwrite)
    raw, notes = unwrap_state_dict(load_checkpoint(checkpoint), checkpoint, containers=("model", "state_dict"))
    mapped, facts, more = map_official_state(raw)
    notes += more
    vision, text = _KNOWN.get(backbone, (None, None))
    spec = ClipBackboneConfig(source=backbone, vision=vision, text=text)
    preset_name = preset or DEFAULT_PRESET
    overrides: dict[str, Any] = {
        "backbone": spec.model_dump(), "stage": 2, "preprocess": get_preset(preset_name).model_dump(),
        "lora": LoRAConfig(rank=facts["lora_rank"], alpha=lora_alpha, dropout=0.8).model_dump(),
    }
    config = DGSNetConfig.model_validate(_with_threshold(overrides, threshold))
    detector = DGSNet(config, pretrained_backbone=False, load_teacher=False)
    own = detector.state_dict()
    optional = {k for k in own if k.endswith(".merged")}
    missing = sorted(set(own) - set(mapped) - optional)
    extra = sorted(set(mapped) - set(own))
    if missing or extra:
        raise CheckpointError(
            f"{checkpoint} does not match DGS-Net on {backbone!r} (LoRA rank {facts['lora_rank']} on q, k, v of every "
            f"vision block): missing keys {_short(missing)}; unexpected keys {_short(extra)}"
        )
    bad = [k for k, v in mapped.items() if tuple(v.shape) != tuple(own[k].shape)]
    if bad:
        raise CheckpointError(
            f"{checkpoint}: tensor shapes do not match the architecture of {backbone!r}: "
            + ", ".join(f"{k} {tuple(mapped[k].shape)} vs {tuple(own[k].shape)}" for k in bad[:8])
        )
    detector.load_state_dict({k: (mapped[k].to(own[k].dtype) if k in mapped else own[k]) for k in own}, strict=True)
    notes.append("assumed unmerged LoRA (the official trainer saves in train mode): weight + alpha/sqrt(r) * B A")
    notes.append(f"test preprocessing: preset {preset_name!r}")
    return _finish(detector, output, checkpoint, "dgsnet-official", notes,
                   extra={"backbone": backbone, "preset": preset_name, "lora_alpha": lora_alpha, **facts})
