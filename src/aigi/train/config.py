"""Training recipes: YAML files validated by pydantic.

A recipe names a registered detector with config overrides, the data, the augmentations,
the optimiser and schedule, and the run's length and bookkeeping. ``configs/`` holds the
published recipes; ``aigi train RECIPE.yaml key=value ...`` overrides any field.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from ..data.transforms import AugmentConfig
from ..overrides import Layout, StrictModel, TrainData, apply_overrides

__all__ = ["DataConfig", "OptimizerConfig", "SchedulerConfig", "TrainConfig", "apply_recipe_overrides", "load_recipe"]


class DataConfig(TrainData):
    """Training data (fields of :class:`~aigi.overrides.TrainData`) and optional validation data.

    With ``val`` set, the detector is scored on it at the end of every epoch (and at the
    end of the run): AUROC, AP and accuracy go to ``history.jsonl`` and the log.
    """

    val: str | None = Field(None, description="validation data: a folder or a manifest, scored every epoch")
    val_layout: Layout = "auto"
    val_split: str | None = Field(None, description="GenImage split of the validation data (default val)")


class OptimizerConfig(StrictModel):
    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    momentum: float = 0.9


class SchedulerConfig(StrictModel):
    name: Literal["constant", "step", "cosine"] = "constant"
    every: int = Field(10, description="step schedule: decay period, in `unit`s")
    unit: Literal["epoch", "step"] = "epoch"
    gamma: float = 0.9
    warmup_steps: int = 0


class TrainConfig(StrictModel):
    detector: str
    overrides: dict[str, Any] = Field(default_factory=dict, description="detector config overrides")
    data: DataConfig
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    batch_size: int = Field(32, ge=1, description="global batch size (split across processes)")
    epochs: float | None = Field(None, gt=0)
    max_steps: int | None = Field(None, ge=1)
    seed: int = 0
    num_workers: int = Field(0, ge=0)
    checkpoint_every: int = Field(500, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    log_every: int = Field(10, ge=1)
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    adapter_only: bool = Field(False, description="save only trainable tensors + head (CLIP detectors)")
    find_unused_parameters: bool = False
    output: str | None = Field(None, description="run folder; --output overrides it")

    @model_validator(mode="after")
    def _length(self) -> "TrainConfig":
        if self.epochs is None and self.max_steps is None:
            raise ValueError("a recipe needs `epochs` or `max_steps`")
        return self

    def digest(self) -> str:
        """Content hash of the resolved recipe (stored with every checkpoint)."""
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


def apply_recipe_overrides(data: dict[str, Any], pairs: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` strings (values read as YAML) to a recipe mapping.

    Keys are checked against :class:`TrainConfig` (a misspelt key is an error naming it);
    ``overrides.<dotted key>`` keeps the dotted key as one detector-config override.
    """
    return apply_overrides(data, pairs, model=TrainConfig, flat=("overrides",))


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read, override and validate a YAML recipe; data paths become absolute."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"recipe {path} not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"recipe {path} is not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ValueError(f"recipe {path} must be a YAML mapping, got {type(data).__name__}")
    base = path.resolve().parent
    # Paths written in the recipe are relative to the recipe; paths given on the
    # command line are relative to the current directory.
    section = data.get("data")
    if isinstance(section, dict):
        for field in ("train", "val"):
            value = section.get(field)
            if isinstance(value, str) and value and not Path(value).is_absolute():
                section[field] = str((base / value).resolve())
    data = apply_recipe_overrides(data, overrides or [])
    try:
        cfg = TrainConfig.model_validate(data)
    except ValidationError as err:
        raise ValueError(f"recipe {path} is invalid:\n{err}") from None
    for field in ("train", "val"):
        value = getattr(cfg.data, field)
        if value and not Path(value).is_absolute():
            setattr(cfg.data, field, str(Path(value).resolve()))
    return cfg
