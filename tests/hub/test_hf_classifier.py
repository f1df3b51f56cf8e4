"""hf_classifier: a transformers image classifier as a detector, with its own preprocessing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import aigi
from aigi.cli import app
from aigi.data.transforms import build_transform
from aigi.detectors import load_detector
from aigi.detectors.hf_classifier import preprocess_from_processor


def save_vit(folder: Path, labels=("human", "artificial"), *, processor: str = "vit", seed: int = 3) -> Path:
    """A tiny random ViTForImageClassification and its (PIL) image processor, saved as transformers saves them."""
    from transformers import CLIPImageProcessor, ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(seed)
    config = ViTConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                       image_size=32, patch_size=8, id2label=dict(enumerate(labels)),
                       label2id={v: i for i, v in enumerate(labels)})
    ViTForImageClassification(config).eval().save_pretrained(folder)
    if processor == "vit":
        ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.5, 0.4, 0.3],
                          image_std=[0.2, 0.25, 0.3]).save_pretrained(folder)
    else:  # CLIP's: shorter side to 36, then a 32 x 32 centre crop, bicubic
        CLIPImageProcessor(size={"shortest_edge": 36}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def _image(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.mark.parametrize("processor", ["vit", "clip"])
def test_logits_and_preprocessing_match_transformers(tmp_path, processor):
    from transformers import AutoImageProcessor, ViTForImageClassification

    folder = save_vit(tmp_path / "vit", processor=processor)
    det = aigi.create_detector("hf_classifier", source=str(folder), fake_label="artificial").eval()
    hf = ViTForImageClassification.from_pretrained(folder).eval()
    proc = AutoImageProcessor.from_pretrained(folder)
    pre = det.preprocess_config()
    assert pre.normalize == "none" and pre.size == 32
    assert pre.test == ("resize" if processor == "vit" else "resize_center_crop")
    transform = build_transform(pre, train=False)
    for img in (_image(50, 37, 1), _image(31, 64, 2)):
        ours = transform(img)[None]
        theirs = torch.as_tensor(np.asarray(proc(images=img, return_tensors="np")["pixel_values"]))
        with torch.no_grad():
            want = hf(pixel_values=theirs).logits
            got = det(ours)
        # label 1 'artificial' is fake: logit = l_fake - l_real
        torch.testing.assert_close(got, want[:, 1] - want[:, 0], atol=1e-5, rtol=1e-5)


def test_label_choice_by_name_index_and_several(tmp_path):
    folder = save_vit(tmp_path / "vit3", labels=("real", "sd", "mj"))
    x = torch.randn(2, 3, 32, 32)
    by_list = aigi.create_detector("hf_classifier", source=str(folder), fake_label=["SD", 2]).eval()
    with torch.no_grad():
        logits = by_list.model(pixel_values=(x - by_list.pixel_mean) / by_list.pixel_std * 1.0).logits
        p_fake = torch.softmax(logits, -1)[:, 1:].sum(-1)
        torch.testing.assert_close(torch.sigmoid(by_list(x / by_list.pixel_scale)), p_fake, atol=1e-6, rtol=1e-5)
    by_index = aigi.create_detector("hf_classifier", source=str(folder), fake_label=1)
    assert by_index.fake_ids == [1] and by_index.real_ids == [0, 2]
    with pytest.raises(ValueError, match=r"fake_label 'gan' is not one of the model's labels .*'sd'"):
        aigi.create_detector("hf_classifier", source=str(folder), fake_label="gan")
    with pytest.raises(ValueError, match="out of range"):
        aigi.create_detector("hf_classifier", source=str(folder), fake_label=7)
    with pytest.raises(ValueError, match="one must mean real"):
        aigi.create_detector("hf_classifier", source=str(folder), fake_label=[0, 1, 2])


def test_processor_settings_that_cannot_be_reproduced_are_refused():
    base = {"do_resize": True, "size": {"height": 224, "width": 224}, "resample": 2}
    assert preprocess_from_processor(base).test == "resize"
    old_style = preprocess_from_processor({"size": 256, "do_center_crop": True, "crop_size": 256, "resample": 3})
    assert (old_style.test, old_style.size, old_style.interpolation) == ("resize", 256, "bicubic")
    crop = preprocess_from_processor({"size": {"shortest_edge": 256}, "do_center_crop": True, "crop_size": 224})
    assert (crop.test, crop.resize_to, crop.size, crop.normalize) == ("resize_center_crop", 256, 224, "none")
    assert preprocess_from_processor({"do_resize": False, "do_center_crop": False}).test == "none"
    with pytest.raises(ValueError, match="resample=1"):
        preprocess_from_processor({**base, "resample": 1})
    with pytest.raises(ValueError, match="not a square"):
        preprocess_from_processor({**base, "size": {"height": 224, "width": 160}})
    with pytest.raises(ValueError, match="varying size"):
        preprocess_from_processor({**base, "size": {"shortest_edge": 224}})


def test_head_only_training_and_reload_without_the_source(tmp_path):
    folder = save_vit(tmp_path / "vit")
    det = aigi.create_detector("hf_classifier", source=str(folder), fake_label="artificial", trainable="head")
    names = {n for n, p in det.named_parameters() if p.requires_grad}
    assert names == {"model.classifier.weight", "model.classifier.bias"}
    det.save_pretrained(tmp_path / "det")
    for f in folder.iterdir():  # the saved detector needs nothing from the transformers folder
        f.unlink()
    again = load_detector(tmp_path / "det").eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(again(x), det.eval()(x))
    assert again.preprocess_config() == det.preprocess_config()


def test_import_hf_then_eval_and_bench_report(tmp_path, image_tree):
    folder = save_vit(tmp_path / "vit")
    data = image_tree
    runner = CliRunner()
    r = runner.invoke(app, ["import-hf", str(folder), str(tmp_path / "det"), "--fake-label", "artificial"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "det" / "config.json").read_text())["method"] == "hf_classifier"
    r = runner.invoke(app, ["eval", str(data), "--model", str(tmp_path / "det"), "--output", str(tmp_path / "ev")])
    assert r.exit_code == 0, r.output
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["method"] == "hf_classifier" and metrics["mean"]["n_real"] == 16
    assert metrics["preprocess"]["test"] == "resize" and metrics["preprocess"]["size"] == 32

    npr = tmp_path / "npr"
    aigi.create_detector("npr", **aigi.detectors.detector_class("npr").tiny_overrides).save_pretrained(npr)
    protocol = {
        "name": "hub-vs-npr",
        "data": {"test": str(data)},
        "calibration": {"fpr": 0.25, "holdout": 0.25},
        "detectors": [{"name": "vit-hub", "model": str(tmp_path / "det")}, {"name": "npr", "model": str(npr)}],
        "tasks": {"generalization": {}},
        "metrics": {"bootstrap": 20},
        "run": {"batch_size": 4, "progress": False},
    }
    path = tmp_path / "bench.yaml"
    path.write_text(json.dumps(protocol))
    r = runner.invoke(app, ["bench", str(path), "--output", str(tmp_path / "bench")])
    assert r.exit_code == 0, r.output
    report = (tmp_path / "bench" / "report.md").read_text()
    rows = [line for line in report.splitlines() if line.startswith("| vit-hub ") or line.startswith("| npr ")]
    assert {r.split("|")[1].strip() for r in rows} == {"vit-hub", "npr"}, report
