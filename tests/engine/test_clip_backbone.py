"""CLIP towers: presets, local folders, the offline error, weight hashes."""

import pytest
import torch

import aigi
from aigi.backbones.clip import (
    BackboneUnavailable,
    ClipBackboneConfig,
    load_clip_vision,
    state_sha256,
)


def test_tiny_preset_is_tiny_and_deterministic():
    a = load_clip_vision(ClipBackboneConfig(source="tiny"))
    b = load_clip_vision(ClipBackboneConfig(source="tiny"))
    assert sum(p.numel() for p in a.parameters()) < 10_000
    assert state_sha256(a) == state_sha256(b)


def test_offline_hub_id_fails_with_advice(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-cache"))
    with pytest.raises(BackboneUnavailable, match="pass its local folder"):
        aigi.create_detector("univfd", backbone="openai/clip-vit-large-patch14")


def test_local_folder_loads_both_towers(tmp_path):
    from transformers import CLIPConfig, CLIPModel

    from aigi.backbones.clip import PRESETS

    vision, text = PRESETS["tiny"]
    cfg = CLIPConfig(vision_config=vision, text_config=text, projection_dim=8)
    torch.manual_seed(3)
    CLIPModel(cfg).save_pretrained(tmp_path / "clip")
    spec = ClipBackboneConfig(source=str(tmp_path / "clip"))
    model = load_clip_vision(spec)
    assert spec.vision["hidden_size"] == 16 and spec.weights_sha256 == state_sha256(model)
    det = aigi.create_detector("univfd", backbone=str(tmp_path / "clip"))
    assert det.config.preprocess.size == 32 and det.num_trainable() == 9
    # a full checkpoint reloads without the folder: the architecture is in its config
    det.save_pretrained(tmp_path / "saved")
    import shutil

    shutil.rmtree(tmp_path / "clip")
    again = aigi.load_detector(tmp_path / "saved")
    # the weights are the same bytes: identical where the maths is identical
    mine, theirs = det.state_dict(), again.state_dict()
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    # the logits may differ in the last bits: transformers may pick another attention kernel
    # (eager vs SDPA) for a model built from a config than for one loaded from a folder, and
    # their float32 sums round differently (7e-9 seen); 1e-6 is far below any decision
    x = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(again.eval()(x), det.eval()(x), rtol=0, atol=1e-6)


def test_clip_load_is_quiet_about_the_other_tower_and_loud_about_missing_keys(tmp_path, capfd):
    from safetensors.torch import load_file, save_file
    from transformers import CLIPConfig, CLIPModel

    from aigi.backbones.clip import PRESETS, BackboneLoadError, load_clip_text

    vision, text = PRESETS["tiny"]
    CLIPModel(CLIPConfig(vision_config=vision, text_config=text, projection_dim=8)).save_pretrained(tmp_path / "c")
    capfd.readouterr()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the text tower's keys are expected: no warning either
        load_clip_vision(ClipBackboneConfig(source=str(tmp_path / "c")))
        load_clip_text(ClipBackboneConfig(source=str(tmp_path / "c")))
    captured = capfd.readouterr()
    assert "LOAD REPORT" not in captured.out + captured.err
    # a vision weight missing from the folder would stay random: that is an error naming it
    weights = tmp_path / "c" / "model.safetensors"
    sd = load_file(weights)
    gone = next(k for k in sd if k.startswith("vision_model.encoder.layers.0.self_attn.q_proj.weight"))
    del sd[gone]
    save_file(sd, weights, metadata={"format": "pt"})
    with pytest.raises(BackboneLoadError, match="missing: vision_model.encoder.layers.0.self_attn.q_proj.weight"):
        load_clip_vision(ClipBackboneConfig(source=str(tmp_path / "c")))


def test_univfd_adapter_only_checkpoint_and_hash_check(tmp_path):
    import json

    from aigi.backbones.clip import BackboneMismatch

    det = aigi.create_detector("univfd", backbone="tiny")
    det.save_pretrained(tmp_path / "a", adapter_only=True)
    from safetensors.torch import load_file

    assert set(load_file(tmp_path / "a" / "model.safetensors")) == {"fc.weight", "fc.bias"}
    again = aigi.load_detector(tmp_path / "a")
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(again.eval()(x), det.eval()(x))
    cfg = json.loads((tmp_path / "a" / "config.json").read_text())
    cfg["backbone"]["weights_sha256"] = "0" * 64
    (tmp_path / "a" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(BackboneMismatch, match="not the ones this checkpoint was trained on"):
        aigi.load_detector(tmp_path / "a")
