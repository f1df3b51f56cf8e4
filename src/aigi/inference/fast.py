"""The batch -> logits step with the speed options: device, dtype, memory format, compile.

Every path that scores images (``eval``, ``detect``, ``bench``, ``serve``, the Python API)
gets its forward function from :func:`inference_forward`, so a speed option means the same
thing everywhere. What each option measured is in docs/performance.md.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..detectors.base import Detector

#: compute dtypes of inference: float32, or bfloat16 / float16 autocast
INFERENCE_DTYPES = ("float32", "bfloat16", "float16")


def is_convolutional(module: nn.Module) -> bool:
    """True when ``module`` has a convolution other than a ViT patch embedding (kernel == stride > 1)."""
    return any(
        isinstance(m, nn.Conv2d) and not (m.kernel_size == m.stride and max(m.kernel_size) > 1)
        for m in module.modules()
    )


#: quick-GELU's constant: x·σ(1.702 x) = SiLU(1.702 x) / 1.702
_QUICK_GELU = 1.702


class _SiLU(nn.Module):
    """SiLU, in place when no gradient is recorded (the input is a fresh linear output)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(x, inplace=not torch.is_grad_enabled())


def _to_dtype_hook(dtype: torch.dtype) -> Callable[..., torch.Tensor]:
    def hook(module: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
        return output.to(dtype)

    return hook


def low_precision_copy(detector: nn.Module, dtype: torch.dtype) -> nn.Module:
    """A copy of ``detector`` for autocast inference in ``dtype``, with the casts done once.

    What autocast alone repeats on every call is done here once (measured in docs/performance.md):

    * every ``nn.Linear``'s weight and bias are converted to ``dtype`` (autocast casts them on
      every call); all other tensors are shared with the original, not copied;
    * CLIP's MLP ``fc2(quick_gelu(fc1 x))`` becomes ``(fc2 / 1.702)(SiLU((1.702 · fc1) x))``, the
      same function with one element-wise pass (SiLU, in place) instead of three;
    * the two layer norms of each CLIP encoder layer, which feed only linear layers, return
      ``dtype`` (one cast per norm instead of one per consuming projection). The residual
      stream, the norms' arithmetic and everything autocast keeps in float32 stay float32.

    Call the copy under ``torch.autocast(..., dtype=dtype)``. The original is not modified. A
    detector that cannot be copied says why (an ONNX file's precision is fixed at export).
    """
    from transformers.activations import QuickGELUActivation
    from transformers.models.clip.modeling_clip import CLIPEncoderLayer, CLIPMLP

    shared: dict[int, Any] = {}
    for mod in detector.modules():
        if not isinstance(mod, nn.Linear):
            for t in (*mod.parameters(recurse=False), *mod.buffers(recurse=False)):
                shared[id(t)] = t
    low = copy.deepcopy(detector, memo=shared)
    with torch.no_grad():
        for mod in low.modules():
            if isinstance(mod, CLIPMLP) and isinstance(mod.activation_fn, QuickGELUActivation) \
                    and isinstance(mod.fc1, nn.Linear) and isinstance(mod.fc2, nn.Linear):
                mod.fc1.weight.mul_(_QUICK_GELU)  # still the float32 copies: scaled before rounding
                if mod.fc1.bias is not None:
                    mod.fc1.bias.mul_(_QUICK_GELU)
                mod.fc2.weight.div_(_QUICK_GELU)
                mod.activation_fn = _SiLU()
            elif isinstance(mod, CLIPEncoderLayer):
                mod.layer_norm1.register_forward_hook(_to_dtype_hook(dtype))
                mod.layer_norm2.register_forward_hook(_to_dtype_hook(dtype))
        for mod in low.modules():
            if isinstance(mod, nn.Linear):
                mod.to(dtype)
    return low


def inference_forward(
    detector: Detector,
    *,
    device: str | torch.device = "cpu",
    dtype: str = "float32",
    channels_last: bool | None = None,
    compile: bool | str = False,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The batch -> logits function scoring runs, with the speed options applied.

    Moves the detector to ``device`` in eval mode; ``channels_last`` (None: only for
    convolutional networks, where it measured faster) converts weights and inputs to NHWC;
    ``dtype="bfloat16"`` (or ``"float16"``) runs a :func:`low_precision_copy` of the detector
    under autocast and returns float32 logits (the detector itself stays float32); ``compile`` wraps
    the detector in ``torch.compile`` (the first batch of each shape pays the compilation;
    a string names the backend, e.g. ``"eager"`` to check tracing without code generation).
    Call it under ``torch.inference_mode()``.
    """
    if dtype not in INFERENCE_DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(INFERENCE_DTYPES)}, got {dtype!r}")
    device = torch.device(device)
    detector = detector.to(device)
    detector.eval()
    nhwc = is_convolutional(detector) if channels_last is None else bool(channels_last)
    if nhwc:
        detector = detector.to(memory_format=torch.channels_last)
    low = dtype in ("bfloat16", "float16")
    net: nn.Module = low_precision_copy(detector, getattr(torch, dtype)) if low else detector
    module: Callable[[torch.Tensor], torch.Tensor] = net
    if compile:
        module = torch.compile(net, backend=compile) if isinstance(compile, str) else torch.compile(net)
    fmt = torch.channels_last if nhwc else torch.contiguous_format

    def forward(pixels: torch.Tensor) -> torch.Tensor:
        pixels = pixels.to(device, non_blocking=True).contiguous(memory_format=fmt)
        if low:
            with torch.autocast(device.type, dtype=getattr(torch, dtype)):
                return module(pixels).float()
        return module(pixels)

    return forward
