"""Import official DFFreq checkpoints (either release) into detector folders.

Both releases save a *bare* ``state_dict`` of their ``resnet50`` (``test.py`` loads it with
``strict=True``). Their keys, as written by the released code:

* **current** (AIGIBench ``detector_codes/DFFreq-main``, standalone HorizonTEL/DFFreq-main):
  ``FreqLCBlock.{norm1.body, dwt_attn, fft_attn, fft_scale}``, the attention gate named
  ``mlp``;
* **2025-05** (the May 2025 copy): the same block under ``DFFreq.`` with the gate named ``GMLP``;

and in both the truncated ResNet (``conv1``, ``bn1``, ``layer1``, ``layer2``, ``fc1``) plus the
fixed Haar filters of ``pytorch_wavelets`` stored as buffers, twice: ``dwt_transform.*`` /
``idwt_transform.*`` at the top (built but unused by the forward) and inside the block. The
filters are checked to be Haar (every tap ±1/√2) and dropped: :mod:`aigi.layers.frequency`
computes the same transform by slicing. Any other unknown key, and any missing one, is an error
that lists them. The release is read from the names; it decides the fusion weights and the
test preprocessing written into the folder (``dffreq-center-crop256`` for the current release,
``forensynths-resize256`` for May 2025), unless ``preset`` names another.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping

import torch

from ..data.transforms import preset as get_preset
from ..detectors.base import CheckpointError
from ..detectors.dffreq import RELEASES
from ..detectors.registry import create_detector
from .baselines import (_finish, _prepare_output, _short, _with_threshold, check_keys, load_checkpoint,
                        resnet_arch, unwrap_state_dict)

__all__ = ["convert_dffreq", "map_official_state"]

_BLOCK_PREFIX = {"current": "FreqLCBlock.", "2025-05": "DFFreq."}
_GATE = {"current": ".mlp.", "2025-05": ".GMLP."}
_FILTERS = {
    "dwt_transform": ("h0_col", "h1_col", "h0_row", "h1_row"),
    "idwt_transform": ("g0_col", "g1_col", "g0_row", "g1_row"),
}
_RESNET = ("conv1.", "bn1.", "layer1.", "layer2.", "fc1.")


def _release_of(state: Mapping[str, torch.Tensor]) -> str:
    found = {r for r, prefix in _BLOCK_PREFIX.items() if any(k.startswith(prefix) for k in state)}
    if len(found) != 1:
        what = "both" if found else "neither"
        raise CheckpointError(
            f"not a DFFreq checkpoint: it holds {what} of the frequency blocks 'FreqLCBlock.*' (current release) "
            f"and 'DFFreq.*' (May 2025); keys found: {_short(sorted(state), 8)}"
        )
    return found.pop()


def _check_filter(key: str, value: torch.Tensor) -> None:
    taps = value.detach().double().abs().flatten()
    if value.numel() != 2 or not torch.allclose(taps, torch.full_like(taps, 1 / math.sqrt(2)), atol=1e-6):
        raise CheckpointError(f"{key} is not a Haar filter (expected 2 taps of ±1/√2, got {value.flatten().tolist()})")


def map_official_state(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str, list[str]]:
    """``(renamed state, release, notes)`` for an official DFFreq state dict (``module.`` already removed or not)."""
    state = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}
    release = _release_of(state)
    prefix, gate = _BLOCK_PREFIX[release], _GATE[release]
    other_gate = _GATE["2025-05" if release == "current" else "current"]
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    dropped = 0
    for key, value in state.items():
        inner = key[len(prefix):] if key.startswith(prefix) else key
        head, _, leaf = inner.partition(".")
        if head in _FILTERS and leaf in _FILTERS[head]:
            _check_filter(key, value)
            dropped += 1
            continue
        if key.startswith(prefix):
            if other_gate in "." + inner:
                unknown.append(key)
                continue
            out["freq." + ("." + inner).replace(gate, ".gate.").replace(".norm1.body.", ".norm1.")[1:]] = value
        elif key.startswith(_RESNET):
            out["net." + key] = value
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(f"unexpected keys in a DFFreq ({release}) checkpoint: {_short(sorted(unknown))}")
    notes = [f"release: {release} (frequency block {prefix[:-1]!r}, gate {gate.strip('.')!r})"]
    if dropped:
        notes.append(f"dropped {dropped} pytorch_wavelets Haar filter buffers (checked, recomputed by slicing)")
    return out, release, notes


def convert_dffreq(
    checkpoint: str | os.PathLike,
    output: str | os.PathLike,
    *,
    preset: str | None = None,
    threshold: float | None = None,
    overwrite: bool = False,
) -> Path:
    """An official DFFreq checkpoint (current or May 2025 release) → a detector folder at ``output``.

    The release is detected from the key names; ``preset`` overrides the release's test
    preprocessing. Returns ``output``; ``conversion.json`` records release, preset and notes.
    """
    checkpoint, output = Path(checkpoint), Path(output)
    _prepare_output(output, overwrite)
    raw, notes = unwrap_state_dict(load_checkpoint(checkpoint), checkpoint, containers=("model", "state_dict"))
    mapped, release, more = map_official_state(raw)
    notes += more
    what = f"{checkpoint} does not match the official DFFreq network"
    blocks, width = resnet_arch({k[len("net."):]: v for k, v in mapped.items() if k.startswith("net.")}, 2, what)
    preset_name = preset or RELEASES[release][2]
    overrides = _with_threshold({"release": release, "blocks": blocks, "width": width,
                                 "preprocess": get_preset(preset_name).model_dump()}, threshold)
    detector = create_detector("dffreq", **overrides)
    mapped = check_keys(mapped, detector.state_dict(), f"{what} ({release}, blocks {blocks}, width {width})", notes)
    detector.load_weights(mapped)
    notes.append(f"test preprocessing: preset {preset_name!r}")
    return _finish(detector, output, checkpoint, "dffreq-official", notes,
                   extra={"release": release, "preset": preset_name, "blocks": list(blocks), "width": width})
