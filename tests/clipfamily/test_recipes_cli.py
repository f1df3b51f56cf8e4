"""The recipes: every configs/*.yaml validates; every tiny recipe trains and evaluates via the CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aigi.cli import app
from aigi.detectors import detector_class, load_detector
from aigi.train.config import load_recipe

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
RECIPES = {
    "nsnet": "nsnet", "dgsnet_stage1": "dgsnet", "dgsnet_stage2": "dgsnet", "pinclip": "pinclip",
    "causalclip": "causalclip",
}
runner = CliRunner()


def run(*args) -> str:
    res = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


@pytest.mark.parametrize("recipe", sorted(RECIPES))
@pytest.mark.parametrize("tiny", [False, True])
def test_recipe_validates(recipe, tiny):
    path = CONFIGS / ("tiny" if tiny else "") / f"{recipe}.yaml"
    cfg = load_recipe(path)
    assert cfg.detector == RECIPES[recipe]
    det = detector_class(cfg.detector).config_class.from_overrides(cfg.overrides)  # no model build
    if recipe.startswith("dgsnet"):
        assert det.stage == int(recipe[-1])
    if recipe.startswith(("nsnet", "dgsnet")) and not tiny:
        assert (det.preprocess.train, det.preprocess.test, det.preprocess.size) == ("patch_selection",) * 2 + (224,)
    if recipe == "dgsnet_stage2" and not tiny:
        assert det.teacher_head == "runs/dgsnet_stage1" and det.lora.rank == 6 and det.lora.dropout == 0.8
        assert cfg.optimizer.lr == 1e-4 and cfg.batch_size == 32 and cfg.epochs == 1


def _manifest(tree: Path) -> Path:
    rows = []
    for i, img in enumerate(sorted(tree.rglob("*.png"))):
        label = 0 if img.parent.name == "0_real" else 1
        caption = None if i % 5 == 0 else f"a picture of object {i % 7}"
        rows.append({"path": str(img), "label": label, "caption": caption or "", "subset": img.parents[1].name})
    path = tree / "train.csv"
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["path", "label", "caption", "subset"])
        w.writeheader()
        w.writerows(rows)
    return path


def _train_and_eval(recipe: str, data: Path, out: Path, tree: Path, *extra: str) -> dict:
    run("train", CONFIGS / "tiny" / f"{recipe}.yaml", f"data.train={data}", "max_steps=2", "batch_size=4",
        "log_every=1", *extra, "--output", out)
    run("eval", "--model", out, tree, "--output", out / "ev")
    metrics = json.loads((out / "ev" / "metrics.json").read_text())
    assert set(metrics["subsets"]) == {"a", "b"}
    assert metrics["mean"]["n_real"] + metrics["mean"]["n_fake"] == 32
    return json.loads((out / "training.json").read_text())


# ~5 s: five tiny trainings and evaluations through the real CLI, the only end-to-end check of the recipes
def test_tiny_recipes_train_and_eval_end_to_end(image_tree, tmp_path):
    manifest = _manifest(image_tree)

    info = _train_and_eval("nsnet", manifest, tmp_path / "ns", image_tree, "data.layout=manifest")
    assert info["steps"] == 2 and {"bce", "supcon", "removed_dims"} <= set(info["final"])
    ns = load_detector(tmp_path / "ns")  # the paper's form: the null space fitted once on every training caption
    assert ns.nullspace.fitted_once
    assert info["final"]["removed_dims"] == pytest.approx(ns.embed_dim - ns.nullspace.null_dims)

    _train_and_eval("dgsnet_stage1", image_tree, tmp_path / "s1", image_tree)
    assert json.loads((tmp_path / "s1" / "config.json").read_text())["stage"] == 1
    info = _train_and_eval("dgsnet_stage2", manifest, tmp_path / "s2", image_tree, "data.layout=manifest",
                           f"overrides.teacher_head={tmp_path / 's1'}")
    assert {"l_img", "l_text", "l_help", "l_teacher"} <= set(info["final"])
    saved = json.loads((tmp_path / "s2" / "config.json").read_text())
    assert saved["stage"] == 2 and saved["teacher_head"] == str((tmp_path / "s1").resolve())

    info = _train_and_eval("pinclip", image_tree, tmp_path / "pin", image_tree, "adapter_only=true")
    assert {"ce", "kl"} <= set(info["final"])
    assert json.loads((tmp_path / "pin" / "config.json").read_text())["adapter_only"] is True

    info = _train_and_eval("causalclip", image_tree, tmp_path / "cc", image_tree)
    assert {"bce", "hsic", "ratio"} <= set(info["final"])


def test_stage2_recipe_without_stage1_fails_clearly(image_tree, tmp_path):
    res = runner.invoke(app, ["train", str(CONFIGS / "tiny" / "dgsnet_stage2.yaml"), f"data.train={image_tree}",
                              "max_steps=1", "batch_size=4", f"overrides.teacher_head={tmp_path / 'nothing'}",
                              "--output", str(tmp_path / "out")])
    assert res.exit_code == 1
    assert "is not a folder; train stage 1 first" in " ".join(res.output.split())
