"""The Effort detector on the tiny CLIP preset: parameters, heads, losses, checkpoints, folding."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

import aigi
from aigi.backbones.clip import BackboneMismatch, ClipBackboneConfig, load_clip_vision, state_sha256
from aigi.detectors.base import CheckpointError
from aigi.detectors.effort import Effort, EffortConfig
from aigi.layers.svd_residual import SVDResidualLinear

TINY_HIDDEN = 16  # tiny preset: hidden 16, 2 blocks, projection 8


def tiny(**kw) -> Effort:
    return aigi.create_detector("effort", backbone="tiny", **kw)


def batch(n: int = 4, size: int = 32) -> dict:
    g = torch.Generator().manual_seed(1)
    return {"pixels": torch.randn(n, 3, size, size, generator=g), "label": torch.tensor([0.0, 1.0] * (n // 2)),
            "index": torch.arange(n)}


def train_steps(model, steps: int = 2, lr: float = 0.05) -> None:
    opt = torch.optim.Adam(model.trainable_parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        model.training_loss(batch())["loss"].backward()
        opt.step()
    model.eval()


def test_trainable_parameters_are_the_residuals_and_the_head():
    m = tiny()
    names = {n for n, p in m.named_parameters() if p.requires_grad}
    assert names == {f"backbone.vision_model.encoder.layers.{b}.self_attn.{p}.{f}"
                     for b in range(2) for p in ("q_proj", "k_proj", "v_proj", "out_proj")
                     for f in ("U_res", "S_res", "V_res")} | {"head.weight", "head.bias"}
    assert m.num_trainable() == 8 * (TINY_HIDDEN + 1 + TINY_HIDDEN) + (TINY_HIDDEN + 1)
    assert len(m.svd_layers()) == 8 and all(layer.trainable_rank == 1 for _, layer in m.svd_layers())


def test_wrapping_keeps_the_backbone_function_and_uses_pooler_output():
    m = tiny().eval()
    plain = load_clip_vision(ClipBackboneConfig(source="tiny")).eval()
    x = batch()["pixels"]
    with torch.no_grad():
        pooled = plain.vision_model(pixel_values=x).pooler_output
        torch.testing.assert_close(m.pooled(x), pooled, atol=1e-5, rtol=1e-5)
        assert m.head.in_features == TINY_HIDDEN  # 1024 on ViT-L/14: pooler_output, not the projection
        torch.testing.assert_close(m(x), m.head(pooled).squeeze(-1), atol=1e-5, rtol=1e-5)


def test_two_logit_head_returns_l1_minus_l0_and_trains_with_cross_entropy():
    m = tiny(head="two_logit").eval()
    b = batch()
    with torch.no_grad():
        two = m.head_logits(b["pixels"])
        assert two.shape == (4, 2)
        torch.testing.assert_close(m(b["pixels"]), two[:, 1] - two[:, 0])
        out = m.training_loss(b)
        torch.testing.assert_close(out["ce"], F.cross_entropy(two, b["label"].long()))
        # softmax CE on two logits == BCE on their difference
        torch.testing.assert_close(out["loss"], F.binary_cross_entropy_with_logits(two[:, 1] - two[:, 0], b["label"]))
    assert m.num_trainable() == 8 * 33 + 2 * TINY_HIDDEN + 2


def test_default_loss_is_the_classification_loss_only():
    out = tiny().training_loss(batch())
    assert set(out) == {"loss", "bce"}
    torch.testing.assert_close(out["loss"].detach(), out["bce"])


@pytest.mark.parametrize("variant", ["paper", "released"])
def test_regularisers_combine_as_cls_plus_weight_times_mean(variant):
    m = tiny(orthogonality=variant, keep_singular_values=True, reg_weight=0.5)
    layers = [layer for _, layer in m.svd_layers()]
    with torch.no_grad():
        for layer in layers:
            layer.U_res.add_(0.1)
            layer.S_res.add_(0.5)
    out = m.training_loss(batch())
    orth = torch.stack([layer.orthogonality_loss(variant) for layer in layers]).mean()
    ksv = torch.stack([layer.keep_sv_loss() for layer in layers]).mean()
    assert out["orth"] > 1e-3 and out["ksv"] > 1e-3
    torch.testing.assert_close(out["orth"], orth.detach())
    torch.testing.assert_close(out["loss"].detach(), out["bce"] + 0.5 * (orth + ksv).detach())
    out["loss"].backward()
    frozen = [n for n, p in m.named_parameters() if not p.requires_grad and p.grad is not None]
    assert frozen == []


def test_weights_hash_is_that_of_the_original_backbone():
    m = tiny()
    original = state_sha256(load_clip_vision(ClipBackboneConfig(source="tiny")))
    assert m.config.backbone.weights_sha256 == original
    # the wrapped tower holds other tensors (W_main buffers, residual factors), hence another hash
    assert any(k.endswith("weight_main") for k in m.backbone.state_dict())


def test_adapter_checkpoint_holds_only_residuals_and_head_and_reloads_identically(tmp_path):
    m = tiny()
    train_steps(m)
    x = batch()["pixels"]
    with torch.no_grad():
        ref = m(x)
    m.save_pretrained(tmp_path / "a", adapter_only=True)
    tensors = load_file(tmp_path / "a" / "model.safetensors")
    suffixes = {k.rsplit(".", 1)[-1] for k in tensors if k.startswith("backbone.")}
    assert suffixes == {"U_res", "S_res", "V_res"}
    assert {k for k in tensors if not k.startswith("backbone.")} == {"head.weight", "head.bias"}
    assert sum(v.numel() for v in tensors.values()) == m.num_trainable()
    meta = json.loads((tmp_path / "a" / "config.json").read_text())
    assert meta["adapter_only"] is True and meta["backbone"]["source"] == "tiny"
    assert meta["backbone"]["weights_sha256"] == m.config.backbone.weights_sha256
    again = aigi.load_detector(tmp_path / "a").eval()
    assert isinstance(again, Effort) and again.config == m.config
    with torch.no_grad():
        assert torch.equal(again(x), ref)  # W_main recomputed by the same deterministic SVD


def test_adapter_on_a_different_backbone_is_refused(tmp_path):
    tiny().save_pretrained(tmp_path / "a", adapter_only=True)
    path = tmp_path / "a" / "config.json"
    meta = json.loads(path.read_text())
    meta["backbone"]["weights_sha256"] = "0" * 64
    path.write_text(json.dumps(meta))
    with pytest.raises(BackboneMismatch, match="not the ones this checkpoint was trained on"):
        aigi.load_detector(tmp_path / "a")


def test_full_checkpoint_loads_without_any_svd(tmp_path, monkeypatch):
    m = tiny(orthogonality="paper", keep_singular_values=True)
    train_steps(m)
    m.save_pretrained(tmp_path / "f")
    x = batch()["pixels"]
    with torch.no_grad():
        ref = m(x)

    def no_svd(*a, **k):
        raise AssertionError("a full checkpoint must not need an SVD")

    monkeypatch.setattr(torch.linalg, "svd", no_svd)
    again = aigi.load_detector(tmp_path / "f").eval()
    with torch.no_grad():
        assert torch.equal(again(x), ref)
    monkeypatch.undo()
    # the regularisers still work after a full reload (bases rebuilt from W_main, norms saved)
    out = again.train().training_loss(batch())
    torch.testing.assert_close(out["ksv"], m.train().training_loss(batch())["ksv"], atol=1e-5, rtol=1e-4)


def test_fold_for_inference_and_saving_a_folded_model(tmp_path):
    m = tiny()
    train_steps(m)
    x = batch()["pixels"]
    with torch.no_grad():
        ref = m(x)
    m.for_inference()
    assert not m.svd_layers() and not any(isinstance(mod, SVDResidualLinear) for mod in m.modules())
    assert m.config.folded
    with torch.no_grad():
        torch.testing.assert_close(m(x), ref, atol=1e-5, rtol=1e-5)
    with pytest.raises(CheckpointError, match="folded"):
        m.save_pretrained(tmp_path / "a", adapter_only=True)
    m.save_pretrained(tmp_path / "f")
    again = aigi.load_detector(tmp_path / "f").eval()
    assert again.config.folded and not again.svd_layers()
    with torch.no_grad():
        assert torch.equal(again(x), m(x))


@pytest.mark.parametrize("targets,count,per_layer", [("mlp", 4, 32 + 1 + 16), ("both", 12, None)])
def test_targets_and_rank_are_configuration(targets, count, per_layer):
    m = tiny(targets=targets, trainable_rank=2)
    assert len(m.svd_layers()) == count
    assert all(layer.trainable_rank == 2 for _, layer in m.svd_layers())
    if per_layer:
        assert m.num_trainable() == 4 * 2 * per_layer + TINY_HIDDEN + 1
    assert tiny(r=10).svd_layers()[0][1].trainable_rank == 6


def test_bad_options_are_rejected_with_a_clear_message():
    with pytest.raises(ValueError, match="neither attention/mlp/both nor a valid regex"):
        EffortConfig(targets="[oops")
    with pytest.raises(ValueError, match="selects no nn.Linear"):
        tiny(targets=r"no\.such\.layer")
    with pytest.raises(ValueError, match="r must satisfy"):
        tiny(r=16)
