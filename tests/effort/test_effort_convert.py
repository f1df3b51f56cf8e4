"""Importing official Effort checkpoints: both released layouts, built here from a tiny CLIP tower."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

import aigi
from aigi.backbones.clip import ClipBackboneConfig, load_clip_vision
from aigi.convert.effort import convert_effort_official
from aigi.detectors.base import CheckpointError
from aigi.layers.svd_residual import ATTENTION_PATTERN


def official_vision_state(rank: int = 1, *, with_factors: bool) -> dict[str, torch.Tensor]:
    """The vision tower as the official code stores it after some training (names included)."""
    vm = load_clip_vision(ClipBackboneConfig(source="tiny"), pretrained=False).vision_model
    g = torch.Generator().manual_seed(7)
    out: dict[str, torch.Tensor] = {}
    for key, value in vm.state_dict().items():
        layer, _, attr = key.rpartition(".")
        if not re.fullmatch(ATTENTION_PATTERN, layer) or attr != "weight":
            out[key] = value.clone()
            continue
        u, s, vh = torch.linalg.svd(value, full_matrices=False)  # float32, as the official code
        r = s.numel() - rank
        out[f"{layer}.weight_main"] = (u[:, :r] * s[:r]) @ vh[:r]
        out[f"{layer}.U_residual"] = u[:, r:] + 0.1 * torch.randn(u[:, r:].shape, generator=g)
        out[f"{layer}.S_residual"] = s[r:] * 1.5
        out[f"{layer}.V_residual"] = vh[r:] + 0.1 * torch.randn(vh[r:].shape, generator=g)
        if with_factors:
            out[f"{layer}.U_r"], out[f"{layer}.S_r"], out[f"{layer}.V_r"] = u[:, :r], s[:r], vh[:r]
    return out


def reference_logits(vision: dict[str, torch.Tensor], head_w: torch.Tensor, head_b: torch.Tensor,
                     x: torch.Tensor) -> torch.Tensor:
    """Logits computed straight from the official tensors on a plain tower."""
    vm = load_clip_vision(ClipBackboneConfig(source="tiny"), pretrained=False).vision_model.eval()
    plain = {}
    for key, value in vision.items():
        layer, _, attr = key.rpartition(".")
        if attr == "weight_main":
            w = value + (vision[f"{layer}.U_residual"] * vision[f"{layer}.S_residual"]) @ vision[f"{layer}.V_residual"]
            plain[f"{layer}.weight"] = w
        elif attr not in ("U_residual", "S_residual", "V_residual", "U_r", "S_r", "V_r", "position_ids"):
            plain[key] = value
    vm.load_state_dict(plain, strict=True)
    with torch.no_grad():
        logits = F.linear(vm(pixel_values=x).pooler_output, head_w, head_b)
    return logits[:, 1] - logits[:, 0] if logits.shape[1] == 2 else logits[:, 0]


def pixels() -> torch.Tensor:
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))


def deepfakebench_file(tmp_path, rank: int = 1):
    vision = official_vision_state(rank, with_factors=True)
    head_w, head_b = torch.randn(2, 16), torch.randn(2)
    state = {f"module.backbone.{k}": v for k, v in vision.items()}
    state["module.backbone.embeddings.position_ids"] = torch.arange(17)[None]  # old transformers saved it
    state["module.head.weight"], state["module.head.bias"] = head_w, head_b
    path = tmp_path / "effort_dfb.pth"
    torch.save(state, path)
    return path, vision, head_w, head_b


def univfd_file(tmp_path):
    vision = official_vision_state(1, with_factors=False)
    head_w, head_b = torch.randn(1, 16), torch.randn(1)
    model = {f"model.vision_model.{k}": v for k, v in vision.items()}
    model["model.visual_projection.weight"] = torch.randn(8, 16)
    model["model.text_model.embeddings.token_embedding.weight"] = torch.randn(10, 16)
    model["model.text_projection.weight"] = torch.randn(8, 16)
    model["model.logit_scale"] = torch.tensor(2.6592)
    model["fc.weight"], model["fc.bias"] = head_w, head_b
    path = tmp_path / "effort_univfd.pth"
    torch.save({"model": model, "optimizer": {"state": {}, "param_groups": []}, "total_steps": 18000}, path)
    return path, vision, head_w, head_b, model["model.visual_projection.weight"]


@pytest.mark.parametrize("rank", [1, 3])
def test_deepfakebench_layout(tmp_path, rank):
    path, vision, head_w, head_b = deepfakebench_file(tmp_path, rank)
    out = convert_effort_official(path, tmp_path / "converted", backbone="tiny")
    model = aigi.load_detector(out).eval()
    assert model.config.head == "two_logit" and model.config.targets == "attention"
    assert model.config.trainable_rank == rank
    x = pixels()
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference_logits(vision, head_w, head_b, x), atol=1e-5, rtol=1e-5)
    name = "backbone.vision_model.encoder.layers.1.self_attn.v_proj"
    torch.testing.assert_close(model.state_dict()[f"{name}.U_res"], vision["encoder.layers.1.self_attn.v_proj.U_residual"])


def test_univfd_layout(tmp_path):
    path, vision, head_w, head_b, proj = univfd_file(tmp_path)
    out = convert_effort_official(path, tmp_path / "converted", backbone="tiny")
    model = aigi.load_detector(out).eval()
    assert model.config.head == "one_logit"
    x = pixels()
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference_logits(vision, head_w, head_b, x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.backbone.visual_projection.weight, proj)
    with pytest.raises(FileExistsError, match="already holds a detector"):
        convert_effort_official(path, out, backbone="tiny")
    assert convert_effort_official(path, out, backbone="tiny", overwrite=True) == out
    # a converted model folds like any other
    with torch.no_grad():
        ref = model(x)
        torch.testing.assert_close(model.for_inference()(x), ref, atol=1e-5, rtol=1e-5)


def test_unknown_and_missing_keys_are_listed(tmp_path):
    path, *_ = deepfakebench_file(tmp_path)
    state = torch.load(path, weights_only=True)
    state["module.backbone.encoder.layers.0.self_attn.q_proj.lora_A"] = torch.zeros(1)
    state["module.extra.thing"] = torch.zeros(1)
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"unknown keys in the deepfakebench checkpoint: \[extra\.thing\]"):
        convert_effort_official(path, tmp_path / "c")
    state.pop("module.extra.thing")
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"unexpected keys \[backbone\.vision_model\.encoder\.layers\.0\.self_attn\.q_proj\.lora_A\]"):
        convert_effort_official(path, tmp_path / "c", backbone="tiny")
    state.pop("module.backbone.encoder.layers.0.self_attn.q_proj.lora_A")
    state.pop("module.backbone.post_layernorm.weight")
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"missing keys \[backbone\.vision_model\.post_layernorm\.weight\]"):
        convert_effort_official(path, tmp_path / "c", backbone="tiny")
    assert not (tmp_path / "c").exists()


def test_shape_mismatch_and_foreign_files_are_clear(tmp_path):
    path, *_ = deepfakebench_file(tmp_path)
    state = torch.load(path, weights_only=True)
    state["module.backbone.post_layernorm.weight"] = torch.zeros(5)
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"shapes do not match.*post_layernorm\.weight \(5,\) vs \(16,\)"):
        convert_effort_official(path, tmp_path / "c", backbone="tiny")
    other = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, other)
    with pytest.raises(CheckpointError, match="not an official Effort checkpoint"):
        convert_effort_official(other, tmp_path / "c", backbone="tiny")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        convert_effort_official(junk, tmp_path / "c")
    with pytest.raises(FileNotFoundError):
        convert_effort_official(tmp_path / "absent.pth", tmp_path / "c")
