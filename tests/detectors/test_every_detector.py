"""Every registered detector: builds tiny, runs, trains a step, saves/reloads, loads full size."""

from __future__ import annotations

import pytest
import torch

import aigi
from aigi.detectors import detector_class, list_detectors, load_detector
from aigi.detectors.base import CheckpointError

NAMES = sorted(list_detectors())


def tiny(name: str):
    return aigi.create_detector(name, **detector_class(name).tiny_overrides)


def batch_for(model, n: int = 4) -> dict:
    s = model.config.preprocess.size
    g = torch.Generator().manual_seed(1)
    return {
        "pixels": torch.randn(n, 3, s, s, generator=g),
        "label": torch.tensor([0.0, 1.0] * (n // 2)),
        "index": torch.arange(n),
        "caption": [f"a photo number {i}" for i in range(n)],
    }


def test_registry_lists_baselines():
    assert {"cnnspot", "univfd", "npr"} <= set(NAMES)
    assert all(summary for summary in list_detectors().values())


def test_unknown_name_lists_known():
    with pytest.raises(KeyError, match="registered detectors: .*npr"):
        aigi.create_detector("no-such-method")


@pytest.mark.parametrize("name", NAMES)
def test_forward_shape_and_finite(name):
    model = tiny(name).eval()
    b = batch_for(model)
    logits = model(b["pixels"])
    assert logits.shape == (4,)
    assert torch.isfinite(logits).all()
    probs = model.predict_proba(b["pixels"])
    assert ((probs >= 0) & (probs <= 1)).all()


@pytest.mark.parametrize("name", NAMES)
def test_train_step_updates_only_trainable(name):
    model = tiny(name).train()
    params = model.trainable_parameters()
    assert params, "a detector must have something to train"
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    before = [p.detach().clone() for p in params]
    opt = torch.optim.Adam(params, lr=1e-2)
    out = model.training_loss(batch_for(model))
    assert "loss" in out and out["loss"].ndim == 0 and torch.isfinite(out["loss"])
    out["loss"].backward()
    opt.step()
    changed = sum(not torch.equal(a, p.detach()) for a, p in zip(before, params))
    assert changed > 0
    for n, p in model.named_parameters():
        if n in frozen:
            assert torch.equal(frozen[n], p.detach()), f"frozen parameter {n} changed"


@pytest.mark.parametrize("name", NAMES)
def test_save_reload_identical_logits(name, tmp_path):
    model = tiny(name)
    # one training step so the saved weights differ from a fresh build
    opt = torch.optim.SGD(model.trainable_parameters(), lr=0.1)
    model.train()
    model.training_loss(batch_for(model))["loss"].backward()
    opt.step()
    model.eval()
    x = batch_for(model)["pixels"]
    with torch.no_grad():
        ref = model(x)
    model.save_pretrained(tmp_path / "m")
    again = load_detector(tmp_path / "m").eval()
    assert type(again) is type(model)
    assert again.config == model.config
    with torch.no_grad():
        assert torch.equal(again(x), ref)


@pytest.mark.parametrize("name", NAMES)
def test_for_inference_keeps_logits(name):
    model = tiny(name).eval()
    x = batch_for(model)["pixels"]
    with torch.no_grad():
        ref = model(x)
        folded = model.for_inference()(x)
    torch.testing.assert_close(folded, ref, rtol=1e-5, atol=1e-5)
    assert not any(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_full_size_architecture_builds(name):
    model = detector_class(name).build_full_size()
    total = sum(p.numel() for p in model.parameters())
    assert total > 1_000_000
    s = model.config.preprocess.size
    with torch.no_grad():
        assert model.eval()(torch.zeros(1, 3, s, s)).shape == (1,)


def test_load_rejects_missing_and_unexpected_keys(tmp_path):
    model = tiny("npr")
    model.save_pretrained(tmp_path / "m")
    from safetensors.torch import load_file, save_file

    tensors = load_file(tmp_path / "m" / "model.safetensors")
    tensors.pop("net.fc1.weight")
    tensors["net.extra"] = torch.zeros(1)
    save_file(tensors, tmp_path / "m" / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"missing keys \[net.fc1.weight\].*unexpected keys \[net.extra\]"):
        load_detector(tmp_path / "m")


def test_load_non_folder_is_clear(tmp_path):
    with pytest.raises(CheckpointError, match="not a detector folder"):
        load_detector(tmp_path)
