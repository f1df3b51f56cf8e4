"""ONNX export of a detector, its check against PyTorch, and the ONNX-backed detector.

:func:`export_onnx` writes the **folded** model (``for_inference()``: Effort's SVD residuals
and LoRA merged into plain weights) as one ONNX graph ``pixels (B, 3, H, W) float32 ->
logits (B,) float32`` with a dynamic batch axis (and dynamic height/width when the
detector's test preprocessing keeps the image size, ``test: none``). P(fake) is
``sigmoid(logit)``. The preprocessing, threshold, labels and method go into the file's
``metadata_props`` and into a JSON file beside it (``model.onnx`` -> ``model.json``), so a
consumer needs nothing from ``aigi`` to use the file correctly.

Before anything is written the file is run under ``onnxruntime`` on a few seeded inputs
(batch 1 and batch 3) and compared with the PyTorch float32 model:
``|logit_onnx - logit_torch| <= atol + rtol * |logit_torch|`` with ``atol = rtol = 1e-4``
for float32 and ``1e-2`` for float16 (:data:`TOLERANCES`). With ``atol = rtol = 1e-4`` the
P(fake) of the two agree to better than 1e-4. A file that fails the check is never written.

Graph capture uses the ``torch.export``-based exporter (``dynamo=True``, which needs
``onnxscript``). Measured on torch 2.13 with every registered detector: the legacy
TorchScript exporter (``dynamo=False``) fails on NPR and DFFreq (shape arithmetic on
dynamic sizes), ``torch.export`` fails on the LoRA detectors (a data-dependent branch on
LoRA's ``merged`` flag) and SeLop (``linalg_householder_product`` has no ONNX op). So the
graph is exported from a plain copy (:func:`plain_copy`): parametrizations are baked into
their tensors and folded LoRA layers become ``nn.Linear``; with that, the one exporter
handles every detector.

:class:`OnnxDetector` runs such a file with ``onnxruntime`` and behaves as a
:class:`~aigi.detectors.base.Detector` for the scoring paths (``config`` with preprocess,
threshold and labels; ``preprocess_config()``; ``for_inference()``; calling it on a float32
pixel batch returns logits as a torch tensor).
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from ..detectors.base import CheckpointError, Detector, DetectorConfig
from ..detectors.folder import CALIBRATION_NAME

__all__ = [
    "DTYPES",
    "DEFAULT_OPSET",
    "ExportError",
    "ExportResult",
    "OnnxDetector",
    "TOLERANCES",
    "check_onnx",
    "export_onnx",
    "load_onnx_detector",
    "plain_copy",
    "read_onnx_metadata",
    "sidecar_path",
]

#: weight/compute dtypes an export can have; the graph's input and output stay float32
DTYPES: tuple[str, ...] = ("float32", "float16")
#: ONNX opset written by default (onnxruntime >= 1.14 runs it)
DEFAULT_OPSET = 18
#: (atol, rtol) on the logits, per export dtype, against the float32 PyTorch model
TOLERANCES: dict[str, tuple[float, float]] = {"float32": (1e-4, 1e-4), "float16": (1e-2, 1e-2)}
#: above this many bytes of weights the tensors go into a ``.data`` file beside the graph
#: (a single ONNX protobuf cannot exceed 2 GiB)
EXTERNAL_DATA_BYTES = 1_800_000_000


class ExportError(ValueError):
    """A detector that cannot be exported, or an export that does not match PyTorch."""


@dataclass
class ExportResult:
    """What :func:`export_onnx` wrote and how closely it matches PyTorch."""

    path: Path
    sidecar: Path
    dtype: str
    opset: int
    max_abs_logit_diff: float
    max_abs_prob_diff: float
    tolerance: tuple[float, float]
    size_bytes: int
    metadata: dict[str, str] = field(default_factory=dict)
    external_data: Path | None = None


def sidecar_path(path: str | os.PathLike) -> Path:
    """The JSON written beside an exported file: ``model.onnx`` -> ``model.json``."""
    return Path(path).with_suffix(".json")


# --------------------------------------------------------------------------- export


class _Float16(nn.Module):
    """float32 pixels in, float16 weights and compute, float32 logits out."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner.half()

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.inner(pixels.half()).float()


def plain_copy(detector: Detector) -> nn.Module:
    """A folded deep copy of ``detector`` on the CPU, built from plain modules only, for graph capture.

    Folds (``for_inference``), bakes every parametrization (SeLop's orthogonal basis) into
    a plain tensor, and replaces each folded LoRA layer by an ``nn.Linear`` holding the
    merged weight. The copy computes the same logits; the detector itself is not changed.
    """
    from ..layers.lora import LoRALinear

    model = copy.deepcopy(detector).cpu().for_inference()
    for module in list(model.modules()):
        if parametrize.is_parametrized(module):
            _bake_parametrizations(module)
        for name, child in list(module.named_children()):
            if isinstance(child, LoRALinear):
                if not bool(child.merged):
                    raise ExportError(f"LoRA layer {name} is not folded; call for_inference() first")
                linear = nn.Linear(child.in_features, child.out_features, bias=child.bias is not None)
                linear.weight = child.weight
                linear.bias = child.bias
                setattr(module, name, linear)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def _bake_parametrizations(module: nn.Module) -> None:
    """Replace each parametrized tensor of ``module`` (a copy) by a plain parameter holding its value.

    ``torch.nn.utils.parametrize.remove_parametrizations`` cannot be used on a deep copy: it
    deletes the property from the generated class, which the original module shares.
    """
    values = {name: getattr(module, name).detach().clone() for name in module.parametrizations.keys()}
    base = type(module).__bases__[0]  # parametrize swaps in a generated subclass of the original
    del module.parametrizations
    module.__class__ = base
    for name, value in values.items():
        module.register_parameter(name, nn.Parameter(value, requires_grad=False))


def _metadata(detector: Detector, dtype: str, calibration: dict[str, Any] | None) -> dict[str, str]:
    from .. import __version__

    cfg = detector.config
    meta = {
        "aigi_version": __version__,
        "method": detector.method,
        "preprocess": json.dumps(detector.preprocess_config().model_dump(mode="json"), sort_keys=True),
        "threshold": repr(float(cfg.threshold)),
        "labels": json.dumps(list(cfg.labels)),
        "dtype": dtype,
        "input": "pixels: float32 (batch, 3, height, width), preprocessed as `preprocess` says",
        "output": "logits: float32 (batch,); P(fake) = sigmoid(logit); verdict labels[1] when P(fake) >= threshold",
    }
    if calibration is not None:
        meta["calibration"] = json.dumps(calibration, sort_keys=True)
    return meta


def _check_inputs(size: int, dynamic_hw: bool, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shapes = [(1, 3, size, size), (3, 3, size, size)]
    if dynamic_hw:
        shapes.append((2, 3, size + 16, size - 8))
    return [torch.randn(*s, generator=g) for s in shapes]


def _tolerance(dtype: str, atol: float | None, rtol: float | None) -> tuple[float, float]:
    a, r = TOLERANCES[dtype]
    return (a if atol is None else float(atol), r if rtol is None else float(rtol))


def export_onnx(
    model: Detector | str | os.PathLike,
    output: str | os.PathLike | None = None,
    *,
    dtype: Literal["float32", "float16"] = "float32",
    opset: int = DEFAULT_OPSET,
    atol: float | None = None,
    rtol: float | None = None,
    calibration: dict[str, Any] | None = None,
    revision: str | None = None,
) -> ExportResult:
    """Export the folded detector to ONNX, check it under onnxruntime, then write it.

    ``model`` is a detector or anything :func:`aigi.load_detector` accepts (a folder,
    ``zoo:NAME``, a Hub id with ``revision``); the folder's ``calibration.json``, if any, is
    copied into the metadata. ``output`` defaults to ``<folder>/model.onnx`` for a local folder. Raises :class:`ExportError` when the graph cannot be captured
    or its logits differ from PyTorch's by more than the tolerance of ``dtype``
    (:data:`TOLERANCES`, or ``atol``/``rtol``); nothing is written then.
    """
    if dtype not in DTYPES:
        raise ExportError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if not isinstance(opset, int) or opset < 14:
        raise ExportError(f"opset must be an integer >= 14 (ONNX opset of the graph), got {opset!r}")
    folder: Path | None = None
    if isinstance(model, Detector):
        detector = model
    else:
        from ..detectors.folder import open_model

        opened = open_model(model, revision)
        detector, folder = opened.detector, opened.folder
    if isinstance(detector, OnnxDetector):
        raise ExportError("this detector already is an ONNX file; export the PyTorch detector folder instead")
    if output is None:
        if isinstance(model, Detector) or not Path(model).is_dir():
            raise ExportError("give an output file (FILE.onnx): the default, MODEL_DIR/model.onnx, needs a local "
                              "detector folder")
        output = Path(model) / "model.onnx"
    output = Path(output)
    if output.suffix.lower() != ".onnx":
        raise ExportError(f"output {output} must end in .onnx")
    if calibration is None and folder is not None:
        calibration = _folder_calibration(folder)

    ort = _onnxruntime()
    pre = detector.preprocess_config()
    dynamic_hw = pre.test == "none"
    graph = plain_copy(detector)
    module: nn.Module = _Float16(copy.deepcopy(graph)) if dtype == "float16" else graph
    inputs = _check_inputs(pre.size, dynamic_hw)
    with torch.no_grad():
        references = [graph(x).float() for x in inputs]
    for x, ref in zip(inputs, references):
        if ref.shape != (x.shape[0],):
            raise ExportError(f"{detector.method} returned logits of shape {tuple(ref.shape)}, expected ({x.shape[0]},)")

    meta = _metadata(detector, dtype, calibration)
    weight_bytes = sum(t.numel() * t.element_size() for t in module.state_dict().values())
    external = weight_bytes > EXTERNAL_DATA_BYTES
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        tmp = tmp_dir / output.name
        _capture(module, inputs[1], tmp, opset=opset, dynamic_hw=dynamic_hw, meta=meta, external=external,
                 method=detector.method)
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        tol = _tolerance(dtype, atol, rtol)
        logit_diff, prob_diff = check_onnx(session, inputs, references, tol)
        sidecar = sidecar_path(output)
        sidecar_data = {k: _decode(k, v) for k, v in meta.items()}
        sidecar_data["onnx"] = {"file": output.name, "opset": opset, "input": "pixels", "output": "logits",
                                "dynamic_axes": ["batch", "height", "width"] if dynamic_hw else ["batch"],
                                "max_abs_logit_diff_vs_pytorch": logit_diff, "tolerance": list(tol)}
        (tmp_dir / sidecar.name).write_text(json.dumps(sidecar_data, indent=2) + "\n")
        del session
        data_file = None
        if external:
            data_file = output.with_name(output.name + ".data")
            os.replace(tmp_dir / data_file.name, data_file)
        os.replace(tmp, output)
        os.replace(tmp_dir / sidecar.name, sidecar)
    finally:
        import shutil

        shutil.rmtree(tmp_dir, ignore_errors=True)
    size = output.stat().st_size + (data_file.stat().st_size if data_file is not None else 0)
    return ExportResult(path=output, sidecar=sidecar, dtype=dtype, opset=opset, max_abs_logit_diff=logit_diff,
                        max_abs_prob_diff=prob_diff, tolerance=tol, size_bytes=size, metadata=meta,
                        external_data=data_file)


def _capture(module: nn.Module, example: torch.Tensor, path: Path, *, opset: int, dynamic_hw: bool,
             meta: dict[str, str], external: bool, method: str) -> None:
    batch = torch.export.Dim("batch", min=1)
    dims: dict[int, Any] = {0: batch}
    if dynamic_hw:
        dims.update({2: torch.export.Dim("height", min=8), 3: torch.export.Dim("width", min=8)})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(module, (example,), dynamo=True, input_names=["pixels"],
                                        output_names=["logits"], dynamic_shapes=(dims,), opset_version=opset,
                                        verbose=False)
    except ImportError as err:
        raise ExportError(f"ONNX export needs onnx and onnxscript: pip install 'aigi[onnx]' ({err})") from None
    except Exception as err:  # torch.export / conversion failures carry long, specific messages
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ExportError(f"{method} could not be exported to ONNX: {first}") from err
    if program is None:
        raise ExportError(f"{method}: torch.onnx.export returned no program")
    program.model.metadata_props.update(meta)
    program.save(str(path), external_data=external)


def check_onnx(
    session: Any,
    inputs: Sequence[torch.Tensor],
    references: Sequence[torch.Tensor],
    tolerance: tuple[float, float],
) -> tuple[float, float]:
    """Run ``session`` on ``inputs``; raise :class:`ExportError` unless every logit is within tolerance.

    Returns the largest absolute difference of the logits and of P(fake).
    """
    atol, rtol = tolerance
    name = session.get_inputs()[0].name
    worst_logit = worst_prob = 0.0
    for x, ref in zip(inputs, references):
        got = torch.from_numpy(np.asarray(session.run(None, {name: x.numpy()})[0], dtype=np.float32))
        ref = ref.float()
        if got.shape != ref.shape:
            raise ExportError(f"onnxruntime returned shape {tuple(got.shape)} for input {tuple(x.shape)}, "
                              f"PyTorch {tuple(ref.shape)}")
        if not torch.isfinite(got).all():
            raise ExportError(f"onnxruntime returned non-finite logits for input {tuple(x.shape)}")
        diff = (got - ref).abs()
        worst_logit = max(worst_logit, float(diff.max()))
        worst_prob = max(worst_prob, float((torch.sigmoid(got) - torch.sigmoid(ref)).abs().max()))
        bad = diff > atol + rtol * ref.abs()
        if bad.any():
            raise ExportError(
                f"the ONNX graph does not match PyTorch: largest logit difference {worst_logit:.3g} "
                f"(allowed {atol:g} + {rtol:g}·|logit|) on an input of shape {tuple(x.shape)}; nothing was written"
            )
    return worst_logit, worst_prob


def _folder_calibration(folder: Path) -> dict[str, Any] | None:
    path = folder / CALIBRATION_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ExportError(f"{path} is not valid JSON: {err}") from None
    return data if isinstance(data, dict) else None


def _decode(key: str, value: str) -> Any:
    if key in ("preprocess", "labels", "calibration"):
        return json.loads(value)
    if key == "threshold":
        return float(value)
    return value


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise ExportError("onnxruntime is not installed: pip install 'aigi[onnx]'") from None
    return onnxruntime


# --------------------------------------------------------------------------- the ONNX detector


class OnnxDetector(Detector):
    """A detector exported to ONNX, run with onnxruntime (inference only).

    ``forward(pixels)`` takes the float32 batch the file's preprocessing produces and returns
    the logits as a float32 torch tensor on the input's device.
    """

    def __init__(self, path: str | os.PathLike, metadata: dict[str, Any], *,
                 providers: Sequence[str] | None = None) -> None:
        config = DetectorConfig.model_validate({k: metadata[k] for k in ("preprocess", "threshold", "labels")})
        super().__init__(config)
        self.method = str(metadata.get("method", "onnx"))
        self.config.method = self.method
        self.path = Path(path)
        self.metadata = metadata
        ort = _onnxruntime()
        options = ort.SessionOptions()
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=options,
                                                providers=list(providers or ["CPUExecutionProvider"]))
        except Exception as err:  # onnxruntime raises its own exception types for bad files
            raise CheckpointError(f"onnxruntime cannot load {self.path}: {err}") from None
        self.input_name = self.session.get_inputs()[0].name

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels.detach().to("cpu", torch.float32).contiguous().numpy()
        logits = self.session.run(None, {self.input_name: x})[0]
        return torch.from_numpy(np.asarray(logits, dtype=np.float32)).to(pixels.device)

    def for_inference(self) -> "OnnxDetector":
        """Already folded and frozen: returns itself."""
        return self.eval()

    def __deepcopy__(self, memo: dict[int, Any]) -> "OnnxDetector":
        # the low-precision (bfloat16/float16 autocast) scoring path copies the detector to cast
        # its weights; an ONNX graph has its precision fixed at export
        raise ValueError(
            f"{self.path} is an ONNX file exported in {self.metadata.get('dtype', 'float32')}: it runs in that "
            "precision, so score it with dtype float32 (for half precision, export with --dtype float16)"
        )

    def trainable_parameters(self) -> list[nn.Parameter]:
        return []

    def training_loss(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        raise TypeError(f"{self.path} is an exported ONNX file: it scores images but cannot be trained; "
                        "train the PyTorch detector folder it was exported from")

    def save_pretrained(self, directory: str | os.PathLike, *, adapter_only: bool = False) -> Path:
        raise TypeError(f"{self.path} is an exported ONNX file, not a detector folder; copy the .onnx file "
                        "(and its .json) instead")

    def model_card(self) -> dict[str, Any]:
        return {"method": self.method, "summary": f"ONNX export ({self.metadata.get('dtype', 'float32')})",
                "file": str(self.path), "config": self.config.model_dump(mode="json")}


def read_onnx_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The aigi metadata of an exported file (from its metadata_props, else the JSON beside it)."""
    import onnx

    path = Path(path)
    model = onnx.load(str(path), load_external_data=False)
    raw = {p.key: p.value for p in model.metadata_props}
    if "preprocess" in raw:
        try:
            return {k: _decode(k, v) for k, v in raw.items()}
        except (json.JSONDecodeError, ValueError) as err:
            raise CheckpointError(f"{path} has unreadable aigi metadata: {err}") from None
    side = sidecar_path(path)
    if side.is_file():
        try:
            data = json.loads(side.read_text())
        except json.JSONDecodeError as err:
            raise CheckpointError(f"{side} is not valid JSON: {err}") from None
        if isinstance(data, dict) and "preprocess" in data:
            return data
    raise CheckpointError(
        f"{path} carries no aigi metadata (preprocess, threshold, labels) and has no {side.name} beside it: "
        "export it with `aigi export MODEL_DIR --format onnx`"
    )


def load_onnx_detector(path: str | os.PathLike, *, providers: Sequence[str] | None = None) -> OnnxDetector:
    """An :class:`OnnxDetector` for an exported ``.onnx`` file (clear errors for a wrong path or file)."""
    path = Path(path)
    if path.suffix.lower() != ".onnx":
        raise CheckpointError(f"{path} is not an ONNX file (expected a name ending in .onnx)")
    if not path.is_file():
        raise CheckpointError(f"{path} not found")
    try:
        meta = read_onnx_metadata(path)
    except ImportError:
        raise CheckpointError("reading an ONNX file needs onnx and onnxruntime: pip install 'aigi[onnx]'") from None
    except CheckpointError:
        raise
    except Exception as err:  # onnx raises DecodeError and friends for a damaged file
        raise CheckpointError(f"{path} is not a readable ONNX file: {err}") from None
    return OnnxDetector(path, meta, providers=providers)
