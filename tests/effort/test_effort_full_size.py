"""Effort on the real CLIP ViT-L/14 architecture (random weights): parameter count and adapter size.

One module-scoped build serves every check here: the ViT-L tower (~300 M parameters) and the
wrapping of its 96 attention matrices, built by ``build_full_size()`` as a full checkpoint would
be loaded into, i.e. without the 96 float64 SVDs (same modules, same shapes, same trainable set):
on this shared 2-core CPU they take 40 s (idle) to 150 s (loaded). The SVD itself is checked at
full size on one 1024 × 1024 matrix below, and benchmarks/bench_effort.py times the complete build.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from aigi.detectors.effort import Effort
from aigi.layers.svd_residual import SVDResidualLinear

VIT_L_RESIDUAL = 96 * (1024 + 1 + 1024)  # 196,704: the paper's "0.19 M"
HEAD = 1024 + 1


@pytest.fixture(scope="module")
def effort_vit_l() -> Effort:
    # ~10-25 s (see the module docstring): the count must be measured on ViT-L/14 itself.
    model = Effort.build_full_size()
    assert isinstance(model, Effort) and model.config.backbone.source == "clip-vit-large-patch14-random"
    return model


def test_trainable_count_is_exactly_the_papers(effort_vit_l):
    assert VIT_L_RESIDUAL == 196_704
    assert effort_vit_l.num_trainable() == VIT_L_RESIDUAL + HEAD
    layers = effort_vit_l.svd_layers()
    assert len(layers) == 96
    assert all((layer.out_features, layer.in_features, layer.trainable_rank) == (1024, 1024, 1) for _, layer in layers)
    assert effort_vit_l.head.in_features == 1024  # pooler_output, not the 768-d projection


def test_frozen_main_weights_are_buffers_not_parameters(effort_vit_l):
    params = {n for n, _ in effort_vit_l.named_parameters()}
    assert not any(n.endswith("weight_main") for n in params)
    buffers = [n for n, _ in effort_vit_l.named_buffers() if n.endswith("weight_main")]
    assert len(buffers) == 96
    assert sum(n.endswith("weight_main") for n in effort_vit_l.state_dict()) == 96  # once each


def test_adapter_checkpoint_is_under_one_megabyte(effort_vit_l, tmp_path):
    state = effort_vit_l.adapter_state_dict()
    assert sum(t.numel() for t in state.values()) == VIT_L_RESIDUAL + HEAD
    effort_vit_l.save_pretrained(tmp_path / "a", adapter_only=True)
    size = (tmp_path / "a" / "model.safetensors").stat().st_size
    assert (VIT_L_RESIDUAL + HEAD) * 4 < size < 1_000_000  # ~0.79 MB of float32 + a small header


def test_svd_split_of_one_full_size_matrix(effort_vit_l):
    # one real 1024 × 1024 attention weight (W_main still holds W: the fixture skipped the SVD)
    layer = effort_vit_l.svd_layers()[0][1]
    lin = nn.Linear(1024, 1024)
    with torch.no_grad():
        lin.weight.copy_(layer.weight_main)
        lin.bias.copy_(layer.bias)
    m = SVDResidualLinear.from_linear(lin, trainable_rank=1)
    x = torch.randn(8, 1024)
    with torch.no_grad():
        torch.testing.assert_close(m(x), lin(x), atol=1e-5, rtol=1e-5)
    # (u, s, v) is a singular triplet of W: W vᵀ = s u and Wᵀ u = s vᵀ
    w, u, s, v = lin.weight.detach(), m.U_res.detach(), m.S_res.detach(), m.V_res.detach()
    torch.testing.assert_close(w @ v.T, u * s, atol=1e-5, rtol=0)
    torch.testing.assert_close(w.T @ u, v.T * s, atol=1e-5, rtol=0)
    # W_main = W − u s vᵀ keeps the other 1023 directions and annihilates v
    assert torch.linalg.matrix_norm(m.weight_main @ v.T) < 1e-4 * torch.linalg.matrix_norm(w)
