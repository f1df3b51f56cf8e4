"""Any ``transformers`` image-classification model as an aigi detector.

The models people already use for this job live on the Hugging Face Hub as
``image-classification`` models. ``hf_classifier`` wraps one
(``AutoModelForImageClassification``) so it runs through ``aigi eval``, ``aigi bench``,
``detect``, ``serve`` and ``export`` under the same protocol as Effort or NPR::

    model = aigi.create_detector("hf_classifier", source="path/or/hub-id", fake_label="artificial")
    model.save_pretrained("runs/my-hub-detector")        # then: aigi eval --model runs/my-hub-detector DATA

or ``aigi import-hf SOURCE OUTPUT --fake-label artificial``.

**The label.** ``fake_label`` names the class that means "AI-generated": a label name of the
model's ``id2label`` (case-insensitive), an index, or a list of them (a multi-class model with
one class per generator). The logit is ``log P(fake) − log P(not fake)`` under the model's
softmax: ``l_fake − l_real`` for two classes, ``logsumexp(fake) − logsumexp(rest)`` in general;
a one-output model's logit is used as it is.

**The preprocessing** comes from the model's image processor (``preprocessor_config.json``),
translated into the detector's :class:`~aigi.data.transforms.PreprocessConfig` geometry
(``size: {height, width}`` -> ``resize``; ``shortest_edge`` + centre crop ->
``resize_center_crop``; no resize + centre crop -> ``center_crop``; PIL resampling) with
``normalize: none``; the processor's rescale factor, mean and std are applied inside the
module, so any statistics work and an ONNX export carries them. A processor that cannot be
translated exactly (non-square sizes, ``shortest_edge`` without a crop, Lanczos or box
resampling) is refused with the field named; pass ``preprocess_from_processor=False`` and a
``preprocess`` of your own to use such a model anyway.

**Saving.** The model's architecture (its ``config.json`` as a dict) and the processor's
settings are written into the detector's config, so a saved folder rebuilds the model without
the Hub. Training fine-tunes every parameter (``trainable: all``) or only the classification
head (``trainable: head``: the parameters under the model's ``classifier``/``head``/``fc``).
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, Literal, Union

import torch
from pydantic import Field, field_validator
from torch import nn

from ..data.transforms import PreprocessConfig
from .base import CheckpointError, Detector, DetectorConfig
from .registry import AIGI, register

__all__ = ["HfClassifier", "HfClassifierConfig", "PRESETS", "preprocess_from_processor"]

LabelRef = Union[int, str]

#: random-weight architectures (no download): (model config kwargs, image processor kwargs)
PRESETS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "tiny-vit": (
        dict(model_type="vit", hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
             image_size=32, patch_size=8, id2label={0: "real", 1: "fake"}, label2id={"real": 0, "fake": 1}),
        dict(do_resize=True, size={"height": 32, "width": 32}, resample=2, do_rescale=True,
             rescale_factor=1 / 255, do_normalize=True, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5]),
    ),
    "vit-base-patch16-224-random": (
        dict(model_type="vit", id2label={0: "real", 1: "fake"}, label2id={"real": 0, "fake": 1}),
        dict(do_resize=True, size={"height": 224, "width": 224}, resample=2, do_rescale=True,
             rescale_factor=1 / 255, do_normalize=True, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5]),
    ),
}

_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}
_HEAD_NAMES = ("classifier", "head", "fc", "score")


class HfClassifierConfig(DetectorConfig):
    """Where the model comes from, which label is "fake", and its stored architecture."""

    source: str = Field("tiny-vit", description="hub id, local folder, or a preset name (tiny-vit, "
                        "vit-base-patch16-224-random)")
    revision: str | None = Field(None, description="hub revision (branch, tag or commit) of `source`")
    fake_label: LabelRef | list[LabelRef] = Field(
        "fake", description="the class meaning AI-generated: a label name, an index, or a list of them")
    trainable: Literal["all", "head"] = "all"
    preprocess_from_processor: bool = Field(
        True, description="derive `preprocess` from the image processor (else the given `preprocess` is used)")
    architecture: dict[str, Any] | None = Field(None, description="the transformers model config (filled at build)")
    processor: dict[str, Any] | None = Field(None, description="the image processor settings (filled at build)")

    @field_validator("fake_label")
    @classmethod
    def _labels(cls, v: Any) -> Any:
        if isinstance(v, list) and not v:
            raise ValueError("fake_label must name at least one class")
        return v


def preprocess_from_processor(processor: dict[str, Any], base: PreprocessConfig | None = None) -> PreprocessConfig:
    """The aigi geometry equivalent to a transformers image processor's settings (``normalize: none``)."""
    def fail(why: str) -> ValueError:
        return ValueError(
            f"the image processor's settings cannot be reproduced exactly ({why}); build the detector with "
            "preprocess_from_processor=False and a `preprocess` of your own"
        )

    resample = processor.get("resample", 2)
    if isinstance(resample, dict):  # never produced by transformers; guard against odd JSON
        raise fail(f"resample={resample!r}")
    interpolation = _RESAMPLE.get(int(resample) if resample is not None else 2)
    if interpolation is None:
        raise fail(f"resample={resample!r} (only nearest 0, bilinear 2 and bicubic 3 are supported)")
    size = processor.get("size") or {}
    crop = processor.get("crop_size") or {}
    do_resize = bool(processor.get("do_resize", True))
    do_crop = bool(processor.get("do_center_crop", False))

    def square(d: dict[str, Any], what: str) -> int:
        h, w = d.get("height"), d.get("width")
        if h is None or w is None or int(h) != int(w):
            raise fail(f"{what}={d!r} is not a square height/width")
        return int(h)

    fields: dict[str, Any] = {"interpolation": interpolation, "normalize": "none", "even_crop": False}
    if isinstance(size, int):
        size = {"height": size, "width": size}
    if isinstance(crop, int):
        crop = {"height": crop, "width": crop}
    if do_resize and "shortest_edge" in size:
        if "longest_edge" in size and size["longest_edge"] is not None:
            raise fail(f"size={size!r} (longest_edge)")
        if not do_crop:
            raise fail(f"size={size!r} without a centre crop gives images of varying size")
        fields.update(test="resize_center_crop", train="resize_random_crop", resize_to=int(size["shortest_edge"]),
                      size=square(crop, "crop_size"))
    elif do_resize:
        side = square(size, "size")
        if do_crop and square(crop, "crop_size") != side:
            # a square resize then a smaller crop has no aigi equivalent for non-square images
            raise fail(f"a square resize to {side} followed by a {square(crop, 'crop_size')} crop")
        fields.update(test="resize", train="resize", size=side)
    elif do_crop:
        fields.update(test="center_crop", train="random_crop", size=square(crop, "crop_size"))
    else:
        fields.update(test="none", train="center_crop")
    data = (base or PreprocessConfig()).model_dump(mode="python")
    data.update(fields)
    return PreprocessConfig.model_validate(data)


def _json_safe(d: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(d, default=lambda o: getattr(o, "value", str(o))))


def _model_config(arch: dict[str, Any]):
    from transformers import CONFIG_MAPPING

    arch = dict(arch)
    model_type = arch.pop("model_type", None)
    if model_type not in CONFIG_MAPPING:
        raise CheckpointError(f"unknown transformers model_type {model_type!r} in the stored architecture")
    return CONFIG_MAPPING[model_type].from_dict(arch)


def _load_pretrained(source: str, revision: str | None):
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    try:
        model = AutoModelForImageClassification.from_pretrained(source, revision=revision)
        processor = AutoImageProcessor.from_pretrained(source, revision=revision)
    except (OSError, ValueError) as err:
        raise CheckpointError(
            f"could not load an image-classification model and its image processor from {source!r}: "
            f"{str(err).rstrip('.')}. "
            "Pass a local folder (config.json, model.safetensors, preprocessor_config.json) or a hub id "
            "that is cached or reachable."
        ) from None
    return model, _json_safe(processor.to_dict())


@register("hf_classifier", task=AIGI)
class HfClassifier(Detector):
    """A transformers image-classification model (any Hub classifier) with a chosen 'fake' label."""

    config_class = HfClassifierConfig
    tiny_overrides: ClassVar[dict[str, Any]] = {"source": "tiny-vit"}
    full_size_overrides: ClassVar[dict[str, Any]] = {"source": "vit-base-patch16-224-random"}

    def __init__(self, config: HfClassifierConfig, *, pretrained: bool = True) -> None:
        super().__init__(config)
        cfg = self.config
        from transformers import AutoModelForImageClassification

        if cfg.source in PRESETS and cfg.architecture is None:
            arch, proc = PRESETS[cfg.source]
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                self.model = AutoModelForImageClassification.from_config(_model_config(arch))
            processor = dict(proc)
        elif pretrained and cfg.architecture is None:
            self.model, processor = _load_pretrained(cfg.source, cfg.revision)
        else:
            if cfg.architecture is None or cfg.processor is None:
                raise CheckpointError("hf_classifier config has no stored architecture/processor to rebuild from")
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                self.model = AutoModelForImageClassification.from_config(_model_config(cfg.architecture))
            processor = cfg.processor
        cfg.architecture = _json_safe(self.model.config.to_dict())
        cfg.processor = _json_safe(processor)
        if cfg.preprocess_from_processor:
            cfg.preprocess = preprocess_from_processor(cfg.processor, cfg.preprocess)
        self.fake_ids, self.real_ids = self._resolve_labels()
        scale = 255.0 * float(cfg.processor.get("rescale_factor", 1 / 255)) if cfg.processor.get("do_rescale", True) \
            else 255.0
        mean, std = [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
        if cfg.processor.get("do_normalize", True):
            mean = list(cfg.processor.get("image_mean", mean))
            std = list(cfg.processor.get("image_std", std))
        if cfg.preprocess.normalize != "none":  # an explicit preprocess normalises before us
            scale, mean, std = 1.0, [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
        self.register_buffer("pixel_scale", torch.tensor(scale), persistent=False)
        self.register_buffer("pixel_mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        if cfg.trainable == "head":
            head = [n for n, _ in self.model.named_children() if n in _HEAD_NAMES]
            if not head:
                raise ValueError(f"trainable='head': {type(self.model).__name__} has no child named "
                                 f"{' / '.join(_HEAD_NAMES)}; use trainable='all'")
            for name, p in self.model.named_parameters():
                p.requires_grad_(name.split(".")[0] in head)

    def _resolve_labels(self) -> tuple[list[int], list[int]]:
        id2label = {int(k): str(v) for k, v in (self.model.config.id2label or {}).items()}
        n = int(self.model.config.num_labels)
        wanted = self.config.fake_label if isinstance(self.config.fake_label, list) else [self.config.fake_label]
        by_name = {v.lower(): k for k, v in id2label.items()}
        ids: list[int] = []
        for ref in wanted:
            if isinstance(ref, int) and not isinstance(ref, bool):
                if not 0 <= ref < n:
                    raise ValueError(f"fake_label index {ref} is out of range: the model has {n} classes {id2label}")
                ids.append(ref)
            elif isinstance(ref, str) and ref.lower() in by_name:
                ids.append(by_name[ref.lower()])
            elif isinstance(ref, str) and ref.isdigit() and int(ref) < n:
                ids.append(int(ref))
            else:
                raise ValueError(f"fake_label {ref!r} is not one of the model's labels {id2label}; "
                                 "give a label name or an index")
        ids = sorted(set(ids))
        rest = [i for i in range(n) if i not in ids]
        if n > 1 and not rest:
            raise ValueError(f"fake_label names every class of the model ({id2label}); one must mean real")
        return ids, rest

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = (pixels * self.pixel_scale - self.pixel_mean.to(pixels.dtype)) / self.pixel_std.to(pixels.dtype)
        logits = self.model(pixel_values=x).logits
        if logits.shape[-1] == 1:
            return logits[:, 0]
        fake = torch.logsumexp(logits[:, self.fake_ids], dim=-1)
        real = torch.logsumexp(logits[:, self.real_ids], dim=-1)
        return fake - real

    @classmethod
    def build_for_loading(cls, config: DetectorConfig, *, adapter_only: bool) -> "HfClassifier":
        """The stored architecture, random weights: the checkpoint's tensors overwrite them."""
        if adapter_only:
            raise CheckpointError("hf_classifier checkpoints are always full (there is no frozen public backbone)")
        return cls(config, pretrained=False)
