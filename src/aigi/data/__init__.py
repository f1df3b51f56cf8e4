"""Data package: decoding, folder layouts, preprocessing, patch selection, datasets.

The one path for an image: ``decode_image`` (content-sniffed, bomb-safe, RGB)
-> ``build_transform(PreprocessConfig, ...)`` -> tensor; ``load_samples``
finds labelled images in the field's folder layouts and manifests, and
``ImageDataset`` + ``collate`` feed them to a DataLoader without ever stopping
on a broken file.
"""

from .dataset import UNKNOWN_LABEL, ImageDataset, collate
from .io import (
    DECODE_ERROR_REASONS,
    DEFAULT_MAX_PIXELS,
    ImageDecodeError,
    decode_image,
    sniff_is_image,
    to_rgb,
)
from .layouts import LAYOUTS, LayoutError, Sample, detect_layout, load_samples, subsets_of
from .patches import patch_entropies, select_patches
from .transforms import (
    CLIP_MEAN,
    CLIP_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    AugmentConfig,
    PreprocessConfig,
    Transform,
    build_transform,
    normalize,
    to_tensor,
    translate_duplicate,
)

__all__ = [
    "AugmentConfig",
    "CLIP_MEAN",
    "CLIP_STD",
    "DECODE_ERROR_REASONS",
    "DEFAULT_MAX_PIXELS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageDataset",
    "ImageDecodeError",
    "LAYOUTS",
    "LayoutError",
    "PreprocessConfig",
    "Sample",
    "Transform",
    "UNKNOWN_LABEL",
    "build_transform",
    "collate",
    "decode_image",
    "detect_layout",
    "load_samples",
    "normalize",
    "patch_entropies",
    "select_patches",
    "sniff_is_image",
    "subsets_of",
    "to_rgb",
    "to_tensor",
    "translate_duplicate",
]
