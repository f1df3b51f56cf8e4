"""LoRA layer: exact identity at init, folding, disabling, and adapter-only checkpoints."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import aigi
from aigi.detectors import load_detector
from aigi.detectors.base import CheckpointError
from aigi.layers.lora import LoRAConfig, LoRALinear, fold_lora, inject_lora, lora_disabled, lora_layers


def _randomise_b(model: nn.Module, seed: int = 3) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(model):
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g) * 0.5)


def test_init_is_exactly_the_base_layer():
    base = nn.Linear(7, 5)
    x = torch.randn(3, 7)
    ref = base(x)
    layer = LoRALinear(base, rank=2, alpha=2.0, dropout=0.0)
    assert torch.equal(layer(x), ref)
    assert torch.count_nonzero(layer.lora_B) == 0 and torch.count_nonzero(layer.lora_A) > 0
    assert not layer.weight.requires_grad and layer.lora_A.requires_grad and layer.lora_B.requires_grad


def test_forward_formula_and_scalings():
    base = nn.Linear(6, 4)
    x = torch.randn(5, 6)
    for scaling, scale in (("alpha/r", 8.0 / 4), ("alpha/sqrt(r)", 8.0 / math.sqrt(4))):
        layer = LoRALinear(base, rank=4, alpha=8.0, scaling=scaling)
        with torch.no_grad():
            layer.lora_B.normal_()
        expected = x @ base.weight.T + base.bias + scale * (x @ layer.lora_A.T @ layer.lora_B.T)
        torch.testing.assert_close(layer(x), expected)
        assert layer.scale == pytest.approx(scale)


def test_fold_matches_unfolded_and_is_idempotent():
    base = nn.Linear(6, 4)
    layer = LoRALinear(base, rank=3, alpha=6.0, dropout=0.5).eval()
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.randn(9, 6)
    ref = layer(x)
    layer.fold()
    assert bool(layer.merged)
    torch.testing.assert_close(layer(x), ref, rtol=1e-5, atol=1e-6)
    w = layer.weight.clone()
    layer.fold()
    assert torch.equal(layer.weight, w)


def test_dropout_only_in_training():
    layer = LoRALinear(nn.Linear(16, 16), rank=2, alpha=2.0, dropout=0.8)
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.randn(4, 16)
    layer.eval()
    assert torch.equal(layer(x), layer(x))
    layer.train()
    assert not torch.equal(layer(x), layer(x))


def test_disabled_gives_the_frozen_base():
    base = nn.Linear(6, 4)
    x = torch.randn(3, 6)
    ref = base(x)
    root = nn.Sequential(nn.Identity())
    root.q_proj = base
    (layer,) = inject_lora(root, LoRAConfig(rank=2, targets=("q_proj",)))
    with torch.no_grad():
        layer.lora_B.normal_()
    assert not torch.equal(root.q_proj(x), ref)
    with lora_disabled(root):
        assert torch.equal(root.q_proj(x), ref)
    assert layer.enabled


def test_inject_errors_and_rank_zero():
    assert inject_lora(nn.Linear(2, 2), LoRAConfig(rank=0)) == []
    with pytest.raises(ValueError, match="no nn.Linear named"):
        inject_lora(nn.Sequential(nn.Linear(2, 2)), LoRAConfig(targets=("q_proj",)))


def test_detector_lora_on_every_qkv_and_init_equals_frozen_backbone():
    model = aigi.create_detector("dgsnet", backbone="tiny").eval()
    layers = lora_layers(model.backbone)
    n_blocks = model.backbone.config.num_hidden_layers
    assert len(layers) == 3 * n_blocks
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        student = model.embeds(x)
        with lora_disabled(model.backbone):
            frozen = model.embeds(x)
    assert torch.equal(student, frozen)


@pytest.mark.parametrize("name", ["dgsnet", "nsnet", "pinclip"])
def test_folded_and_unfolded_logits_match(name):
    model = aigi.create_detector(name, backbone="tiny", **({"k": 2} if name == "nsnet" else {})).eval()
    _randomise_b(model)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
        with lora_disabled(model.backbone):
            base = model(x)
        assert not torch.allclose(ref, base)  # the adapters do change the output
        assert fold_lora(model.backbone) == 3 * model.backbone.config.num_hidden_layers
        torch.testing.assert_close(model(x), ref, rtol=1e-5, atol=1e-5)


def test_adapter_only_checkpoint_holds_lora_head_and_no_towers(tmp_path):
    model = aigi.create_detector("dgsnet", backbone="tiny").eval()
    _randomise_b(model)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
    keys = set(model.adapter_state_dict())
    assert {k for k in keys if k.startswith("text_encoder.")} == set()
    assert {k for k in keys if k.startswith("backbone.")} == {k for k in model.state_dict() if ".lora_" in k}
    assert {"img_fc.weight", "text_fc.weight", "img_frozen_fc.weight"} <= keys
    model.save_pretrained(tmp_path / "a", adapter_only=True)
    again = load_detector(tmp_path / "a").eval()
    with torch.no_grad():
        assert torch.equal(again(x), ref)


def test_folded_model_full_checkpoint_reloads_and_adapter_save_refuses(tmp_path):
    model = aigi.create_detector("nsnet", backbone="tiny", k=2)
    _randomise_b(model)
    x = torch.randn(2, 3, 32, 32)
    model.for_inference()
    with torch.no_grad():
        ref = model(x)
    # after for_inference nothing requires grad, but an unfolded adapter save would still hold LoRA
    with pytest.raises(CheckpointError, match="folded"):
        model.save_pretrained(tmp_path / "a", adapter_only=True)
    model.save_pretrained(tmp_path / "f")
    again = load_detector(tmp_path / "f").eval()
    assert all(bool(layer.merged) for layer in lora_layers(again.backbone))
    with torch.no_grad():
        assert torch.equal(again(x), ref)
