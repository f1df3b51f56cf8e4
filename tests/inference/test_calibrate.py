"""`aigi calibrate` writes calibration.json; detect and serve then answer real, fake or uncertain."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from aigi.cli import app
from aigi.evaluate.calibration import abstain_summary, threshold_at_fnr
from aigi.evaluate.runner import Interrupted, evaluate
from aigi.inference.calibrate import data_sha256

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def _eval_scores(model):
    rows = list(csv.DictReader((model / "eval" / "scores.csv").open()))
    return rows


def test_calibrate_writes_the_file_and_meets_its_rates(tiny_dir, image_tree):
    r = run("calibrate", "--model", tiny_dir, image_tree, "--fpr", "0.25", "--fnr", "0.25", "--device", "cpu")
    assert r.exit_code == 0, r.output
    cal = json.loads((tiny_dir / "calibration.json").read_text())
    for key in ("threshold", "target_fpr", "fpr", "tpr", "n_real", "n_fake", "data_sha256", "date", "band"):
        assert key in cal, key
    assert cal["n_real"] == 16 and cal["n_fake"] == 16 and cal["target_fpr"] == 0.25
    # the numbers it states are what the same scores give
    assert run("eval", "--model", tiny_dir, image_tree, "--device", "cpu").exit_code == 0
    rows = _eval_scores(tiny_dir)
    reals = np.array([float(x["score"]) for x in rows if x["label"] == "0"])
    fakes = np.array([float(x["score"]) for x in rows if x["label"] == "1"])
    t = cal["threshold"]
    assert np.mean(reals >= t) == cal["fpr"] <= 0.25
    assert np.mean(fakes >= t) == cal["tpr"]
    band = cal["band"]
    assert band["high"] == t and band["low"] <= band["high"]
    assert band["low"] == min(threshold_at_fnr(fakes, 0.25), t)
    assert np.mean(fakes < band["low"]) == band["fnr"] <= 0.25
    # the data hash depends on content and labels, not on names
    assert cal["data_sha256"] == data_sha256([(p, 0) for p in sorted((image_tree).glob("*/0_real/*.png"))]
                                             + [(p, 1) for p in sorted(image_tree.glob("*/1_fake/*.png"))])


def test_detect_calibrated_with_a_band_says_uncertain(tiny_dir, image_tree, tmp_path):
    r = run("calibrate", "--model", tiny_dir, image_tree, "--fpr", "0.5", "--band-width", "0.5", "--device", "cpu")
    assert r.exit_code == 0, r.output
    out = tmp_path / "out.csv"
    r = run("detect", "--model", tiny_dir, image_tree / "a", "--calibrated", "--output", out, "--device", "cpu")
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 16 and {x["verdict"] for x in rows} == {"uncertain"}  # the band covers [0, 1)
    r = run("detect", "--model", tiny_dir, image_tree / "a", "--output", out, "--device", "cpu",
            "--dtype", "bfloat16", "--band-width", "0")
    assert r.exit_code == 0, r.output
    assert {x["verdict"] for x in csv.DictReader(out.open())} <= {"real", "fake"}


def test_calibrate_errors(tiny_dir, image_tree, tmp_path):
    reals_only = tmp_path / "reals"
    (reals_only / "x" / "0_real").mkdir(parents=True)
    for p in list((image_tree / "a" / "0_real").iterdir())[:3]:
        (reals_only / "x" / "0_real" / p.name).write_bytes(p.read_bytes())
    r = run("calibrate", "--model", tiny_dir, reals_only, "--fnr", "0.1", "--device", "cpu")
    assert r.exit_code == 1 and "needs fake" in r.output
    r = run("calibrate", "--model", tiny_dir, image_tree, "--fnr", "0.1", "--band-width", "0.1")
    assert r.exit_code == 1 and "not both" in r.output
    r = run("calibrate", "--model", tiny_dir, image_tree, "--fpr", "1.5")
    assert r.exit_code == 1 and "--fpr" in r.output


def test_abstain_summary_counts_what_is_left_to_a_human():
    s = abstain_summary([0, 0, 0, 1, 1, 1], [0.1, 0.45, 0.7, 0.5, 0.8, 0.2], low=0.4, high=0.6)
    assert s["n_uncertain"] == 2 and s["uncertain_rate"] == pytest.approx(2 / 6)
    assert s["acc_decided"] == pytest.approx(2 / 4)  # 0.1 real ok, 0.7 real wrong, 0.8 fake ok, 0.2 fake wrong
    assert s["uncertain_real"] == pytest.approx(1 / 3) and s["uncertain_fake"] == pytest.approx(1 / 3)


def test_ctrl_c_during_eval_keeps_the_scores_and_exits_130(tiny_dir, image_tree, tmp_path, monkeypatch):
    import aigi

    det = aigi.load_detector(tiny_dir).for_inference()
    forward, calls = det.forward, []

    def interrupted(pixels):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return forward(pixels)

    det.forward = interrupted
    with pytest.raises(Interrupted) as info:
        evaluate(det, image_tree, output=tmp_path / "ev", batch_size=4, device="cpu")
    assert info.value.scored == 8
    lines = (tmp_path / "ev" / "scores.csv").read_text().splitlines()
    assert lines[0] == "path,subset,label,score" and len(lines) == 1 + 8
    assert not (tmp_path / "ev" / "metrics.json").exists()

    def stop(*args, **kwargs):
        raise Interrupted(8, tmp_path / "ev" / "scores.csv")

    import aigi.evaluate

    monkeypatch.setattr(aigi.evaluate, "evaluate", stop)
    r = run("eval", "--model", tiny_dir, image_tree, "--output", tmp_path / "ev2")
    assert r.exit_code == 130 and "8 score(s) were written to" in r.output and "scores.csv" in r.output
