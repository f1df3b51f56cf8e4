"""DGS-Net: gradient surgery, the distillation term, the teacher, and the stage-1 → stage-2 hand-over."""

from __future__ import annotations

import shutil

import pytest
import torch
import torch.nn.functional as F

import aigi
from aigi.detectors import load_detector
from aigi.detectors.base import CheckpointError
from aigi.detectors.dgsnet import harmful_direction, project_off
from aigi.layers.lora import lora_disabled, lora_layers


def _batch(n: int = 6) -> dict:
    g = torch.Generator().manual_seed(4)
    return {"pixels": torch.randn(n, 3, 32, 32, generator=g), "label": torch.tensor([0.0, 1.0] * (n // 2)),
            "index": torch.arange(n), "caption": [f"a picture of thing {i}" for i in range(n)]}


def _stage1(tmp_path, name: str = "s1", **kw):
    s1 = aigi.create_detector("dgsnet", backbone="tiny", stage=1, **kw)
    with torch.no_grad():
        s1.img_frozen_fc.weight.normal_()
        s1.img_frozen_fc.bias.fill_(0.3)
    s1.save_pretrained(tmp_path / name)
    return s1, tmp_path / name


def test_project_off_removes_exactly_the_unit_direction():
    g = torch.randn(5, 8)
    h = F.normalize(torch.randn(5, 8), dim=1)
    out = project_off(g, h)
    torch.testing.assert_close((out * h).sum(-1), torch.zeros(5), atol=1e-6, rtol=0)
    torch.testing.assert_close(out + (g * h).sum(-1, keepdim=True) * h, g)
    r = harmful_direction(torch.tensor([[1.0, -2.0, 2.0], [-1.0, -1.0, -1.0]]))
    torch.testing.assert_close(r[0], torch.tensor([1.0, 0.0, 2.0]) / (5**0.5 + 1e-6))
    assert torch.equal(r[1], torch.zeros(3))  # nothing harmful: the gradient is left alone


def test_surgery_hook_and_loss_terms_match_the_formulas(tmp_path):
    _, s1_dir = _stage1(tmp_path)
    model = aigi.create_detector("dgsnet", backbone="tiny", teacher_head=str(s1_dir))
    with torch.no_grad():  # trained-looking adapters, so the student differs from the teacher
        for layer in lora_layers(model.backbone):
            layer.lora_B.normal_(0.0, 0.3)
    model.train()
    captured = []

    def keep(_module, _inp, out):
        if out.requires_grad:
            out.retain_grad()  # retain-grad hooks run after the surgery hook: .grad is post-surgery
            captured.append(out)

    handle = model.backbone.visual_projection.register_forward_hook(keep)
    b = _batch()
    out = model.training_loss(b)
    out["loss"].backward()
    handle.remove()
    (f,) = captured
    y = b["label"]
    n = y.shape[0]
    with torch.no_grad():
        with lora_disabled(model.backbone):
            f_t = model.embeds(b["pixels"])
        t = model.text_encoder.encode(b["caption"])
        p_img = torch.sigmoid(model.img_fc(f).squeeze(-1))
        p_t = torch.sigmoid(model.img_frozen_fc(f_t).squeeze(-1))
        p_txt = torch.sigmoid(model.text_fc(t).squeeze(-1))
        # closed-form gradients of the mean BCE terms
        g_t = (p_t - y)[:, None] * model.img_frozen_fc.weight / n
        g_text = (p_txt - y)[:, None] * model.text_fc.weight / n
        g_help = g_t.clamp(max=0.0)
        h = harmful_direction(g_text)
        raw = (p_img - y)[:, None] * model.img_fc.weight / n + 0.2 * g_help / n
    assert not torch.allclose(f.detach(), f_t)  # the teacher is the LoRA-free tower
    torch.testing.assert_close(out["l_help"], (f.detach() * g_help).sum(-1).mean())
    torch.testing.assert_close(out["l_teacher"], F.binary_cross_entropy_with_logits(
        model.img_frozen_fc(f_t).squeeze(-1), y))
    torch.testing.assert_close(out["loss"].detach(), out["l_img"] + out["l_text"] + 0.2 * out["l_help"])
    # the gradient reaching the features has no component along the harmful direction (up to
    # the 1e-6 in h's normalisation, a relative 2e-6/||relu(g_text)||), which it had before the hook
    before, after = (raw * h).sum(-1), (f.grad * h).sum(-1)
    assert before.abs().max() > 1e-3
    assert torch.all(after.abs() <= 1e-3 * before.abs() + 1e-9)
    # ... and is exactly the surgery of the loss gradient
    torch.testing.assert_close(f.grad, project_off(raw, h), rtol=1e-4, atol=1e-7)
    # only the student's adapters and the two trainable heads received gradients
    assert model.img_frozen_fc.weight.grad is None
    assert all(layer.lora_A.grad is not None for layer in lora_layers(model.backbone))
    assert model.text_fc.weight.grad is not None and model.img_fc.weight.grad is not None


def test_teacher_is_the_frozen_backbone_after_training():
    model = aigi.create_detector("dgsnet", backbone="tiny")
    frozen = aigi.create_detector("dgsnet", backbone="tiny", stage=1).eval()  # same seeded preset weights
    opt = torch.optim.SGD(model.trainable_parameters(), lr=1.0)
    model.train()
    model.training_loss(_batch())["loss"].backward()
    opt.step()
    model.eval()
    x = _batch()["pixels"]
    with torch.no_grad():
        with lora_disabled(model.backbone):
            teacher = model.embeds(x)
        assert torch.equal(teacher, frozen.embeds(x))
        assert not torch.equal(model.embeds(x), teacher)


def test_stage1_trains_only_the_probe():
    s1 = aigi.create_detector("dgsnet", backbone="tiny", stage=1)
    assert [n for n, p in s1.named_parameters() if p.requires_grad] == ["img_frozen_fc.weight", "img_frozen_fc.bias"]
    assert not hasattr(s1, "text_encoder") and not lora_layers(s1.backbone)
    with pytest.raises(ValueError, match="teacher_head is a stage-2 setting"):
        aigi.create_detector("dgsnet", backbone="tiny", stage=1, teacher_head="x")


def test_stage2_reads_the_stage1_head_relative_to_cwd(tmp_path, monkeypatch):
    s1, s1_dir = _stage1(tmp_path)
    monkeypatch.chdir(tmp_path)
    s2 = aigi.create_detector("dgsnet", backbone="tiny", teacher_head="s1")
    assert s2.config.teacher_head == str(s1_dir.resolve())
    assert torch.equal(s2.img_frozen_fc.weight, s1.img_frozen_fc.weight)
    assert torch.equal(s2.img_frozen_fc.bias, s1.img_frozen_fc.bias)
    assert not s2.img_frozen_fc.weight.requires_grad
    # a saved stage-2 detector carries the head: loading it never reads the stage-1 folder
    s2.save_pretrained(tmp_path / "s2")
    shutil.rmtree(s1_dir)
    again = load_detector(tmp_path / "s2")
    assert torch.equal(again.img_frozen_fc.weight, s1.img_frozen_fc.weight)


def test_stage2_teacher_head_errors(tmp_path):
    with pytest.raises(CheckpointError, match="is not a folder; train stage 1 first"):
        aigi.create_detector("dgsnet", backbone="tiny", teacher_head=str(tmp_path / "missing"))
    aigi.create_detector("causalclip", backbone="tiny").save_pretrained(tmp_path / "other")
    with pytest.raises(CheckpointError, match="not a stage-1 DGS-Net run .*method='causalclip'"):
        aigi.create_detector("dgsnet", backbone="tiny", teacher_head=str(tmp_path / "other"))
    aigi.create_detector("dgsnet", backbone="tiny").save_pretrained(tmp_path / "s2")
    with pytest.raises(CheckpointError, match="stage=2"):
        aigi.create_detector("dgsnet", backbone="tiny", teacher_head=str(tmp_path / "s2"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="not a detector folder"):
        aigi.create_detector("dgsnet", backbone="tiny", teacher_head=str(tmp_path / "empty"))
    _stage1(tmp_path, "s1_clip", **{"preprocess.normalize": "clip"})
    with pytest.raises(CheckpointError, match="'clip' normalisation"):
        aigi.create_detector("dgsnet", backbone="tiny", teacher_head=str(tmp_path / "s1_clip"))
    # the default is the official code's: ImageNet statistics; CLIP's are one setting away (both stages)
    assert aigi.create_detector("dgsnet", backbone="tiny", stage=1).config.preprocess.normalize == "imagenet"
    s2 = aigi.create_detector("dgsnet", backbone="tiny", teacher_head=str(tmp_path / "s1_clip"),
                              **{"preprocess.normalize": "clip"})
    assert s2.preprocess_config().normalize == "clip"


def test_default_test_preprocessing_is_the_official_dgsnet_protocol():
    pre = aigi.create_detector("dgsnet", backbone="tiny", stage=1).config.preprocess
    assert (pre.test, pre.normalize, pre.patch_entropy, pre.patch_test_shuffle) == (
        "patch_selection", "imagenet", "official", True)
    full = aigi.detectors.dgsnet.DGSNetConfig().preprocess
    assert full == aigi.data.transforms.preset("dgsnet-patch-selection") and full.size == 224
