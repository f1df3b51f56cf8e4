"""Official DGS-Net checkpoints: the imported folder gives the official logits.

The state dict is built from the names and shapes of the released wrapper (``CLIPModel`` of
HorizonTEL/DGS-Net: an OpenAI-CLIP ``clip_model`` whose vision blocks carry CLIP-LoRA's
``PlainMultiheadAttentionLoRA``, the frozen teacher ``clip_model_frozen.clip_model_frozen`` with
its head ``img_frozen_fc``, and ``img_fc`` / ``text_fc``) at the 'tiny' CLIP size, every tensor
random. The reference forward is OpenAI CLIP's ``encode_image`` written here with
torch.nn.functional on the raw tensors, with CLIP-LoRA's eval-mode weights
``W + alpha / sqrt(r) * B A``; it shares no code with transformers or aigi.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

import aigi
from aigi.convert.dgsnet import convert_dgsnet
from aigi.detectors import CheckpointError

WIDTH, LAYERS, HEADS, PATCH, IMAGE, EMBED, RANK = 16, 2, 2, 8, 32, 8, 6  # the 'tiny' CLIP preset
T_WIDTH, T_LAYERS, VOCAB, CTX = 16, 2, 260, 77


def _official_clip(g: torch.Generator, *, lora: bool) -> dict[str, torch.Tensor]:
    def r(*shape, scale=0.2):
        return torch.randn(*shape, generator=g) * scale

    grid = IMAGE // PATCH
    sd = {"visual.conv1.weight": r(WIDTH, 3, PATCH, PATCH), "visual.class_embedding": r(WIDTH),
          "visual.positional_embedding": r(grid * grid + 1, WIDTH), "visual.ln_pre.weight": 1 + r(WIDTH),
          "visual.ln_pre.bias": r(WIDTH), "visual.ln_post.weight": 1 + r(WIDTH), "visual.ln_post.bias": r(WIDTH),
          "visual.proj": r(WIDTH, EMBED)}
    for i in range(LAYERS):
        p = f"visual.transformer.resblocks.{i}."
        sd.update({p + "ln_1.weight": 1 + r(WIDTH), p + "ln_1.bias": r(WIDTH), p + "ln_2.weight": 1 + r(WIDTH),
                   p + "ln_2.bias": r(WIDTH), p + "mlp.c_fc.weight": r(4 * WIDTH // 2, WIDTH),
                   p + "mlp.c_fc.bias": r(4 * WIDTH // 2), p + "mlp.c_proj.weight": r(WIDTH, 4 * WIDTH // 2),
                   p + "mlp.c_proj.bias": r(WIDTH)})
        if lora:
            for q in "qkv":
                sd.update({p + f"attn.{q}_proj.weight": r(WIDTH, WIDTH), p + f"attn.{q}_proj.bias": r(WIDTH),
                           p + f"attn.{q}_proj.w_lora_A": r(RANK, WIDTH), p + f"attn.{q}_proj.w_lora_B": r(WIDTH, RANK)})
            sd.update({p + "attn.proj.weight": r(WIDTH, WIDTH), p + "attn.proj.bias": r(WIDTH)})
        else:
            sd.update({p + "attn.in_proj_weight": r(3 * WIDTH, WIDTH), p + "attn.in_proj_bias": r(3 * WIDTH),
                       p + "attn.out_proj.weight": r(WIDTH, WIDTH), p + "attn.out_proj.bias": r(WIDTH)})
    sd.update({"token_embedding.weight": r(VOCAB, T_WIDTH), "positional_embedding": r(CTX, T_WIDTH),
               "ln_final.weight": 1 + r(T_WIDTH), "ln_final.bias": r(T_WIDTH), "text_projection": r(T_WIDTH, EMBED),
               "logit_scale": torch.tensor(4.6052)})
    for i in range(T_LAYERS):
        p = f"transformer.resblocks.{i}."
        sd.update({p + "ln_1.weight": 1 + r(T_WIDTH), p + "ln_1.bias": r(T_WIDTH), p + "ln_2.weight": 1 + r(T_WIDTH),
                   p + "ln_2.bias": r(T_WIDTH), p + "attn.in_proj_weight": r(3 * T_WIDTH, T_WIDTH),
                   p + "attn.in_proj_bias": r(3 * T_WIDTH), p + "attn.out_proj.weight": r(T_WIDTH, T_WIDTH),
                   p + "attn.out_proj.bias": r(T_WIDTH), p + "mlp.c_fc.weight": r(2 * T_WIDTH, T_WIDTH),
                   p + "mlp.c_fc.bias": r(2 * T_WIDTH), p + "mlp.c_proj.weight": r(T_WIDTH, 2 * T_WIDTH),
                   p + "mlp.c_proj.bias": r(T_WIDTH)})
    return sd


def official_state(*, same_teacher: bool = True) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(11)
    student = _official_clip(g, lora=True)
    teacher = _official_clip(g, lora=False)
    if same_teacher:  # as trained: the student's frozen weights are the pretrained CLIP the teacher holds
        for i in range(LAYERS):
            p = f"visual.transformer.resblocks.{i}.attn."
            teacher[p + "in_proj_weight"] = torch.cat([student[p + f"{q}_proj.weight"] for q in "qkv"])
            teacher[p + "in_proj_bias"] = torch.cat([student[p + f"{q}_proj.bias"] for q in "qkv"])
            teacher[p + "out_proj.weight"], teacher[p + "out_proj.bias"] = student[p + "proj.weight"], student[p + "proj.bias"]
        for k, v in student.items():
            if k in teacher and "attn" not in k:
                teacher[k] = v.clone()
    sd = {"clip_model." + k: v for k, v in student.items()}
    sd.update({"clip_model_frozen.clip_model_frozen." + k: v for k, v in teacher.items()})
    for head in ("img_fc", "text_fc", "clip_model_frozen.img_frozen_fc"):
        sd[head + ".weight"] = torch.randn(1, EMBED, generator=g)
        sd[head + ".bias"] = torch.randn(1, generator=g)
    return sd


def official_encode_image(sd: dict[str, torch.Tensor], x: torch.Tensor, alpha: float = 6.0) -> torch.Tensor:
    p = "clip_model.visual."
    scale = alpha / math.sqrt(RANK)
    x = F.conv2d(x, sd[p + "conv1.weight"], stride=PATCH)
    x = x.reshape(x.shape[0], WIDTH, -1).permute(0, 2, 1)
    cls = sd[p + "class_embedding"].expand(x.shape[0], 1, WIDTH)
    x = torch.cat([cls, x], dim=1) + sd[p + "positional_embedding"]
    x = F.layer_norm(x, (WIDTH,), sd[p + "ln_pre.weight"], sd[p + "ln_pre.bias"])
    for i in range(LAYERS):
        b = f"{p}transformer.resblocks.{i}."
        h = F.layer_norm(x, (WIDTH,), sd[b + "ln_1.weight"], sd[b + "ln_1.bias"])
        qkv = []
        for q in "qkv":
            w = sd[b + f"attn.{q}_proj.weight"] + scale * sd[b + f"attn.{q}_proj.w_lora_B"] @ sd[b + f"attn.{q}_proj.w_lora_A"]
            qkv.append(F.linear(h, w, sd[b + f"attn.{q}_proj.bias"]).reshape(x.shape[0], -1, HEADS, WIDTH // HEADS)
                       .transpose(1, 2))
        att = ((qkv[0] @ qkv[1].transpose(-2, -1)) / math.sqrt(WIDTH // HEADS)).softmax(-1) @ qkv[2]
        att = att.transpose(1, 2).reshape(x.shape[0], -1, WIDTH)
        x = x + F.linear(att, sd[b + "attn.proj.weight"], sd[b + "attn.proj.bias"])
        h = F.layer_norm(x, (WIDTH,), sd[b + "ln_2.weight"], sd[b + "ln_2.bias"])
        h = F.linear(h, sd[b + "mlp.c_fc.weight"], sd[b + "mlp.c_fc.bias"])
        x = x + F.linear(h * torch.sigmoid(1.702 * h), sd[b + "mlp.c_proj.weight"], sd[b + "mlp.c_proj.bias"])
    x = F.layer_norm(x[:, 0], (WIDTH,), sd[p + "ln_post.weight"], sd[p + "ln_post.bias"])
    return x @ sd[p + "proj"]


X = torch.randn(3, 3, IMAGE, IMAGE, generator=torch.Generator().manual_seed(5))


def test_official_stage2_checkpoint_gives_the_official_logits(tmp_path):
    sd = official_state()
    ckpt = tmp_path / "model_epoch_step2.pth"
    torch.save(sd, ckpt)
    out = convert_dgsnet(ckpt, tmp_path / "out", backbone="tiny")
    model = aigi.load_detector(out).eval()
    with torch.no_grad():
        feats = official_encode_image(sd, X)
        ref = F.linear(feats, sd["img_fc.weight"], sd["img_fc.bias"]).squeeze(-1)
        torch.testing.assert_close(model(X), ref, rtol=1e-4, atol=1e-5)
        # folding LoRA for inference keeps the logits
        torch.testing.assert_close(model.for_inference()(X), ref, rtol=1e-4, atol=1e-5)
    # the teacher and text heads are kept (training can continue), the teacher's CLIP copy is dropped
    assert torch.equal(model.img_frozen_fc.weight, sd["clip_model_frozen.img_frozen_fc.weight"])
    assert torch.equal(model.text_fc.bias, sd["text_fc.bias"])
    text = model.text_encoder.model.text_model
    assert torch.equal(text.embeddings.token_embedding.weight, sd["clip_model.token_embedding.weight"])
    assert torch.equal(text.encoder.layers[1].self_attn.k_proj.weight,
                       sd["clip_model.transformer.resblocks.1.attn.in_proj_weight"][T_WIDTH:2 * T_WIDTH])
    record = json.loads((out / "conversion.json").read_text())
    assert record["preset"] == "dgsnet-patch-selection" and record["lora_rank"] == RANK
    assert record["teacher_max_abs_diff"] == 0.0
    assert any("dropped the teacher's CLIP copy" in n for n in record["notes"])
    pre = model.config.preprocess
    assert (pre.normalize, pre.patch_entropy, pre.patch_test_shuffle) == ("imagenet", "official", True)


def test_a_different_teacher_is_measured_and_lora_alpha_matters(tmp_path):
    sd = official_state(same_teacher=False)
    ckpt = tmp_path / "c.pth"
    torch.save(sd, ckpt)
    out = convert_dgsnet(ckpt, tmp_path / "o", backbone="tiny", lora_alpha=3.0)
    record = json.loads((out / "conversion.json").read_text())
    assert record["teacher_max_abs_diff"] > 0.01
    with torch.no_grad():
        ref = F.linear(official_encode_image(sd, X, alpha=3.0), sd["img_fc.weight"], sd["img_fc.bias"]).squeeze(-1)
        torch.testing.assert_close(aigi.load_detector(out).eval()(X), ref, rtol=1e-4, atol=1e-5)


def test_malformed_checkpoints_list_what_is_wrong(tmp_path):
    sd = official_state()
    cases = {
        "extra": ({**sd, "clip_model.visual.extra": torch.zeros(1)}, "unexpected keys.*clip_model.visual.extra"),
        "missing": ({k: v for k, v in sd.items() if k != "img_fc.bias"}, "missing keys.*img_fc.bias"),
        "nolora": ({k: v for k, v in sd.items() if "lora" not in k}, "no LoRA factors"),
        "foreign": ({"conv1.weight": torch.zeros(1)}, "not an official DGS-Net checkpoint"),
        "shape": ({**sd, "img_fc.weight": torch.zeros(1, 4)}, "shapes do not match"),
    }
    for name, (state, message) in cases.items():
        ckpt = tmp_path / f"{name}.pth"
        torch.save(state, ckpt)
        with pytest.raises(CheckpointError, match=message):
            convert_dgsnet(ckpt, tmp_path / name, backbone="tiny")
        assert not (tmp_path / name / "config.json").exists()
