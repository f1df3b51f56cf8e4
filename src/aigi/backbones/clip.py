"""CLIP vision and text towers through Hugging Face ``transformers``.

``ClipBackboneConfig.source`` is one of

* a hub id (default ``openai/clip-vit-large-patch14``) or a local folder holding a CLIP
  checkpoint (a full ``CLIPModel`` folder serves both towers);
* a preset name from :data:`PRESETS`: ``tiny`` (a few thousand parameters, for tests) or
  ``clip-vit-large-patch14-random`` / ``clip-vit-base-patch16-random`` (the full-size
  architectures with random weights: shapes, parameter counts and speed without a download).

Presets are initialised from a fixed seed, so two builds are identical and their weight hash
is stable. When the source is a hub id and there is no network and no cached copy, loading
fails with a message that says to pass a local folder.

The built architecture is written back into the config (``vision``/``text``), so a saved
detector re-creates its backbone without reaching the hub; ``weights_sha256`` records the
pretrained weights an adapter-only checkpoint was trained on.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

DEFAULT_CLIP = "openai/clip-vit-large-patch14"

_VISION_KEYS = (
    "hidden_size", "intermediate_size", "projection_dim", "num_hidden_layers",
    "num_attention_heads", "num_channels", "image_size", "patch_size", "hidden_act", "layer_norm_eps",
)
_TEXT_KEYS = (
    "vocab_size", "hidden_size", "intermediate_size", "projection_dim", "num_hidden_layers",
    "num_attention_heads", "max_position_embeddings", "hidden_act", "layer_norm_eps",
    "pad_token_id", "bos_token_id", "eos_token_id",
)

#: architecture presets: (vision config, text config)
PRESETS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "tiny": (
        dict(hidden_size=16, intermediate_size=32, projection_dim=8, num_hidden_layers=2,
             num_attention_heads=2, image_size=32, patch_size=8),
        dict(vocab_size=260, hidden_size=16, intermediate_size=32, projection_dim=8,
             num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=77,
             pad_token_id=0, bos_token_id=257, eos_token_id=258),
    ),
    "clip-vit-large-patch14-random": (
        dict(hidden_size=1024, intermediate_size=4096, projection_dim=768, num_hidden_layers=24,
             num_attention_heads=16, image_size=224, patch_size=14, hidden_act="quick_gelu"),
        dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, projection_dim=768,
             num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=77,
             hidden_act="quick_gelu", pad_token_id=1, bos_token_id=49406, eos_token_id=49407),
    ),
    "clip-vit-base-patch16-random": (
        dict(hidden_size=768, intermediate_size=3072, projection_dim=512, num_hidden_layers=12,
             num_attention_heads=12, image_size=224, patch_size=16, hidden_act="quick_gelu"),
        dict(vocab_size=49408, hidden_size=512, intermediate_size=2048, projection_dim=512,
             num_hidden_layers=12, num_attention_heads=8, max_position_embeddings=77,
             hidden_act="quick_gelu", pad_token_id=1, bos_token_id=49406, eos_token_id=49407),
    ),
}


class BackboneUnavailable(OSError):
    """Pretrained weights could not be found (offline, wrong folder, wrong id)."""


class BackboneMismatch(ValueError):
    """The backbone weights differ from the ones a checkpoint was trained on."""


class ClipBackboneConfig(BaseModel):
    """Where the CLIP weights come from and which architecture they have."""

    model_config = ConfigDict(extra="forbid")

    source: str = DEFAULT_CLIP
    revision: str | None = None
    vision: dict[str, Any] | None = None
    text: dict[str, Any] | None = None
    weights_sha256: str | None = None

    @property
    def is_preset(self) -> bool:
        return self.source in PRESETS


def state_sha256(module: nn.Module) -> str:
    """sha256 over a module's state dict (names, dtypes, shapes and bytes, sorted by name).

    The tensors' bytes are fed to the hash in place (a buffer view, no copy): hashing is part of
    the wait when a detector is built on a pretrained tower.
    """
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        if t.numel():
            h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    return h.hexdigest()


def _seeded(build):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build()


def _unavailable(source: str, err: Exception) -> BackboneUnavailable:
    return BackboneUnavailable(
        f"could not load CLIP weights from {source!r}: {err}. Without network access, download "
        "the checkpoint elsewhere and pass its local folder (backbone.source=/path/to/clip-vit-large-patch14, "
        "or --backbone DIR); for a quick test use the preset 'tiny' or 'clip-vit-large-patch14-random'."
    )


def _arch(kind: Literal["vision", "text"], spec: ClipBackboneConfig) -> dict[str, Any] | None:
    if spec.is_preset:
        return PRESETS[spec.source][0 if kind == "vision" else 1]
    return spec.vision if kind == "vision" else spec.text


def _pick(config, keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: getattr(config, k) for k in keys if hasattr(config, k)}


def load_clip_vision(spec: ClipBackboneConfig, *, pretrained: bool = True, verify: bool = True) -> nn.Module:
    """A ``CLIPVisionModelWithProjection``: pretrained weights, or the architecture only.

    With ``pretrained`` the weights come from ``spec.source`` and, when ``verify`` and the
    spec already records a hash, must match it. The spec is updated in place with the
    architecture and (for pretrained loads) the weight hash.
    """
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    arch = _arch("vision", spec)
    if spec.is_preset or not pretrained:
        if arch is None:
            arch = _remote_config(spec, "vision")
        model = _seeded(lambda: CLIPVisionModelWithProjection(CLIPVisionConfig(**arch)))
    else:
        model = _from_pretrained(CLIPVisionModelWithProjection, spec, "vision")
    spec.vision = _pick(model.config, _VISION_KEYS)
    if pretrained:
        _check_hash(spec, model, verify)
    return model


def load_clip_text(spec: ClipBackboneConfig, *, pretrained: bool = True) -> nn.Module:
    """A ``CLIPTextModelWithProjection`` from the same source as the vision tower."""
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    arch = _arch("text", spec)
    if spec.is_preset or not pretrained:
        if arch is None:
            arch = _remote_config(spec, "text")
        model = _seeded(lambda: CLIPTextModelWithProjection(CLIPTextConfig(**arch)))
    else:
        model = _from_pretrained(CLIPTextModelWithProjection, spec, "text")
    spec.text = _pick(model.config, _TEXT_KEYS)
    return model


#: checkpoint keys a tower may leave unused: the other tower's weights and CLIP's shared scale
_OTHER_TOWER = {"vision": ("text_model.", "text_projection.", "logit_scale"),
                "text": ("vision_model.", "visual_projection.", "logit_scale")}


class BackboneLoadError(ValueError):
    """A CLIP checkpoint lacks weights the tower needs, or holds them with other shapes."""


def _from_pretrained(cls, spec: ClipBackboneConfig, kind: Literal["vision", "text"]) -> nn.Module:
    """``cls.from_pretrained`` without transformers' load report for the other tower's keys.

    A full CLIP folder holds both towers, so loading one leaves the other's keys unused: that
    is expected and loaded quietly. A key the tower needs but the folder lacks (it would be
    left at random initialisation) or a shape mismatch is an error naming the keys.
    """
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model, info = cls.from_pretrained(spec.source, revision=spec.revision, output_loading_info=True)
    except OSError as err:
        raise _unavailable(spec.source, err) from None
    except RuntimeError as err:  # transformers raises on size mismatches
        raise BackboneLoadError(f"the CLIP checkpoint at {spec.source!r} does not fit a {kind} tower: {err}") from None
    finally:
        hf_logging.set_verbosity(level)
    missing = sorted(info.get("missing_keys") or [])
    unexpected = sorted(k for k in info.get("unexpected_keys") or [] if not k.startswith(_OTHER_TOWER[kind]))
    mismatched = sorted(str(k) for k in info.get("mismatched_keys") or [])
    if missing or mismatched:
        raise BackboneLoadError(
            f"the CLIP checkpoint at {spec.source!r} does not fit a {kind} tower: "
            + "; ".join(f"{what}: {', '.join(keys[:8])}{' …' if len(keys) > 8 else ''}"
                        for what, keys in (("missing", missing), ("wrong shape", mismatched)) if keys)
        )
    if unexpected:
        import warnings

        warnings.warn(f"{spec.source!r}: {len(unexpected)} weights not used by the CLIP {kind} tower "
                      f"({', '.join(unexpected[:5])}{' …' if len(unexpected) > 5 else ''})", stacklevel=3)
    return model


def _remote_config(spec: ClipBackboneConfig, kind: str) -> dict[str, Any]:
    from transformers import CLIPConfig

    try:
        cfg = CLIPConfig.from_pretrained(spec.source, revision=spec.revision)
    except OSError as err:
        raise _unavailable(spec.source, err) from None
    sub = cfg.vision_config if kind == "vision" else cfg.text_config
    d = _pick(sub, _VISION_KEYS if kind == "vision" else _TEXT_KEYS)
    d["projection_dim"] = cfg.projection_dim
    return d


def _check_hash(spec: ClipBackboneConfig, model: nn.Module, verify: bool) -> None:
    digest = state_sha256(model)
    if verify and spec.weights_sha256 and spec.weights_sha256 != digest:
        raise BackboneMismatch(
            f"the CLIP weights at {spec.source!r} (sha256 {digest[:12]}…) are not the ones this "
            f"checkpoint was trained on (sha256 {spec.weights_sha256[:12]}…); pass the original "
            "backbone, or use a full (not adapter-only) checkpoint"
        )
    spec.weights_sha256 = digest


class ByteTokenizer:
    """Byte-level stand-in tokenizer for preset backbones that ship no vocabulary files.

    Token ids: bytes map to 1..256, ``bos``/``eos`` from the text config, padded with
    ``pad`` to ``max_length``. Real checkpoints use their own CLIP tokenizer instead.
    """

    def __init__(self, bos: int, eos: int, pad: int, max_length: int = 77) -> None:
        self.bos, self.eos, self.pad, self.max_length = bos, eos, pad, max_length

    def __call__(self, texts: list[str]) -> dict[str, torch.Tensor]:
        ids = torch.full((len(texts), self.max_length), self.pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, t in enumerate(texts):
            seq = [self.bos] + [b + 1 for b in t.encode("utf-8")[: self.max_length - 2]] + [self.eos]
            ids[i, : len(seq)] = torch.tensor(seq)
            mask[i, : len(seq)] = 1
        return {"input_ids": ids, "attention_mask": mask}


def load_tokenizer(spec: ClipBackboneConfig):
    """The CLIP tokenizer of ``spec.source``; the byte tokenizer for presets."""
    if spec.is_preset:
        t = PRESETS[spec.source][1]
        return ByteTokenizer(t["bos_token_id"], t["eos_token_id"], t["pad_token_id"], t["max_position_embeddings"])
    from transformers import CLIPTokenizerFast

    try:
        tok = CLIPTokenizerFast.from_pretrained(spec.source, revision=spec.revision)
    except OSError as err:
        raise _unavailable(spec.source, err) from None
    return lambda texts: dict(tok(texts, padding="max_length", truncation=True, max_length=77, return_tensors="pt"))
