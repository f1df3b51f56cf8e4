"""End to end: ``aigi train configs/tiny/dffreq.yaml`` then ``aigi eval``, on the built-in benchmark at 32 px."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from aigi.cli import app
from aigi.data.synthetic import generate_benchmark
from aigi.detectors import load_detector

RECIPE = Path(__file__).resolve().parents[2] / "configs" / "tiny" / "dffreq.yaml"


def test_train_then_eval_tiny_recipe(tmp_path):
    data = generate_benchmark(tmp_path / "data", per_class=8, size=32, generators=["gan", "diffusion"], seed=3)
    run = tmp_path / "run"
    runner = CliRunner()
    res = runner.invoke(app, ["train", str(RECIPE), f"data.train={data}", "max_steps=2", "batch_size=4",
                              "--output", str(run)])
    assert res.exit_code == 0, res.output
    model = load_detector(run)
    assert model.method == "dffreq" and model.config.preprocess.size == 32
    assert json.loads((run / "training.json").read_text())["steps"] == 2

    res = runner.invoke(app, ["eval", "--model", str(run), str(data), "--output", str(tmp_path / "eval")])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert set(report["subsets"]) == {"gan", "diffusion"}
    for m in report["subsets"].values():
        assert (m["n_real"], m["n_fake"]) == (8, 8)
        assert 0.0 <= m["acc"] <= 1.0
    assert report["method"] == "dffreq"
