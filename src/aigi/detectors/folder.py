"""The detector-folder format in one place: its file names, its calibration, and the model resolver.

A detector folder has the shape of a Hugging Face model folder::

    config.json          the detector's config (method, backbone, preprocessing, threshold, labels)
    model.safetensors    the weights (full, or adapter-only)
    calibration.json     written by `aigi calibrate` (or `aigi bench --calibrate`): a threshold
                         measured on real images at a target FPR, and an optional abstain band
    training.json        written by `aigi train`: data, steps, time, recipe hash
    train_config.yaml    the resolved training recipe
    checkpoints/         resumable training state
    eval/metrics.json    written by `aigi eval` (its default output folder)
    conversion.json      written by `aigi convert`: where imported weights came from

:func:`open_model` turns what a user types after ``--model`` into a loaded detector: a
folder, ``zoo:NAME`` (:func:`aigi.zoo.pull`), a ``.onnx`` file
(:func:`aigi.export.onnx.load_onnx_detector`) or a Hugging Face Hub id ``user/repo``
(:func:`aigi.hub.snapshot`). The optional packages are imported only when asked for.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CALIBRATION_NAME = "calibration.json"
TRAINING_NAME = "training.json"
TRAIN_CONFIG_NAME = "train_config.yaml"
CHECKPOINTS_DIR = "checkpoints"
EVAL_DIR = "eval"
METRICS_NAME = "metrics.json"
CONVERSION_NAME = "conversion.json"

#: prefix of a model-zoo name given to ``--model``
ZOO_PREFIX = "zoo:"
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


class AbstainBand(BaseModel):
    """Scores with ``low <= p < high`` are left to a human ("uncertain").

    ``p < low`` is label 0 (real), ``p >= high`` label 1 (fake). ``low == high`` is no band.
    """

    model_config = ConfigDict(extra="forbid")

    low: float = Field(..., ge=0.0, le=1.0)
    high: float = Field(..., ge=0.0, le=1.0)
    #: how the band was set: "error rates" (FNR on fakes / FPR on reals) or "width"
    source: str = "width"
    target_fnr: float | None = None
    fnr: float | None = Field(None, description="fraction of calibration fakes below `low`")

    @model_validator(mode="after")
    def _ordered(self) -> "AbstainBand":
        if self.low > self.high:
            raise ValueError(f"abstain band low ({self.low}) must not be above high ({self.high})")
        return self

    @classmethod
    def around(cls, threshold: float, width: float) -> "AbstainBand":
        """The band ``[threshold - width, threshold + width)``, clipped to [0, 1]."""
        if not (0.0 <= width <= 0.5) or math.isnan(width):
            raise ValueError(f"abstain band width must be between 0 and 0.5 (a P(fake) distance), got {width}")
        return cls(low=max(0.0, threshold - width), high=min(1.0, threshold + width), source="width")


class Calibration(BaseModel):
    """The content of ``calibration.json`` (only ``threshold`` is required, for older files)."""

    model_config = ConfigDict(extra="allow")

    threshold: float = Field(..., ge=0.0, le=1.0, description="P(fake) at or above which the verdict is fake")
    target_fpr: float | None = None
    fpr: float | None = Field(None, description="false-positive rate the threshold gives on the calibration reals")
    tpr: float | None = Field(None, description="true-positive rate on the calibration fakes, when there were any")
    n_real: int | None = None
    n_fake: int | None = None
    data: str | None = None
    data_sha256: str | None = Field(None, description="sha256 over the sorted content hashes of the images used")
    date: str | None = None
    dtype: str | None = None
    band: AbstainBand | None = None


def read_calibration(directory: str | os.PathLike) -> Calibration:
    """The ``calibration.json`` of a detector folder, validated."""
    path = Path(directory) / CALIBRATION_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{Path(directory)} has no {CALIBRATION_NAME}: run `aigi calibrate --model {Path(directory)} DATA` "
            "first, or leave out --calibrated to use the model's own threshold"
        )
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None
    t = data.get("threshold") if isinstance(data, dict) else None
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.0 <= float(t) <= 1.0:
        raise ValueError(f"{path} must hold a 'threshold' between 0 and 1 (a P(fake)), got {t!r}")
    try:
        return Calibration.model_validate(data)
    except ValidationError as err:
        raise ValueError(f"{path} is not a valid calibration: {err}") from None


def write_calibration(directory: str | os.PathLike, calibration: Calibration) -> Path:
    """Write ``calibration.json`` into a detector folder atomically; returns its path."""
    directory = Path(directory)
    if not (directory / CONFIG_NAME).is_file():
        raise FileNotFoundError(f"{directory} is not a detector folder ({CONFIG_NAME} not found)")
    path = directory / CALIBRATION_NAME
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(calibration.model_dump(mode="json", exclude_none=True), indent=2) + "\n")
    os.replace(tmp, path)
    return path


def calibration_band(directory: str | os.PathLike) -> dict[str, float] | None:
    """The abstain band ``{"low", "high"}`` of a folder's ``calibration.json``; None when it has none.

    For reports: a missing, unreadable or band-less calibration gives None rather than an error.
    """
    if not (Path(directory) / CALIBRATION_NAME).is_file():
        return None
    try:
        band = read_calibration(directory).band
    except ValueError:
        return None
    return None if band is None else {"low": band.low, "high": band.high}


def side_files() -> dict[str, str]:
    """Optional JSON files a model card shows: key → path relative to the folder."""
    return {
        "training": TRAINING_NAME,
        "metrics": os.path.join(EVAL_DIR, METRICS_NAME),
        "calibration": CALIBRATION_NAME,
        "conversion": CONVERSION_NAME,
    }


def is_finished_folder(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds both a config and weights."""
    folder = Path(folder)
    return (folder / CONFIG_NAME).is_file() and (folder / WEIGHTS_NAME).is_file()


@dataclass
class OpenedModel:
    """A loaded detector and the folder it came from (None for an ONNX file)."""

    detector: Any
    folder: Path | None
    spec: str


def looks_like_hub_id(spec: str) -> bool:
    """``user/repo``: one slash, Hub-legal characters, and no such path on disk."""
    return bool(_HUB_ID.match(spec)) and not Path(spec).exists()


def resolve_folder(spec: str | os.PathLike, revision: str | None = None) -> Path | None:
    """The local folder ``spec`` names (pulling a zoo model or a Hub snapshot), None for an ONNX file."""
    text = os.fspath(spec)
    if revision is not None and not (isinstance(spec, str) and looks_like_hub_id(text)):
        raise ValueError(f"--revision applies to a Hugging Face Hub id (user/repo), not to {text!r}")
    if text.startswith(ZOO_PREFIX):
        name = text[len(ZOO_PREFIX):]
        if not name:
            raise ValueError("zoo: needs a model name, e.g. zoo:npr-progan (see `aigi zoo list`)")
        try:
            from .. import zoo
        except ImportError as err:
            raise ValueError(f"cannot open {text}: the model zoo (aigi.zoo) is not available: {err}") from None
        return Path(zoo.pull(name))
    path = Path(text)
    if path.suffix.lower() == ".onnx":
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such ONNX file")
        return None
    if path.exists():
        return path
    if looks_like_hub_id(text):
        try:
            from .. import hub
        except ImportError as err:
            raise ValueError(f"cannot open {text} from the Hugging Face Hub: aigi.hub is not available: {err}") from None
        try:
            return Path(hub.snapshot(text, revision))
        except (OSError, ValueError) as err:
            raise FileNotFoundError(
                f"{text} is not a folder here, and fetching it as a Hugging Face Hub id failed: {err}"
            ) from err
    raise FileNotFoundError(
        f"{text}: no such detector folder (give a folder, zoo:NAME, FILE.onnx or a Hub id user/repo)"
    )


def open_model(spec: str | os.PathLike, revision: str | None = None, *, device: str = "cpu") -> OpenedModel:
    """Load the detector ``spec`` names: a folder, ``zoo:NAME``, ``FILE.onnx`` or ``user/repo`` on the Hub."""
    text = os.fspath(spec)
    folder = resolve_folder(spec, revision)
    if folder is None:
        try:
            from ..export.onnx import load_onnx_detector
        except ImportError as err:
            raise ValueError(f"cannot open {text}: ONNX support (aigi.export.onnx) is not available: {err}") from None
        return OpenedModel(load_onnx_detector(Path(text)), None, text)
    from .base import load_detector

    return OpenedModel(load_detector(folder, device=device), folder, text)


def load_model(spec: str | os.PathLike, revision: str | None = None, *, device: str = "cpu") -> Any:
    """``aigi.load_detector``: the detector ``spec`` names (see :func:`open_model`), unfolded, on ``device``."""
    return open_model(spec, revision, device=device).detector
