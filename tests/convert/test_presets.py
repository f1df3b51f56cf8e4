"""Presets by name: in configs, in ``aigi eval --preprocess``, and as each detector's default."""

from __future__ import annotations

import json

import numpy as np
import pydantic
import pytest
from PIL import Image
from typer.testing import CliRunner

import aigi
from aigi.cli import app
from aigi.data.transforms import PRESETS, PreprocessConfig, preset, preset_name
from aigi.detectors.registry import detector_class


def test_a_preset_name_stands_for_its_config_everywhere_a_config_is_read():
    assert PreprocessConfig.model_validate("native") == PRESETS["native"].config
    model = aigi.create_detector("npr", **detector_class("npr").tiny_overrides, preprocess="cnnspot-no-crop")
    assert model.config.preprocess.test == "none"
    assert preset_name(model.config.preprocess) in ("native", "cnnspot-no-crop")  # the same geometry
    with pytest.raises(pydantic.ValidationError, match="unknown preprocessing preset 'nope'; known presets: cnnspot"):
        PreprocessConfig.model_validate("nope")
    # presets are copies: changing one result never changes the registry
    p = preset("native")
    p.size = 1
    assert PRESETS["native"].config.size == 224


@pytest.mark.parametrize("method, name", [
    ("npr", "forensynths-resize256"), ("cnnspot", "cnnspot-center-crop224"), ("univfd", "univfd-center-crop224"),
    ("dffreq", "dffreq-center-crop256"), ("effort", "effort-translate-duplicate"),
])
def test_each_detector_defaults_to_its_official_protocol(method, name):
    assert detector_class(method).config_class().preprocess == PRESETS[name].config


def test_every_preset_documents_its_protocol():
    for name, p in PRESETS.items():
        assert len(p.protocol) > 40, name
    assert PRESETS["dgsnet-patch-selection"].config.normalize == "imagenet"
    assert PRESETS["deepfakebench-resize224"].config.test == "resize"


def test_eval_accepts_a_preset_by_name(tmp_path):
    model = aigi.create_detector("npr", **detector_class("npr").tiny_overrides)
    model.save_pretrained(tmp_path / "m")
    rng = np.random.default_rng(0)
    for label, sizes in (("0_real", [(40, 36), (48, 48)]), ("1_fake", [(36, 52), (44, 40)])):
        folder = tmp_path / "data" / "sub" / label
        folder.mkdir(parents=True)
        for i, (w, h) in enumerate(sizes):
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    runner = CliRunner()
    result = runner.invoke(app, ["eval", str(tmp_path / "data"), "--model", str(tmp_path / "m"),
                                 "--preprocess", "native", "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["preprocess"]["test"] == "none" and metrics["preprocess_overridden"] is True
    bad = runner.invoke(app, ["eval", str(tmp_path / "data"), "--model", str(tmp_path / "m"),
                              "--preprocess", "nope", "-o", str(tmp_path / "out2")])
    assert bad.exit_code == 1 and "known presets" in bad.output


def test_effort_imports_carry_their_codebases_preset(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "effort"))
    from test_effort_convert import deepfakebench_file, univfd_file

    from aigi.convert.effort import convert_effort_official

    dfb = convert_effort_official(deepfakebench_file(tmp_path)[0], tmp_path / "dfb", backbone="tiny")
    got = aigi.load_detector(dfb).config.preprocess  # the 'tiny' tower's side (32) replaces 224
    assert got.model_copy(update={"size": 224}) == PRESETS["deepfakebench-resize224"].config
    record = json.loads((dfb / "conversion.json").read_text())
    assert record["layout"] == "deepfakebench" and record["preset"] == "deepfakebench-resize224"
    uni = convert_effort_official(univfd_file(tmp_path)[0], tmp_path / "uni", backbone="tiny")
    assert json.loads((uni / "conversion.json").read_text())["preset"] == "effort-translate-duplicate"
    chosen = convert_effort_official(univfd_file(tmp_path)[0], tmp_path / "ch", backbone="tiny", preset="native")
    assert aigi.load_detector(chosen).config.preprocess.test == "none"


def test_baseline_imports_carry_their_codebases_preset(tmp_path):
    import torch

    from aigi.convert.baselines import convert_cnnspot, convert_npr

    for method, convert, name in (("npr", convert_npr, "forensynths-resize256"),
                                  ("cnnspot", convert_cnnspot, "cnnspot-center-crop224")):
        state = aigi.create_detector(method, **detector_class(method).tiny_overrides).net.state_dict()
        ckpt = tmp_path / f"{method}.pth"
        torch.save({"model": state}, ckpt)
        out = convert(ckpt, tmp_path / method)
        assert aigi.load_detector(out).config.preprocess == PRESETS[name].config
        assert json.loads((out / "conversion.json").read_text())["preset"] == name
        again = convert(ckpt, tmp_path / f"{method}-native", preset="native")
        assert aigi.load_detector(again).config.preprocess.test == "none"


def test_cnnspot_head_bias_keeps_pytorchs_default_init():
    import torch

    torch.manual_seed(0)
    biases = [float(aigi.create_detector("cnnspot").net.fc.bias) for _ in range(3)]
    # nn.Linear(2048, 1): bias ~ U(-1/sqrt(2048), 1/sqrt(2048)); the official trainer re-draws only the weight
    assert all(b != 0.0 and abs(b) <= 2048 ** -0.5 for b in biases)


def test_a_protocol_can_override_preprocessing_with_a_preset(tmp_path):
    import torch

    from aigi.benchmark.protocol import protocol_from_dict
    from aigi.benchmark.run import run_protocol
    from aigi.benchmark.store import ResultStore, weights_sha256

    rng = np.random.default_rng(0)
    for label in ("0_real", "1_fake"):
        folder = tmp_path / "test" / "g" / label
        folder.mkdir(parents=True)
        for i, size in enumerate((36, 40, 44)):
            Image.fromarray(rng.integers(0, 256, (size, size + 2, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    torch.manual_seed(0)
    aigi.create_detector("npr", **detector_class("npr").tiny_overrides).save_pretrained(tmp_path / "npr")
    proto = protocol_from_dict({
        "name": "presets", "data": {"test": str(tmp_path / "test")},
        "detectors": [{"name": "npr", "model": str(tmp_path / "npr")}],
        "tasks": {"generalization": {}, "preprocessing": {"modes": ["native", "center_crop"]}},
        "metrics": {"bootstrap": 0}, "run": {"batch_size": 4, "progress": False},
    })
    res = run_protocol(proto, tmp_path / "out", report=False)
    assert res.scored == 3 * 6  # clean, native (one image per batch: sizes differ), center_crop
    with ResultStore(res.store) as store:
        pre = store.condition_preprocess(weights_sha256(tmp_path / "npr"), "clean|pre=native")
    assert pre == PRESETS["native"].config.model_dump(mode="json")
    with pytest.raises(ValueError, match="preprocessing"):
        protocol_from_dict({"name": "x", "data": {"test": str(tmp_path / "test")},
                            "detectors": [{"name": "npr", "model": str(tmp_path / "npr")}],
                            "tasks": {"preprocessing": {"modes": ["no-such-preset"]}}})


def test_native_size_models_score_images_of_different_sizes(tmp_path):
    aigi.create_detector("npr", **detector_class("npr").tiny_overrides, preprocess="native").save_pretrained(
        tmp_path / "m")
    photos = tmp_path / "p"
    photos.mkdir()
    for i, s in enumerate((36, 40, 44)):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (s, s + 1, 3), dtype=np.uint8)).save(photos / f"{i}.png")
    result = CliRunner().invoke(app, ["detect", "--model", str(tmp_path / "m"), str(photos), "--batch-size", "8"])
    assert result.exit_code == 0, result.output
    assert "scored 3 image(s), skipped 0" in " ".join(result.output.split())
