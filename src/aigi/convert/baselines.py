"""Import the official UnivFD, NPR and CNNSpot checkpoints into detector folders.

Every checkpoint is read with ``torch.load(weights_only=True)`` (a pickle holding anything
but tensors and plain containers is refused), its keys are compared with the official
architecture, and every missing or unexpected key, and every shape mismatch, is an error that
lists them. The result is a folder that ``aigi.load_detector`` loads, plus ``conversion.json``
recording the source file, its sha256 and what was found in it.

What the official code saves (read in the authors' repositories):

* **UnivFD** (WisconsinAIVision/UniversalFakeDetect, ``pretrained_weights/fc_weights.pth``):
  the state dict of the linear head alone, ``{"weight": [1, 768], "bias": [1]}``, loaded with
  ``model.fc.load_state_dict(...)`` on top of CLIP ViT-L/14's ``encode_image``.
* **NPR** (chuangchuangtan/NPR-DeepfakeDetection): ``test.py`` loads the file directly into the
  network with ``load_state_dict(torch.load(path), strict=True)`` and the trainer saves
  ``model.state_dict()``: a *bare* state dict with keys ``conv1``, ``bn1``, ``layer1``,
  ``layer2``, ``fc1``. No ``module.`` prefix is documented there; checkpoints re-saved by other
  code may nest it under ``"model"`` (what the repo's own ``load_networks`` expects) or
  ``"state_dict"``, or carry DataParallel's ``module.`` prefix, and all of these are accepted.
  The official trainer also attaches an unused ``fc = Linear(2048, 1)`` that its forward never
  calls; when ``fc.weight`` [1, 2048] and ``fc.bias`` [1] appear beside ``fc1`` they are dropped
  (recorded in ``conversion.json``); any other extra key is an error.
* **CNNSpot** (PeterWang512/CNNDetection, ``demo.py``): ``state_dict["model"]`` is a
  torchvision ResNet-50 with ``fc = Linear(2048, 1)``; the other top-level entries
  (``optimizer``, ``total_steps``) are training state and are ignored.

Every converter writes the test preprocessing of the codebase the checkpoint came from into
the folder's config (a preset of :mod:`aigi.data.transforms`; ``preset=`` picks another) and
records it in ``conversion.json``: UnivFD ``univfd-center-crop224``, NPR
``forensynths-resize256`` (its test.py's main protocol; ``native`` for GANGen,
``genimage-translate-duplicate224`` for GenImage), CNNSpot ``cnnspot-center-crop224``
(eval.py; ``cnnspot-no-crop`` is demo.py's).

For NPR and CNNSpot the block counts and width are read from the checkpoint, so smaller
variants convert too. BatchNorm ``num_batches_tracked`` counters, absent from checkpoints
written by PyTorch < 0.4.1 and unused at inference, are filled with 0 when missing (noted).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from ..backbones.clip import DEFAULT_CLIP
from ..data.transforms import preset as get_preset
from ..detectors.base import CheckpointError, Detector
from ..detectors.folder import CONFIG_NAME, CONVERSION_NAME
from ..detectors.registry import create_detector



def _short(keys: list[str], n: int = 12) -> str:
    more = f" … and {len(keys) - n} more" if len(keys) > n else ""
    return "[" + ", ".join(keys[:n]) + "]" + more


# -- reading -------------------------------------------------------------------------------
def load_checkpoint(path: str | os.PathLike) -> Any:
    """``torch.load(path, weights_only=True)`` with errors that say what was wrong."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        text = str(err)
        found = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n\n|$)", text, re.S)
        detail = found.group(1).strip() if found else (text.strip().splitlines() or [type(err).__name__])[0]
        detail = detail.split(" Please use ")[0]
        if "Unsupported global" not in text:
            raise CheckpointError(f"cannot read {path} as a PyTorch checkpoint: {detail}") from None
        raise CheckpointError(
            f"{path} holds objects other than tensors and plain containers, so it was refused "
            f"(torch.load with weights_only=True: {detail}). Only state dicts are accepted; "
            "re-save it with torch.save(model.state_dict(), path) from code you trust."
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(f"cannot read {path} as a PyTorch checkpoint: {type(err).__name__}: {err}") from None


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


def _describe(obj: Any) -> str:
    if isinstance(obj, dict):
        kinds = sorted({type(v).__name__ for v in obj.values()})
        return f"a dict with keys {_short(sorted(map(str, obj)), 8)} holding {', '.join(kinds) or 'nothing'}"
    return f"a {type(obj).__name__}"


def unwrap_state_dict(
    obj: Any, path: str | os.PathLike, *, containers: tuple[str, ...]
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The tensors of a bare state dict or of one nested under a ``containers`` key.

    Returns ``(state, notes)``; a ``module.`` prefix carried by every key is removed.
    """
    notes: list[str] = []
    if _is_state_dict(obj):
        state = dict(obj)
        notes.append("layout: bare state dict")
    else:
        key = next((k for k in containers if isinstance(obj, dict) and k in obj), None)
        if key is None or not _is_state_dict(obj[key]):
            want = " or ".join(f"under {k!r}" for k in containers)
            raise CheckpointError(
                f"{path} is not a state dict: found {_describe(obj)}; expected a dict of tensors "
                f"(bare, or {want})"
            )
        state = dict(obj[key])
        notes.append(f"layout: state dict under {key!r}")
        others = sorted(str(k) for k in obj if k != key)
        if others:
            notes.append(f"ignored top-level entries (training state): {', '.join(others)}")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
        notes.append("removed the DataParallel prefix 'module.' from every key")
    return state, notes


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# -- checking ------------------------------------------------------------------------------
def check_keys(
    state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], what: str, notes: list[str]
) -> dict[str, torch.Tensor]:
    """``state`` checked against ``expected`` (names and shapes); missing counters filled with 0."""
    state = dict(state)
    missing = sorted(set(expected) - set(state))
    counters = [k for k in missing if k.endswith(".num_batches_tracked")]
    if counters and len(counters) == len(missing):
        for k in counters:
            state[k] = torch.zeros_like(expected[k])
        notes.append(f"filled {len(counters)} missing BatchNorm num_batches_tracked counters with 0")
        missing = []
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{what}: missing keys {_short(missing)}; unexpected keys {_short(unexpected)}"
        )
    bad = [k for k in sorted(state) if tuple(state[k].shape) != tuple(expected[k].shape)]
    if bad:
        raise CheckpointError(
            f"{what}: shapes do not match: "
            + ", ".join(f"{k} is {tuple(state[k].shape)}, expected {tuple(expected[k].shape)}" for k in bad[:10])
            + (f" … and {len(bad) - 10} more" if len(bad) > 10 else "")
        )
    return state


def resnet_arch(state: dict[str, torch.Tensor], stages: int, what: str) -> tuple[tuple[int, ...], int]:
    """(blocks per stage, stem width) of a torchvision-named ResNet state dict."""
    if "conv1.weight" not in state:
        raise CheckpointError(f"{what}: missing key conv1.weight (keys found: {_short(sorted(state), 8)})")
    width = int(state["conv1.weight"].shape[0])
    blocks = []
    for i in range(1, stages + 1):
        idx = {int(m.group(1)) for k in state if (m := re.match(rf"layer{i}\.(\d+)\.", k))}
        if not idx:
            raise CheckpointError(f"{what}: missing keys layer{i}.* (found no block of stage {i})")
        blocks.append(max(idx) + 1)
    return tuple(blocks), width


# -- writing -------------------------------------------------------------------------------
def _prepare_output(output: Path, overwrite: bool) -> None:
    if (output / CONFIG_NAME).exists() and not overwrite:
        raise FileExistsError(f"{output} already holds a detector ({CONFIG_NAME}); pass overwrite=True (--force) to replace it")


def _finish(
    detector: Detector, output: Path, checkpoint: Path, kind: str, notes: list[str], *,
    adapter_only: bool = False, extra: dict[str, Any] | None = None,
) -> Path:
    detector.save_pretrained(output, adapter_only=adapter_only)
    record = {
        "format": kind,
        "source": checkpoint.name,
        "source_sha256": _sha256(checkpoint),
        "notes": notes,
        "adapter_only": adapter_only,
        **(extra or {}),
    }
    (output / CONVERSION_NAME).write_text(json.dumps(record, indent=2) + "\n")
    return output


#: the official test protocol of each importer (a preset of aigi.data.transforms)
DEFAULT_PRESETS: dict[str, str] = {
    "univfd": "univfd-center-crop224",
    "npr": "forensynths-resize256",
    "cnnspot": "cnnspot-center-crop224",
}


def _with_preset(overrides: dict[str, Any], kind: str, preset: str | None, notes: list[str]) -> str:
    """Put the preset's config into ``overrides``; returns the preset's name (noted)."""
    name = preset or DEFAULT_PRESETS[kind]
    overrides["preprocess"] = get_preset(name).model_dump()
    notes.append(f"test preprocessing: preset {name!r}" + ("" if preset else f" (the official {kind} protocol)"))
    return name


def _with_threshold(overrides: dict[str, Any], threshold: float | None) -> dict[str, Any]:
    if threshold is not None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be a P(fake) between 0 and 1, got {threshold}")
        overrides["threshold"] = threshold
    return overrides


# -- the converters ------------------------------------------------------------------------
def convert_univfd(
    checkpoint: str | os.PathLike,
    output: str | os.PathLike,
    *,
    backbone: str = DEFAULT_CLIP,
    full: bool = False,
    preset: str | None = None,
    threshold: float | None = None,
    overwrite: bool = False,
) -> Path:
    """UnivFD's ``fc_weights.pth`` (``weight`` [1, D], ``bias`` [1]) on the CLIP tower ``backbone``.

    ``backbone`` is a hub id, a local CLIP folder or a preset; its pretrained weights are
    loaded now (their hash is recorded). The folder is adapter-only (the head plus the
    backbone's id and hash) unless ``full``, which stores the whole tower too.
    """
    checkpoint, output = Path(checkpoint), Path(output)
    _prepare_output(output, overwrite)
    obj = load_checkpoint(checkpoint)
    if not _is_state_dict(obj):
        raise CheckpointError(
            f"{checkpoint} is not a state dict: found {_describe(obj)}; expected UnivFD's fc_weights.pth, "
            "a dict {'weight': [1, 768], 'bias': [1]}"
        )
    state, notes = dict(obj), ["layout: bare state dict of the linear head"]
    overrides: dict[str, Any] = {"backbone": backbone}
    preset_name = _with_preset(overrides, "univfd", preset, notes)
    detector = create_detector("univfd", **_with_threshold(overrides, threshold))
    what = f"{checkpoint} does not match UnivFD's head for backbone {backbone!r}"
    head = check_keys(state, {k: v for k, v in detector.fc.state_dict().items()}, what, notes)
    detector.fc.load_state_dict(head)
    return _finish(detector, output, checkpoint, "univfd-official", notes, adapter_only=not full,
                   extra={"backbone": backbone, "preset": preset_name})


def convert_npr(
    checkpoint: str | os.PathLike,
    output: str | os.PathLike,
    *,
    preset: str | None = None,
    threshold: float | None = None,
    overwrite: bool = False,
) -> Path:
    """An official NPR checkpoint (truncated ResNet-50: conv1, bn1, layer1, layer2, fc1)."""
    checkpoint, output = Path(checkpoint), Path(output)
    _prepare_output(output, overwrite)
    state, notes = unwrap_state_dict(load_checkpoint(checkpoint), checkpoint, containers=("model", "state_dict"))
    fc_w, fc_b = state.get("fc.weight"), state.get("fc.bias")
    if (
        "fc1.weight" in state and fc_w is not None and fc_b is not None
        and tuple(fc_w.shape) == (1, 2048) and tuple(fc_b.shape) == (1,)
    ):
        del state["fc.weight"], state["fc.bias"]
        notes.append("dropped fc.weight/fc.bias: the unused Linear(2048, 1) the official trainer attaches")
    what = f"{checkpoint} does not match the official NPR network"
    blocks, width = resnet_arch(state, 2, what)
    if len(blocks) != 2:  # pragma: no cover - resnet_arch returns `stages` entries
        raise CheckpointError(f"{what}: expected 2 stages")
    overrides: dict[str, Any] = {"blocks": blocks, "width": width}
    preset_name = _with_preset(overrides, "npr", preset, notes)
    detector = create_detector("npr", **_with_threshold(overrides, threshold))
    expected = {k[len("net."):]: v for k, v in detector.state_dict().items()}
    state = check_keys(state, expected, f"{what} (blocks {blocks}, width {width})", notes)
    detector.load_weights({f"net.{k}": v for k, v in state.items()})
    return _finish(detector, output, checkpoint, "npr-official", notes,
                   extra={"blocks": list(blocks), "width": width, "preset": preset_name})


def convert_cnnspot(
    checkpoint: str | os.PathLike,
    output: str | os.PathLike,
    *,
    preset: str | None = None,
    threshold: float | None = None,
    overwrite: bool = False,
) -> Path:
    """An official CNNSpot checkpoint (``{"model": torchvision ResNet-50 with fc Linear(2048, 1)}``)."""
    checkpoint, output = Path(checkpoint), Path(output)
    _prepare_output(output, overwrite)
    state, notes = unwrap_state_dict(load_checkpoint(checkpoint), checkpoint, containers=("model",))
    what = f"{checkpoint} does not match the official CNNSpot ResNet-50"
    blocks, width = resnet_arch(state, 4, what)
    overrides: dict[str, Any] = {"blocks": blocks, "width": width}
    preset_name = _with_preset(overrides, "cnnspot", preset, notes)
    detector = create_detector("cnnspot", **_with_threshold(overrides, threshold))
    expected = {k[len("net."):]: v for k, v in detector.state_dict().items()}
    state = check_keys(state, expected, f"{what} (blocks {blocks}, width {width})", notes)
    detector.load_weights({f"net.{k}": v for k, v in state.items()})
    return _finish(detector, output, checkpoint, "cnnspot-official", notes,
                   extra={"blocks": list(blocks), "width": width, "preset": preset_name})
