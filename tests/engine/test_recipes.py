"""Every recipe in configs/ validates, names a registered detector and builds it (tiny ones train)."""

from pathlib import Path

import pytest

from aigi.detectors import detector_class
from aigi.train import load_recipe, train

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
RECIPES = sorted(p for p in CONFIGS.rglob("*.yaml") if "protocols" not in p.parts)


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_recipe_validates(path):
    cfg = load_recipe(path)
    cls = detector_class(cfg.detector)
    cls.config_class.from_overrides(cfg.overrides)


@pytest.mark.parametrize("name", ["npr", "cnnspot", "univfd"])
def test_tiny_baseline_recipe_trains(name, image_tree, tmp_path):
    cfg = load_recipe(CONFIGS / "tiny" / f"{name}.yaml", [f"data.train={image_tree}", "max_steps=2"])
    res = train(cfg, tmp_path / name, progress=False)
    assert res.steps == 2 and (tmp_path / name / "model.safetensors").is_file()
