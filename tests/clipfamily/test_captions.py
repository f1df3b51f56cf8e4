"""Caption handling shared by the text methods, and the frozen text tower's place in checkpoints."""

from __future__ import annotations

import copy
import logging

import pytest
import torch

import aigi
from aigi.detectors import load_detector
from aigi.layers.captions import CaptionSource, TextTower


def test_fallback_for_missing_captions_warns_once(caplog):
    src = CaptionSource("nsnet", "a photo")
    with caplog.at_level(logging.WARNING, logger="aigi"):
        assert src({"caption": ["a cat", None, "  "]}, 3) == ["a cat", "a photo", "a photo"]
        assert src({}, 2) == ["a photo", "a photo"]
        assert src({"caption": None}, 1) == ["a photo"]
    warnings = [r for r in caplog.records if "fallback prompt" in r.getMessage()]
    assert len(warnings) == 1 and "'a photo'" in warnings[0].getMessage() and "nsnet" in warnings[0].getMessage()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="aigi"):
        copy.deepcopy(src)({}, 1)  # another detector instance warns for itself
        assert src({"caption": ["a dog"]}, 1) == ["a dog"]
    assert len([r for r in caplog.records if "fallback prompt" in r.getMessage()]) == 1


def test_bad_captions_are_clear_errors():
    src = CaptionSource("dgsnet")
    with pytest.raises(ValueError, match="4 images but 2 captions"):
        src({"caption": ["a", "b"]}, 4)
    with pytest.raises(TypeError, match="caption 1 must be a string or None, got int"):
        src({"caption": ["a", 3]}, 2)


def test_text_tower_is_frozen_and_tokenizer_lazy():
    model = aigi.create_detector("nsnet", backbone="tiny", k=2)
    tower = model.text_encoder
    assert isinstance(tower, TextTower) and tower._tokenizer is None
    assert not any(p.requires_grad for p in tower.parameters())
    model.train()
    assert not tower.training and not tower.model.training
    emb = tower.encode(["a cat", "a cat", "a dog"])
    assert emb.shape == (3, model.embed_dim) and not emb.requires_grad
    assert torch.equal(emb[0], emb[1]) and not torch.equal(emb[0], emb[2])


@pytest.mark.parametrize("name", ["nsnet", "dgsnet"])
def test_checkpoints_and_the_text_tower(name, tmp_path):
    model = aigi.create_detector(name, backbone="tiny", **({"k": 2} if name == "nsnet" else {}))
    full = set(model.state_dict())
    adapter = set(model.adapter_state_dict())
    text = {k for k in full if k.startswith("text_encoder.")}
    assert text and not (text & adapter)  # full checkpoints hold the text tower, adapter-only ones do not
    batch = {"pixels": torch.randn(4, 3, 32, 32), "label": torch.tensor([0.0, 1.0, 0.0, 1.0]),
             "index": torch.arange(4), "caption": ["one", "two", None, "four"]}
    model.train()
    opt = torch.optim.SGD(model.trainable_parameters(), lr=0.5)
    model.training_loss(batch)["loss"].backward()
    opt.step()
    model.eval()
    with torch.no_grad():
        ref = model(batch["pixels"])
    for adapter_only in (True, False):
        out = tmp_path / f"m{adapter_only}"
        model.save_pretrained(out, adapter_only=adapter_only)
        again = load_detector(out).eval()
        assert torch.equal(again.text_encoder.model.text_model.embeddings.token_embedding.weight,
                           model.text_encoder.model.text_model.embeddings.token_embedding.weight)
        with torch.no_grad():
            assert torch.equal(again(batch["pixels"]), ref)
