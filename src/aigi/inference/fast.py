"""The batch -> logits step with the speed options: device, dtype, memory format, compile.

Every path that scores images (``eval``, ``detect``, ``bench``, ``serve``, the Python API)
gets its forward function from :func:`inference_forward`, so a speed option means the same
thing everywhere. What each option measured is in docs/performance.md.
"""

from __future__ import annotations

from typing import Callable

import torch
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
    ``dtype="bfloat16"`` runs under autocast and returns float32 logits; ``compile`` wraps
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
    module: Callable[[torch.Tensor], torch.Tensor] = detector
    if compile:
        module = torch.compile(detector, backend=compile) if isinstance(compile, str) else torch.compile(detector)
    fmt = torch.channels_last if nhwc else torch.contiguous_format

    def forward(pixels: torch.Tensor) -> torch.Tensor:
        pixels = pixels.to(device, non_blocking=True).contiguous(memory_format=fmt)
        if dtype in ("bfloat16", "float16"):
            with torch.autocast(device.type, dtype=getattr(torch, dtype)):
                return module(pixels).float()
        return module(pixels)

    return forward
