"""Benchmark protocols as data: a YAML file validated by pydantic (unknown keys are errors).

A protocol names the detectors (trained model folders, or recipes to train), the test
data, how a decision threshold is calibrated, and any of AIGIBench's four tasks:

1. ``generalization`` -- every detector on every test subset (clean images), with
   bootstrap intervals per subset;
2. ``robustness`` -- the same under each listed degradation (:mod:`aigi.data.degrade`);
3. ``augmentation`` -- recipe detectors retrained with each training augmentation on and
   off (``augment.*`` recipe overrides), compared on the test set;
4. ``preprocessing`` -- the test set under other test-time geometries than the detector's
   own (``PreprocessConfig.test`` overridden on purpose and recorded with the results).

Example (``configs/protocols/`` holds complete ones)::

    name: my-bench
    data: {test: /data/aigibench/test, layout: subsets}
    calibration: {fpr: 0.05, holdout: 0.2}
    detectors:
      - {name: npr, model: runs/npr}                                  # a trained folder
      - {name: cnnspot, recipe: ../cnnspot.yaml, overrides: [max_steps=100]}   # trained if needed
    tasks:
      generalization: {}
      robustness: {degradations: [jpeg:75, blur:2, noise:0.05, "resize:0.5:bilinear", social]}
      augmentation: {detectors: [cnnspot], variants: [none, blur, jpeg]}
      preprocessing: {modes: [center_crop, resize, none]}

Paths written in the file are relative to the file; paths given as ``key=value``
overrides on the command line are relative to the current directory.

**Protocol hash.** ``sha256`` of the canonical JSON (sorted keys, no spaces) of the
validated protocol with every path made absolute, *excluding* the ``run`` section
(batch size, workers, device: how it is computed, not what), is stored with every result.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from ..data.degrade import DegradationError, parse_degradation
from ..data.transforms import PRESETS, AugmentConfig, PreprocessConfig
from ..overrides import Layout, TrainData
from ..overrides import StrictModel as _Strict
from ..overrides import apply_overrides as _apply_overrides

__all__ = [
    "AUGMENTATION_VARIANTS",
    "PREPROCESS_MODES",
    "Protocol",
    "ProtocolError",
    "apply_overrides",
    "augmentation_overrides",
    "load_protocol",
    "protocol_from_dict",
]

PreprocessMode = Literal["center_crop", "resize", "resize_center_crop", "translate_duplicate", "patch_selection",
                         "none"]
PREPROCESS_MODES: tuple[str, ...] = get_args(PreprocessMode)
assert set(PREPROCESS_MODES) == set(get_args(PreprocessConfig.model_fields["test"].annotation))

Variant = Literal["none", "blur", "jpeg", "rotation", "color_jitter", "mask", "all"]
AUGMENTATION_VARIANTS: tuple[str, ...] = get_args(Variant)
#: the AugmentConfig probability each augmentation variant turns on
_VARIANT_FIELDS: dict[str, tuple[str, ...]] = {
    "none": (),
    "blur": ("blur_prob",),
    "jpeg": ("jpeg_prob",),
    "rotation": ("rotation_prob",),
    "color_jitter": ("color_jitter_prob",),
    "mask": ("mask_prob",),
    "all": ("blur_prob", "jpeg_prob", "rotation_prob", "color_jitter_prob", "mask_prob"),
}
#: recipe override keys that hold paths (resolved like the protocol's own paths)
_PATH_KEYS = ("data.train", "data.val")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class ProtocolError(ValueError):
    """A protocol file that cannot be used; the message names the file, the field and the fix."""


class DataSpec(_Strict):
    """The labelled test images."""

    test: str = Field(..., description="folder or manifest of test images (<subset>/{0_real,1_fake}/...)")
    layout: Layout = "auto"
    split: str | None = Field(None, description="GenImage split, or a subfolder of a subsets tree")
    subsets: list[str] | None = Field(None, description="keep only these subsets")
    max_per_class: int | None = Field(
        None, ge=1, description="keep at most this many images per subset and class (the first by path)"
    )


class TrainingDataSpec(TrainData):
    """The training data of every recipe detector (replaces each recipe's own ``data`` fields)."""

    def overrides(self) -> list[str]:
        return [f"data.train={json.dumps(self.train)}", f"data.layout={self.layout}",
                f"data.split={json.dumps(self.split)}", f"data.subsets={json.dumps(self.subsets)}"]


class CalibrationSpec(_Strict):
    """Where the real images for the calibrated threshold come from."""

    fpr: float = Field(0.05, gt=0.0, lt=1.0, description="target false-positive rate on held-out reals")
    data: str | None = Field(None, description="a folder/manifest whose real (label 0) images calibrate")
    layout: Layout = "auto"
    holdout: float = Field(
        0.2, ge=0.0, lt=1.0,
        description="without `data`: this fraction of each subset's test reals (chosen by content hash) "
        "is held out for calibration and left out of every metric",
    )

    @model_validator(mode="after")
    def _source(self) -> "CalibrationSpec":
        if self.data is None and self.holdout <= 0.0:
            raise ValueError("calibration needs real images: set `data` to a folder or `holdout` to a fraction > 0")
        return self


class DetectorSpec(_Strict):
    """A detector to benchmark: a trained folder (``model``) or a recipe to train."""

    name: str = Field(..., description="the detector's name in tables (letters, digits, _ . -)")
    model: str | None = Field(None, description="a trained detector folder")
    recipe: str | dict[str, Any] | None = Field(None, description="a training recipe (YAML path or inline mapping)")
    overrides: list[str] | dict[str, Any] = Field(default_factory=list, description="recipe key=value overrides")
    output: str | None = Field(None, description="where the recipe's run folder goes (default <output>/models/<name>)")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"detector name {v!r} may only hold letters, digits, '_', '.' and '-'")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> "DetectorSpec":
        if (self.model is None) == (self.recipe is None):
            raise ValueError(f"detector {self.name!r} needs exactly one of `model` (a trained folder) or `recipe`")
        if self.model is not None and (self.overrides or self.output):
            raise ValueError(f"detector {self.name!r}: `overrides` and `output` only apply to a `recipe`")
        return self

    def override_list(self) -> list[str]:
        if isinstance(self.overrides, dict):
            return [f"{k}={json.dumps(v)}" for k, v in self.overrides.items()]
        return list(self.overrides)


def _check_degradations(values: list[str]) -> list[str]:
    out = []
    for v in values:
        try:
            out.append(parse_degradation(v).spec)
        except DegradationError as err:
            raise ValueError(str(err)) from None
    if len(set(out)) != len(out):
        raise ValueError(f"degradations listed twice: {sorted({d for d in out if out.count(d) > 1})}")
    return out


class GeneralizationTask(_Strict):
    """Task 1: every detector on every subset of the clean test set."""

    detectors: list[str] | None = Field(None, description="default: every detector")


class RobustnessTask(_Strict):
    """Task 2: the test set under each degradation."""

    degradations: list[str] = Field(..., min_length=1, description="degradation specs, e.g. jpeg:75, blur:2")
    detectors: list[str] | None = None

    @field_validator("degradations")
    @classmethod
    def _degradations(cls, v: list[str]) -> list[str]:
        return _check_degradations(v)


class AugmentationTask(_Strict):
    """Task 3: retrain recipe detectors with each training augmentation on and off."""

    detectors: list[str] = Field(..., min_length=1, description="recipe detectors to retrain")
    variants: list[Variant] = Field(default_factory=lambda: list(AUGMENTATION_VARIANTS))
    probability: float = Field(0.5, gt=0.0, le=1.0, description="probability of each augmentation when on")
    degradations: list[str] = Field(default_factory=list, description="also test every variant under these")

    @field_validator("degradations")
    @classmethod
    def _degradations(cls, v: list[str]) -> list[str]:
        return _check_degradations(v)

    @field_validator("variants")
    @classmethod
    def _variants(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("augmentation variants listed twice")
        return v


#: a geometric mode, or a preprocessing preset by name (aigi.data.transforms.PRESETS: an official
#: codebase's whole test transform)
ModeOrPreset = Literal[PREPROCESS_MODES + tuple(PRESETS)]


class PreprocessingTask(_Strict):
    """Task 4: test-time geometry overridden on purpose: a geometric mode, or a preset by name."""

    modes: list[ModeOrPreset] = Field(..., min_length=1)
    detectors: list[str] | None = None


class Tasks(_Strict):
    generalization: GeneralizationTask | None = Field(default_factory=GeneralizationTask)
    robustness: RobustnessTask | None = None
    augmentation: AugmentationTask | None = None
    preprocessing: PreprocessingTask | None = None


class MetricsSpec(_Strict):
    threshold: float | None = Field(None, gt=0.0, lt=1.0, description="fixed threshold; default each detector's own")
    ece_bins: int = Field(15, ge=1)
    bootstrap: int = Field(1000, ge=0, description="bootstrap resamples per subset (0 turns intervals off)")
    confidence: float = Field(0.95, gt=0.0, lt=1.0)
    seed: int = 0


class RunSpec(_Strict):
    """How to compute (not part of the protocol hash)."""

    batch_size: int = Field(32, ge=1)
    num_workers: int = Field(0, ge=0)
    device: str = Field("auto", description="auto, cpu, cuda, cuda:1, mps")
    progress: bool = True


class SkippedSpec(_Strict):
    name: str
    reason: str


class Protocol(_Strict):
    """A whole benchmark: what to test, on what, and how to score it."""

    name: str = Field(..., description="the protocol's name (report title, default output folder)")
    description: str = ""
    data: DataSpec
    calibration: CalibrationSpec = Field(default_factory=CalibrationSpec)
    detectors: list[DetectorSpec] = Field(..., min_length=1)
    training_data: TrainingDataSpec | None = Field(
        None, description="the training data of every recipe detector (overrides the recipes' own)"
    )
    recipe_overrides: list[str] = Field(
        default_factory=list,
        description="key=value overrides applied to every recipe detector (after training_data, before its own)",
    )
    skipped: list[SkippedSpec] = Field(default_factory=list, description="detectors named but not run, and why")
    tasks: Tasks = Field(default_factory=Tasks)
    metrics: MetricsSpec = Field(default_factory=MetricsSpec)
    run: RunSpec = Field(default_factory=RunSpec)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"protocol name {v!r} may only hold letters, digits, '_', '.' and '-'")
        return v

    @model_validator(mode="after")
    def _references(self) -> "Protocol":
        names = [d.name for d in self.detectors]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"detector names must be unique; repeated: {', '.join(dup)}")
        known = set(names)
        for task_name in ("generalization", "robustness", "augmentation", "preprocessing"):
            task = getattr(self.tasks, task_name)
            if task is None or task.detectors is None:
                continue
            unknown = [n for n in task.detectors if n not in known]
            if unknown:
                raise ValueError(
                    f"tasks.{task_name}.detectors names unknown detector(s) {unknown}; "
                    f"the protocol's detectors are {sorted(known)}"
                )
        if self.tasks.augmentation is not None:
            by_name = {d.name: d for d in self.detectors}
            no_recipe = [n for n in self.tasks.augmentation.detectors if by_name[n].recipe is None]
            if no_recipe:
                raise ValueError(
                    f"tasks.augmentation retrains detectors, so they need a `recipe`; {no_recipe} only name a `model`"
                )
        if not any(getattr(self.tasks, t) is not None for t in Tasks.model_fields):
            raise ValueError("the protocol has no task; enable at least one of " + ", ".join(Tasks.model_fields))
        return self

    # -- identity --------------------------------------------------------------------
    def hashed_content(self) -> dict[str, Any]:
        """The part of the protocol that defines its results (everything but ``run``)."""
        return self.model_dump(mode="json", exclude={"run"})

    def digest(self) -> str:
        """The protocol hash: sha256 of the canonical JSON of :meth:`hashed_content`."""
        text = json.dumps(self.hashed_content(), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def shared_recipe_overrides(self) -> list[str]:
        """What every recipe detector gets before its own overrides."""
        return (self.training_data.overrides() if self.training_data else []) + list(self.recipe_overrides)

    def detector(self, name: str) -> DetectorSpec:
        for d in self.detectors:
            if d.name == name:
                return d
        raise KeyError(f"no detector named {name!r} in protocol {self.name!r}")

    def task_detectors(self, task: str) -> list[str]:
        spec = getattr(self.tasks, task)
        if spec is None:
            return []
        return list(spec.detectors) if spec.detectors is not None else [d.name for d in self.detectors]


def augmentation_overrides(variant: str, probability: float, base: AugmentConfig | None = None) -> list[str]:
    """``augment.*`` recipe overrides that turn every augmentation off except ``variant``'s.

    Returns no override at all when the recipe's own ``base`` augmentation already does
    exactly that, so the variant is the recipe itself and is not retrained.
    """
    if variant not in _VARIANT_FIELDS:
        raise ValueError(f"unknown augmentation variant {variant!r}; choose from {', '.join(AUGMENTATION_VARIANTS)}")
    want = {f: (probability if f in _VARIANT_FIELDS[variant] else 0.0) for f in _VARIANT_FIELDS["all"]}
    if base is not None:
        have = {"blur_prob": base.effective_blur_prob, "jpeg_prob": base.effective_jpeg_prob,
                "rotation_prob": base.rotation_prob, "color_jitter_prob": base.color_jitter_prob,
                "mask_prob": base.mask_prob}
        if have == want:
            return []
    values = {"blur_jpeg_prob": 0.0, **want}
    return [f"augment.{k}={v}" for k, v in values.items()]


# --------------------------------------------------------------------------- loading


def apply_overrides(data: dict[str, Any], pairs: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` strings (values parsed as YAML) to a protocol mapping.

    A list element is reached by its index (``detectors.0.model=...``) or, in lists of
    named entries, by its name (``detectors.npr.model=...``). Keys are checked against
    :class:`Protocol` (:mod:`aigi.overrides`, the one parser).
    """
    return _apply_overrides(data, pairs, model=Protocol, error=ProtocolError)


def _resolve_paths(data: dict[str, Any], base: Path) -> None:
    """Make the protocol's path fields absolute, relative to ``base``."""

    def fix(value: Any) -> Any:
        if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
            return str((base / value).resolve())
        if isinstance(value, str) and value:
            return str(Path(value).expanduser())
        return value

    def fix_overrides(overrides: Any) -> Any:
        if isinstance(overrides, dict):
            return {k: fix(v) if k in _PATH_KEYS else v for k, v in overrides.items()}
        if isinstance(overrides, list):
            out = []
            for item in overrides:
                if isinstance(item, str) and "=" in item and item.split("=", 1)[0].strip() in _PATH_KEYS:
                    key, value = item.split("=", 1)
                    item = f"{key}={fix(value.strip())}"
                out.append(item)
            return out
        return overrides

    if "recipe_overrides" in data:
        data["recipe_overrides"] = fix_overrides(data["recipe_overrides"])
    training = data.get("training_data")
    if isinstance(training, dict) and training.get("train"):
        training["train"] = fix(training["train"])
    data_sec = data.get("data")
    if isinstance(data_sec, dict) and "test" in data_sec:
        data_sec["test"] = fix(data_sec["test"])
    cal = data.get("calibration")
    if isinstance(cal, dict) and cal.get("data"):
        cal["data"] = fix(cal["data"])
    for det in data.get("detectors") or []:
        if not isinstance(det, dict):
            continue
        for key in ("model", "output"):
            if det.get(key):
                det[key] = fix(det[key])
        if "overrides" in det:
            det["overrides"] = fix_overrides(det["overrides"])
        recipe = det.get("recipe")
        if isinstance(recipe, str):
            det["recipe"] = fix(recipe)
        elif isinstance(recipe, dict) and isinstance(recipe.get("data"), dict):
            for key in ("train", "val"):
                if recipe["data"].get(key):
                    recipe["data"][key] = fix(recipe["data"][key])


def _format_errors(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key (not a protocol field; check its spelling)"
        elif e["type"] == "missing":
            msg = "required field is missing"
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def protocol_from_dict(data: dict[str, Any], *, base: str | Path = ".", overrides: list[str] | None = None,
                       source: str = "protocol") -> Protocol:
    """Validate a protocol mapping; relative paths in it are taken relative to ``base``."""
    if not isinstance(data, dict):
        raise ProtocolError(f"{source} must be a YAML mapping, got {type(data).__name__}")
    data = json.loads(json.dumps(data))  # a deep copy that also rejects non-JSON values early
    _resolve_paths(data, Path(base).resolve())
    apply_overrides(data, overrides or [])
    _resolve_paths(data, Path.cwd())  # paths from the command line: relative to the current directory
    try:
        return Protocol.model_validate(data)
    except ValidationError as err:
        raise ProtocolError(f"{source} is invalid:\n{_format_errors(err)}") from None


def load_protocol(path: str | Path, overrides: list[str] | None = None) -> Protocol:
    """Read, override and validate a YAML protocol file."""
    path = Path(path)
    if not path.is_file():
        raise ProtocolError(f"protocol file {path} not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ProtocolError(f"protocol {path} is not valid YAML: {err}") from None
    return protocol_from_dict(data, base=path.resolve().parent, overrides=overrides, source=f"protocol {path}")
