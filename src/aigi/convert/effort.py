"""Import the official Effort checkpoints (YuZhang-SMU / YZY-stack Effort-AIGI-Detection).

Two layouts were released; both are read with ``torch.load(weights_only=True)``:

* **DeepfakeBench** (face and GenImage/Chameleon checkpoints): the detector's ``state_dict`` —
  ``backbone.*`` is the HF ``CLIPVisionTransformer`` (``CLIPModel.vision_model``) and
  ``head.{weight,bias}`` a ``Linear(1024, 2)``; saved from ``DataParallel`` so every key may start
  with ``module.``.
* **UnivFD** (ProGAN checkpoints): ``{"model": state_dict, ...}`` of a ``ClipModel`` whose
  ``model`` is the whole HF ``CLIPModel`` (``model.vision_model.*``, plus the text tower, which is
  dropped) and ``fc.{weight,bias}`` a ``Linear(1024, 1)``.

Inside the vision tower each decomposed Linear has the official attribute names
``weight_main`` (frozen), ``bias``, ``U_residual``, ``S_residual``, ``V_residual`` and, in the
DeepfakeBench code, the frozen factors ``U_r``, ``S_r``, ``V_r`` (dropped: ``weight_main`` already
holds their product). Old transformers versions also saved ``embeddings.position_ids`` (dropped).
Every other key must map onto the detector; unknown and missing keys are an error that lists them.

The result is a *full* detector folder (the official files hold the whole backbone, so nothing
needs downloading to use it). Which layers were decomposed and their rank are read from the
checkpoint; the head type from the head's shape. The DeepfakeBench layout has no
``visual_projection`` (Effort does not use it); it keeps the architecture's seeded initialisation.
``keep_singular_values`` cannot be used to fine-tune an imported model further: the original
weight norms are not in the files.

Test preprocessing follows the codebase the layout comes from: DeepfakeBench checkpoints get the
preset ``deepfakebench-resize224`` (the official ``training/demo.py`` resizes the whole image to
224 x 224, CLIP statistics), UnivFD-codebase checkpoints ``effort-translate-duplicate`` (tile
to 256, centre crop 224). ``preset=`` picks another; the choice is returned in the notes and
written to ``conversion.json``.

The command line ``aigi convert effort-official CKPT OUT_DIR [--backbone ID_OR_DIR] [--preset NAME]``
calls :func:`convert_effort_official`.
"""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from ..backbones.clip import DEFAULT_CLIP, PRESETS, ClipBackboneConfig
from ..data.transforms import preset as get_preset
from ..detectors.base import CONFIG_NAME, CheckpointError
from ..detectors.effort import Effort, EffortConfig
from ..layers.svd_residual import ATTENTION_PATTERN, MLP_PATTERN
from .baselines import CONVERSION_NAME, _sha256

__all__ = ["convert_effort_official", "read_official_state"]

#: architectures known without a download (the official checkpoints are all CLIP ViT-L/14)
_KNOWN_VISION = {DEFAULT_CLIP: PRESETS["clip-vit-large-patch14-random"][0]}

_RENAME = {"weight_main": "weight_main", "U_residual": "U_res", "S_residual": "S_res", "V_residual": "V_res"}
_DROP_SUFFIXES = (".U_r", ".S_r", ".V_r")


def read_official_state(checkpoint: Path) -> dict[str, torch.Tensor]:
    """The tensors of an official checkpoint: wrappers (``model``/``state_dict``) and ``module.`` removed."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint {checkpoint} not found")
    try:
        raw = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as err:
        raise CheckpointError(f"{checkpoint} is not a readable PyTorch checkpoint: {err}") from None
    state = raw
    for wrapper in ("model", "state_dict", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict) and not _is_state(state):
            state = state[wrapper]
    if not isinstance(state, dict) or not _is_state(state):
        keys = list(raw)[:8] if isinstance(raw, dict) else type(raw).__name__
        raise CheckpointError(f"{checkpoint} holds no state dict of tensors (top level: {keys})")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}


def _short(keys: list[str], n: int = 12) -> str:
    more = f" … and {len(keys) - n} more" if len(keys) > n else ""
    return "[" + ", ".join(keys[:n]) + "]" + more


def _is_state(d: dict[Any, Any]) -> bool:
    return bool(d) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in d.items())


def _layout(state: dict[str, torch.Tensor]) -> tuple[str, str, str]:
    """(layout name, vision-tower prefix, head prefix)."""
    if "head.weight" in state and any(k.startswith("backbone.") for k in state):
        return "deepfakebench", "backbone.", "head."
    if "fc.weight" in state and any(k.startswith("model.vision_model.") for k in state):
        return "univfd", "model.vision_model.", "fc."
    raise CheckpointError(
        "not an official Effort checkpoint: expected `backbone.*` + `head.*` (DeepfakeBench) or "
        f"`model.vision_model.*` + `fc.*` (UnivFD) keys, found {_short(sorted(state), 8)}"
    )


def _targets(names: list[str]) -> str:
    """The ``targets`` setting that selects exactly these layer names (relative to the vision tower)."""
    att = all(re.fullmatch(ATTENTION_PATTERN, n) for n in names)
    mlp = all(re.fullmatch(MLP_PATTERN, n) for n in names)
    if att:
        return "attention"
    if mlp:
        return "mlp"
    if all(re.fullmatch(ATTENTION_PATTERN, n) or re.fullmatch(MLP_PATTERN, n) for n in names):
        return "both"
    return "|".join(re.escape(n) for n in sorted(names))


#: the official test protocol of each released layout
LAYOUT_PRESETS = {"deepfakebench": "deepfakebench-resize224", "univfd": "effort-translate-duplicate"}


def convert_effort_official(checkpoint: Path, output: Path, *, backbone: str = DEFAULT_CLIP,
                            overwrite: bool = False, preset: str | None = None) -> Path:
    """Convert an official Effort checkpoint into a self-describing detector folder at ``output``.

    ``backbone`` names the CLIP architecture the checkpoint was trained on (hub id, local folder or
    preset); only its architecture is used (the weights come from the checkpoint). An existing
    detector in ``output`` is replaced only with ``overwrite=True``. Returns ``output``.
    """
    output = Path(output)
    if (output / CONFIG_NAME).exists() and not overwrite:
        raise FileExistsError(f"{output} already holds a detector ({CONFIG_NAME}); pass overwrite=True (--force) to replace it")
    state = read_official_state(Path(checkpoint))
    layout, vprefix, hprefix = _layout(state)
    mapped: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    svd_names: dict[str, int] = {}
    for key, value in state.items():
        if key.startswith(vprefix):
            rest = key[len(vprefix):]
            if rest == "embeddings.position_ids" or rest.endswith(_DROP_SUFFIXES):
                continue
            layer, _, attr = rest.rpartition(".")
            if attr in _RENAME:
                if attr == "U_residual":
                    svd_names[layer] = int(value.shape[1])
                mapped[f"backbone.vision_model.{layer}.{_RENAME[attr]}"] = value
            else:
                mapped[f"backbone.vision_model.{rest}"] = value
        elif key.startswith(hprefix) and key[len(hprefix):] in ("weight", "bias"):
            mapped[f"head.{key[len(hprefix):]}"] = value
        elif layout == "univfd" and key == "model.visual_projection.weight":
            mapped["backbone.visual_projection.weight"] = value
        elif layout == "univfd" and (key.startswith("model.text_model.") or key in ("model.text_projection.weight", "model.logit_scale")):
            continue
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(f"unknown keys in the {layout} checkpoint: {_short(sorted(unknown))}")
    if not svd_names:
        raise CheckpointError(f"the {layout} checkpoint has no SVD-residual layers (no `U_residual` keys)")
    ranks = sorted(set(svd_names.values()))
    if len(ranks) != 1:
        raise CheckpointError(f"the checkpoint mixes residual ranks {ranks}; this importer needs one rank for all layers")
    head_out = int(mapped.get("head.weight", torch.empty(0, 0)).shape[0])
    if head_out not in (1, 2):
        raise CheckpointError(f"the head has {head_out} outputs; expected 1 (UnivFD) or 2 (DeepfakeBench)")

    spec = ClipBackboneConfig(source=backbone, vision=_KNOWN_VISION.get(backbone))
    preset_name = preset or LAYOUT_PRESETS[layout]
    config = EffortConfig(backbone=spec, targets=_targets(list(svd_names)), trainable_rank=ranks[0],
                          head="one_logit" if head_out == 1 else "two_logit", preprocess=get_preset(preset_name))
    model = Effort(config, pretrained_backbone=False, decompose=False)
    own = model.state_dict()
    # Tensors the official files do not carry and Effort does not need for its logits.
    optional = {k for k in own if k.endswith(".residual_energy")}
    if layout == "deepfakebench":
        optional.add("backbone.visual_projection.weight")
    missing = sorted(set(own) - set(mapped) - optional)
    extra = sorted(set(mapped) - set(own))
    if missing or extra:
        raise CheckpointError(
            f"the {layout} checkpoint does not match Effort on {backbone!r} (targets={config.targets!r}, "
            f"rank {ranks[0]}): missing keys {_short(missing)}; unexpected keys {_short(extra)}"
        )
    bad = [k for k, v in mapped.items() if tuple(v.shape) != tuple(own[k].shape)]
    if bad:
        raise CheckpointError(
            "tensor shapes do not match the architecture of " + repr(backbone) + ": "
            + ", ".join(f"{k} {tuple(mapped[k].shape)} vs {tuple(own[k].shape)}" for k in bad[:8])
        )
    full = {k: (mapped[k].to(own[k].dtype) if k in mapped else own[k]) for k in own}
    model.load_state_dict(full, strict=True)
    model.save_pretrained(output, adapter_only=False)
    record = {"format": f"effort-official-{layout}", "source": Path(checkpoint).name,
              "source_sha256": _sha256(Path(checkpoint)), "layout": layout, "preset": preset_name,
              "notes": [f"layout: {layout}", f"test preprocessing: preset {preset_name!r}"
                        + ("" if preset else f" (the official {layout} protocol)")]}
    (output / CONVERSION_NAME).write_text(json.dumps(record, indent=2) + "\n")
    return output
