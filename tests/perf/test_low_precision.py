"""bfloat16 / float16 inference: the low-precision copy casts once, keeps the function, leaves the original alone."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers.activations import QuickGELUActivation

import aigi
from aigi.detectors import detector_class, list_detectors
from aigi.inference.fast import inference_forward, low_precision_copy


def tiny(name: str):
    return aigi.create_detector(name, **detector_class(name).tiny_overrides).for_inference()


def pixels_for(model, n: int = 4) -> torch.Tensor:
    s = model.config.preprocess.size
    return torch.randn(n, 3, s, s, generator=torch.Generator().manual_seed(3))


def test_copy_converts_linears_once_shares_the_rest_and_leaves_the_original_alone():
    model = tiny("univfd")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    low = low_precision_copy(model, torch.bfloat16)
    linears = [m for m in low.modules() if isinstance(m, nn.Linear)]
    assert linears and all(m.weight.dtype == torch.bfloat16 for m in linears)
    # CLIP's quick-GELU MLPs were rewritten; nothing of the kind is left
    assert not any(isinstance(m, QuickGELUActivation) for m in low.modules())
    # layer norms (not linear) are the original tensors, not copies
    ln_orig = next(m for m in model.modules() if isinstance(m, nn.LayerNorm))
    ln_low = next(m for m in low.modules() if isinstance(m, nn.LayerNorm))
    assert ln_low.weight is ln_orig.weight
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) and after[k].dtype == before[k].dtype for k in before)
    assert any(isinstance(m, QuickGELUActivation) for m in model.modules())


def test_the_rewrite_is_the_same_function_in_float32():
    """Run at float32, the copy differs from the original only by float rounding (MLP rewrite, hooks)."""
    model = tiny("univfd")
    x = pixels_for(model)
    with torch.inference_mode():
        ref = model(x)
        out = low_precision_copy(model, torch.float32)(x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(list_detectors()))
def test_bfloat16_logits_within_1e_2_of_float32(name):
    model = tiny(name)
    x = pixels_for(model)
    with torch.inference_mode():
        ref = model(x)
        out = inference_forward(model, dtype="bfloat16")(x)
        again = model(x)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    scale = max(1.0, float(ref.abs().max()))  # 1e-2 absolute, relative for logits above 1
    assert float((out - ref).abs().max()) <= 1e-2 * scale
    # the float32 model is untouched (CNNs were switched to channels-last: float rounding only)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    torch.testing.assert_close(again, ref, rtol=1e-5, atol=1e-6)


def test_float16_runs_the_same_copy():
    model = tiny("univfd")
    x = pixels_for(model)
    with torch.inference_mode():
        ref = model(x)
        out = inference_forward(model, dtype="float16")(x)
    assert out.dtype == torch.float32
    assert float((out - ref).abs().max()) <= 1e-2
