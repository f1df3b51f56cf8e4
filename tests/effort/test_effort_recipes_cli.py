"""The recipes validate and say what the method notes say; `aigi train` → `aigi eval` end to end (tiny)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import aigi
from aigi.cli import app
from aigi.detectors import detector_class
from aigi.train.config import load_recipe

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
RECIPES = ["effort_progan", "effort_genimage_sdv14", "masm_progan", "selop_progan",
           "tiny/effort", "tiny/masm", "tiny/selop"]


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_validates(name):
    cfg = load_recipe(CONFIGS / f"{name}.yaml")
    det = detector_class(cfg.detector).config_class.from_overrides(cfg.overrides)
    assert det.preprocess.train == "translate_duplicate_random_crop"
    assert det.preprocess.test == "translate_duplicate"
    assert det.preprocess.normalize == "clip"
    assert cfg.augment.effective_blur_prob == 0 and cfg.augment.effective_jpeg_prob == 0
    assert cfg.adapter_only
    if name.startswith("tiny/"):
        assert det.backbone.source == "tiny" and cfg.data.train.endswith("runs/tiny-data")
    else:
        assert det.backbone.source == "openai/clip-vit-large-patch14"


def test_recipe_a_is_the_univfd_protocol():
    cfg = load_recipe(CONFIGS / "effort_progan.yaml")
    det = detector_class("effort").config_class.from_overrides(cfg.overrides)
    assert (cfg.batch_size, cfg.max_steps, cfg.epochs) == (48, 18000, None)
    assert (cfg.optimizer.name, cfg.optimizer.lr, cfg.optimizer.weight_decay) == ("adamw", 2e-4, 0.0)
    assert cfg.scheduler.name == "constant" and cfg.scheduler.warmup_steps == 0
    assert cfg.data.layout == "progan" and cfg.data.subsets is None
    assert det.preprocess.resize_to == 256 and det.preprocess.flip
    assert (det.targets, det.trainable_rank, det.head, det.orthogonality, det.keep_singular_values) == \
        ("attention", 1, "one_logit", "off", False)


def test_genimage_recipe_trains_on_sd_v14():
    cfg = load_recipe(CONFIGS / "effort_genimage_sdv14.yaml")
    assert (cfg.data.layout, cfg.data.split, cfg.data.subsets) == ("genimage", "train", ["stable_diffusion_v_1_4"])
    assert detector_class("effort").config_class.from_overrides(cfg.overrides).head == "two_logit"


def write_images(root: Path, n: int = 8) -> Path:
    rng = np.random.default_rng(0)
    for label in ("0_real", "1_fake"):
        folder = root / "toy" / label
        folder.mkdir(parents=True)
        for i in range(n):
            h, w = (int(v) for v in rng.integers(32, 49, size=2))
            Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return root


@pytest.mark.parametrize("method", ["effort", "masm", "selop"])
def test_train_then_eval_end_to_end(tmp_path, method):
    data = write_images(tmp_path / "data")
    run = tmp_path / "run"
    runner = CliRunner()
    res = runner.invoke(app, ["train", str(CONFIGS / "tiny" / f"{method}.yaml"), f"data.train={data}",
                              "max_steps=2", "batch_size=4", "--output", str(run)])
    assert res.exit_code == 0, res.output
    meta = json.loads((run / "config.json").read_text())
    assert meta["method"] == method and meta["adapter_only"] is True
    model = aigi.load_detector(run)
    assert model.method == method
    res = runner.invoke(app, ["eval", str(data), "--model", str(run), "--output", str(tmp_path / "eval")])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert report["method"] == method and report["skipped"] == []
    assert report["subsets"]["toy"]["n_real"] == 8 and report["subsets"]["toy"]["n_fake"] == 8
