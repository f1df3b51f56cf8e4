"""`aigi train`, `eval`, `detect` and `list`, end to end on images the test writes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from aigi.cli import app
from aigi.evaluate.runner import EXIT_SOME_SKIPPED

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def trained(image_tree, tmp_path) -> Path:
    recipe = tmp_path / "npr.yaml"
    recipe.write_text(yaml.safe_dump({
        "detector": "npr",
        "overrides": {"blocks": [1, 1], "width": 4, "preprocess.size": 32, "preprocess.resize_to": 36},
        "data": {"train": str(image_tree)},
        "batch_size": 4,
        "max_steps": 2,
    }))
    res = run("train", recipe, "--output", tmp_path / "model", "log_every=1")
    assert res.exit_code == 0, res.output
    return tmp_path / "model"


def test_list_names_every_baseline():
    res = run("list")
    assert res.exit_code == 0
    for name in ("cnnspot", "univfd", "npr"):
        assert name in res.output


def test_eval_writes_metrics_and_scores(trained, image_tree, tmp_path):
    res = run("eval", "--model", trained, image_tree, "--output", tmp_path / "ev")
    assert res.exit_code == 0, res.output
    assert "mean" in res.output and "R.Acc" in res.output
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert set(metrics["subsets"]) == {"a", "b"}
    for key in ("acc", "r_acc", "f_acc", "ap", "auroc", "eer", "tpr_at_fpr_1", "tpr_at_fpr_5"):
        assert key in metrics["mean"] and key in metrics["subsets"]["a"]
    assert metrics["preprocess"]["test"] == "resize" and not metrics["preprocess_overridden"]  # NPR's official test protocol
    rows = list(csv.DictReader((tmp_path / "ev" / "scores.csv").open()))
    assert len(rows) == 32 and set(rows[0]) == {"path", "subset", "label", "score"}
    assert all(0.0 <= float(r["score"]) <= 1.0 for r in rows)


def test_eval_reports_and_skips_a_broken_file(trained, image_tree, tmp_path):
    (image_tree / "a" / "1_fake" / "broken.png").write_bytes(b"not an image at all")
    res = run("eval", "--model", trained, image_tree, "--output", tmp_path / "ev")
    assert res.exit_code == EXIT_SOME_SKIPPED  # something was skipped: the exit code says so
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert len(metrics["skipped"]) == 1 and "not_an_image" in metrics["skipped"][0]["reason"]
    assert metrics["mean"]["n_real"] + metrics["mean"]["n_fake"] == 32


def test_detect_csv_jsonl_and_exit_codes(trained, image_tree, tmp_path):
    res = run("detect", "--model", trained, image_tree / "a", "--output", tmp_path / "out.csv")
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader((tmp_path / "out.csv").open()))
    assert len(rows) == 16 and {r["verdict"] for r in rows} <= {"real", "fake"}
    (image_tree / "a" / "0_real" / "cut.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 20)
    (image_tree / "a" / "notes.txt").write_text("not an image, ignored in folders")
    res = run("detect", "--model", trained, image_tree / "a", "--output", tmp_path / "out.jsonl")
    assert res.exit_code == EXIT_SOME_SKIPPED
    assert "cut.jpg" in res.output
    lines = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(lines) == 16 and set(lines[0]) == {"path", "p_fake", "verdict"}


def test_detect_named_missing_file_is_reported(trained, tmp_path):
    res = run("detect", "--model", trained, tmp_path / "nope.png")
    assert res.exit_code == EXIT_SOME_SKIPPED and "no such file" in res.output


def test_eval_on_a_non_model_folder_is_a_clear_error(image_tree, tmp_path):
    res = run("eval", "--model", tmp_path, image_tree)
    assert res.exit_code == 1 and "not a detector folder" in res.output


def test_train_with_a_bad_recipe_is_a_clear_error(tmp_path):
    (tmp_path / "r.yaml").write_text("detector: npr\nmax_steps: 1\n")
    res = run("train", tmp_path / "r.yaml")
    assert res.exit_code == 1 and "data" in res.output


def test_eval_on_shared_real_images(trained, shared_data, tmp_path):
    """The real sample set (JPEGs named .png, odd sizes) runs end to end."""
    res = run("eval", "--model", trained, shared_data / "dif-6gen", "--output", tmp_path / "ev")
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert len(metrics["subsets"]) == 6 and metrics["skipped"] == []
