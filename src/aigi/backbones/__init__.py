"""Pretrained feature extractors (CLIP through transformers) and the from-scratch CNNs."""

from .clip import (
    DEFAULT_CLIP,
    PRESETS,
    BackboneMismatch,
    BackboneUnavailable,
    ClipBackboneConfig,
    load_clip_text,
    load_clip_vision,
    state_sha256,
)
from .resnet import ResNet, load_imagenet_weights, resnet50

__all__ = [
    "DEFAULT_CLIP",
    "PRESETS",
    "BackboneMismatch",
    "BackboneUnavailable",
    "ClipBackboneConfig",
    "ResNet",
    "load_clip_text",
    "load_clip_vision",
    "load_imagenet_weights",
    "resnet50",
    "state_sha256",
]
