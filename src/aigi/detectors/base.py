"""The Detector interface every method implements, and its self-describing checkpoints.

A detector is an ``nn.Module`` with a pydantic config. The config carries everything
needed to use the weights correctly — method name, backbone spec, preprocessing, label
convention and threshold — so ``aigi.load_detector(dir)`` can never evaluate a model with
the wrong transform by accident.

Checkpoint folder (the shape of a Hugging Face model folder)::

    config.json          {"aigi_version", "method", "adapter_only", **config}
    model.safetensors    the state dict (or, adapter-only, just the trainable tensors + head)
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from ..data.transforms import PreprocessConfig

from .folder import CONFIG_NAME, WEIGHTS_NAME  # noqa: F401 (re-exported: the folder format lives in folder.py)


class CheckpointError(ValueError):
    """A checkpoint folder or file that cannot be loaded; the message says why."""


class DetectorConfig(BaseModel):
    """Fields every detector has. Subclasses add their own (backbone, head, losses)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), allow_inf_nan=False)  # NaN/inf: an error

    method: str = ""
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="P(fake) at or above which the verdict is 'fake'")
    labels: tuple[str, str] = Field(("real", "fake"), description="names of label 0 and label 1")

    @classmethod
    def from_overrides(cls, overrides: dict[str, Any] | None = None) -> "DetectorConfig":
        """Defaults updated with ``overrides`` (dotted keys reach nested fields; a misspelt key is
        an error naming it, from :mod:`aigi.overrides`, the one override parser)."""
        from ..overrides import apply_overrides

        data = cls().model_dump(mode="python")
        items = {("backbone.source" if k == "backbone" and isinstance(v, str) else k): v
                 for k, v in (overrides or {}).items()}
        apply_overrides(data, items, model=cls, merge=True)
        return cls.model_validate(data)


class Detector(nn.Module):
    """Base class: ``forward(pixels) -> logits (B,)``; P(fake) = sigmoid(logit)."""

    method: ClassVar[str] = ""
    config_class: ClassVar[type[DetectorConfig]] = DetectorConfig
    #: state-dict prefixes of weights that come from a public pretrained checkpoint;
    #: an adapter-only save leaves their frozen tensors out.
    backbone_prefixes: ClassVar[tuple[str, ...]] = ()
    #: config overrides that make a few-thousand-parameter model for tests and CPU recipes
    tiny_overrides: ClassVar[dict[str, Any]] = {}
    #: config overrides that build the published full-size architecture (random weights allowed)
    full_size_overrides: ClassVar[dict[str, Any]] = {}

    def __init__(self, config: DetectorConfig) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            config = self.config_class.model_validate(config)
        config.method = self.method
        self.config = config

    # -- the interface ---------------------------------------------------------------
    def forward(self, pixels: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must implement forward")

    def training_loss(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Binary cross-entropy on the logits; methods with extra terms override this."""
        logits = self(batch["pixels"])
        bce = F.binary_cross_entropy_with_logits(logits, batch["label"].to(logits.dtype))
        return {"loss": bce, "bce": bce.detach()}

    def trainable_parameters(self) -> list[nn.Parameter]:
        """What the optimiser sees; everything else is frozen."""
        return [p for p in self.parameters() if p.requires_grad]

    def num_trainable(self) -> int:
        return sum(p.numel() for p in self.trainable_parameters())

    def fold(self) -> None:
        """Merge factorised weights (SVD residuals, LoRA) into plain dense weights."""

    def for_inference(self) -> "Detector":
        """Evaluation mode, no gradients, factorisations folded; returns self."""
        self.fold()
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        return self

    @torch.no_grad()
    def predict_proba(self, pixels: torch.Tensor) -> torch.Tensor:
        """P(fake) for a batch of preprocessed pixels."""
        return torch.sigmoid(self(pixels).float())

    def preprocess_config(self) -> PreprocessConfig:
        return self.config.preprocess

    def model_card(self) -> dict[str, Any]:
        """A short self-description (method, docstring line, parameter counts, config)."""
        doc = (type(self).__doc__ or "").strip().splitlines()
        return {
            "method": self.method,
            "summary": doc[0] if doc else "",
            "parameters": sum(p.numel() for p in self.parameters()),
            "trainable_parameters": self.num_trainable(),
            "config": self.config.model_dump(mode="json"),
        }

    # -- checkpoints -----------------------------------------------------------------
    def adapter_state_dict(self) -> dict[str, torch.Tensor]:
        """Everything except the frozen tensors of the public backbone."""
        if not self.backbone_prefixes:
            raise CheckpointError(
                f"{self.method} has no public pretrained backbone to leave out; "
                "save it with adapter_only=False"
            )
        trainable = {n for n, p in self.named_parameters() if p.requires_grad}
        return {
            k: v
            for k, v in self.state_dict().items()
            if k in trainable or not k.startswith(self.backbone_prefixes)
        }

    def save_pretrained(self, directory: str | os.PathLike, *, adapter_only: bool = False) -> Path:
        """Write ``config.json`` and ``model.safetensors`` atomically (temp dir + rename)."""
        directory = Path(directory)
        state = self.adapter_state_dict() if adapter_only else self.state_dict()
        tensors = _unshare({k: v.detach().cpu() for k, v in state.items()})
        meta = {
            "aigi_version": _version(),
            "method": self.method,
            "adapter_only": adapter_only,
            **self.config.model_dump(mode="json"),
        }
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        try:
            (tmp / CONFIG_NAME).write_text(json.dumps(meta, indent=2) + "\n")
            save_file(tensors, str(tmp / WEIGHTS_NAME), metadata={"format": "pt", "method": self.method})
            # safetensors writes 0600; give the weights config.json's mode (0666 minus the umask)
            os.chmod(tmp / WEIGHTS_NAME, (tmp / CONFIG_NAME).stat().st_mode & 0o777)
            directory.mkdir(parents=True, exist_ok=True)
            for name in (CONFIG_NAME, WEIGHTS_NAME):
                os.replace(tmp / name, directory / name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return directory

    @classmethod
    def build_for_loading(cls, config: DetectorConfig, *, adapter_only: bool) -> "Detector":
        """Build the module a checkpoint will be loaded into.

        Full checkpoints need only the architecture (no pretrained weights are fetched);
        adapter checkpoints need the real backbone weights. Subclasses with a pretrained
        backbone override this to honour that difference.
        """
        return cls(config)

    @classmethod
    def build_full_size(cls) -> "Detector":
        """The published full-size architecture, built as a full checkpoint would be loaded into.

        Random weights, no download; factorisations (Effort's 96 SVDs) are allocated, not
        computed, since a full checkpoint overwrites them. Tests and benchmarks use this.
        """
        config = cls.config_class.from_overrides(cls.full_size_overrides)
        return cls.build_for_loading(config, adapter_only=False)

    def load_weights(self, tensors: dict[str, torch.Tensor], *, adapter_only: bool = False) -> None:
        """Load a state dict; every missing or unexpected key is an error that lists them."""
        own = self.state_dict()
        expected = set(self.adapter_state_dict()) if adapter_only else set(own)
        missing = sorted(expected - set(tensors))
        unexpected = sorted(set(tensors) - set(own))
        if missing or unexpected:
            raise CheckpointError(
                f"checkpoint does not match {self.method}: "
                f"missing keys {_short(missing)}; unexpected keys {_short(unexpected)}"
            )
        bad = [k for k, v in tensors.items() if tuple(v.shape) != tuple(own[k].shape)]
        if bad:
            raise CheckpointError(
                "checkpoint shapes do not match: "
                + ", ".join(f"{k} {tuple(tensors[k].shape)} vs {tuple(own[k].shape)}" for k in bad[:10])
            )
        self.load_state_dict(tensors, strict=not adapter_only)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> "Detector":
        return load_detector(directory)


def _short(keys: list[str], n: int = 12) -> str:
    if not keys:
        return "[]"
    more = f" … and {len(keys) - n} more" if len(keys) > n else ""
    return "[" + ", ".join(keys[:n]) + "]" + more


def _unshare(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Make every tensor contiguous and own its memory (safetensors refuses shared storage)."""
    seen: set[int] = set()
    out = {}
    for k, v in tensors.items():
        v = v.contiguous()
        ptr = v.untyped_storage().data_ptr()
        if ptr in seen:
            v = v.clone()
        seen.add(v.untyped_storage().data_ptr())
        out[k] = v
    return out


def _version() -> str:
    from .. import __version__

    return __version__


def read_config(directory: str | os.PathLike) -> dict[str, Any]:
    """The raw ``config.json`` of a detector folder, with a clear error if it is absent."""
    directory = Path(directory)
    path = directory / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(
            f"{directory} is not a detector folder: {CONFIG_NAME} not found "
            "(train one with `aigi train` or import one with `aigi convert`)"
        )
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} must hold a JSON object (the detector's config), got a {type(data).__name__}")
    return data


def load_detector(directory: str | os.PathLike, *, device: str | torch.device = "cpu") -> Detector:
    """Load a detector saved by ``save_pretrained`` (full or adapter-only)."""
    from .registry import detector_class

    directory = Path(directory)
    meta = read_config(directory)
    method = meta.pop("method", None)
    if not method:
        raise CheckpointError(f"{directory / CONFIG_NAME} names no method")
    meta.pop("aigi_version", None)
    adapter_only = bool(meta.pop("adapter_only", False))
    cls = detector_class(method)
    try:
        config = cls.config_class.model_validate({**meta, "method": method})
    except ValueError as err:  # pydantic's ValidationError: every field out of its bounds, named
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']} (got {repr(e.get('input'))[:60]})"
                             for e in getattr(err, "errors", lambda: [])()) or str(err)
        raise CheckpointError(f"{directory / CONFIG_NAME} is not a valid {method} config: {problems}") from None
    model = cls.build_for_loading(config, adapter_only=adapter_only)
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(f"{directory} has {CONFIG_NAME} but no {WEIGHTS_NAME}")
    tensors = {}
    with safe_open(str(weights), framework="pt") as f:
        for k in f.keys():
            tensors[k] = f.get_tensor(k)
    model.load_weights(tensors, adapter_only=adapter_only)
    return model.to(device)


def freeze(module: nn.Module) -> nn.Module:
    """Turn off gradients of every parameter of ``module``; returns it."""
    for p in module.parameters():
        p.requires_grad_(False)
    return module

