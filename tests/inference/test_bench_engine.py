"""The benchmark scores through the shared engine: dtype keeps its own store key; --calibrate writes calibration.json."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aigi.benchmark.protocol import protocol_from_dict
from aigi.benchmark.run import run_protocol, score_identity, write_bench_calibration
from aigi.benchmark.store import ResultStore, weights_sha256
from aigi.detectors.folder import read_calibration
from inference_helpers import save_tiny, write_pngs


def _protocol(test, calib, model):
    return protocol_from_dict({
        "name": "eng", "data": {"test": str(test)}, "calibration": {"data": str(calib), "fpr": 0.25},
        "detectors": [{"name": "npr", "model": str(model)}], "metrics": {"bootstrap": 0},
        "run": {"batch_size": 8, "progress": False, "device": "cpu"},
    })


def test_bfloat16_scores_are_stored_apart_and_calibration_is_written(image_tree, tmp_path):
    model = save_tiny(tmp_path / "model")
    write_pngs(tmp_path / "calib" / "x" / "0_real", 8, seed=5)
    proto = _protocol(image_tree, tmp_path / "calib", model)
    f32 = run_protocol(proto, tmp_path / "out", report=False)
    bf16 = run_protocol(proto, tmp_path / "out", report=False, dtype="bfloat16")
    assert f32.scored == bf16.scored == 40 and bf16.reused == 0  # nothing reused across dtypes
    wh = weights_sha256(model)
    with ResultStore(f32.store) as store:
        keys = {r[0] for r in store.conn.execute("SELECT DISTINCT weights_hash FROM scores")}
        assert keys == {wh, score_identity(wh, "bfloat16")}
        again = run_protocol(proto, tmp_path / "out", report=False)
        assert again.scored == 0 and again.reused == 40
    with ResultStore(f32.store) as store:
        from aigi.benchmark.run import ResolvedDetector

        d = ResolvedDetector("npr", model, wh)
        path = write_bench_calibration(store, proto, proto.digest(), d, "float32")
        reals = [r[2] for r in store.scores_for(proto.digest(), wh, "clean", role="calibration")]
    cal = read_calibration(model)
    assert path == model / "calibration.json" and cal.n_real == 8 and cal.target_fpr == 0.25
    assert np.mean(np.asarray(reals) >= cal.threshold) == cal.fpr <= 0.25
    assert json.loads(path.read_text())["protocol_sha256"] == proto.digest()
    with pytest.raises(ValueError, match="dtype must be one of"):
        run_protocol(proto, tmp_path / "out", report=False, dtype="int4")


def test_cli_bench_calibrate_writes_calibration_for_the_models_it_trains(image_tree, tmp_path):
    import yaml
    from typer.testing import CliRunner

    from aigi.cli import app

    recipe = tmp_path / "npr.yaml"
    recipe.write_text(yaml.safe_dump({
        "detector": "npr", "data": {"train": str(image_tree)}, "batch_size": 4, "max_steps": 1,
        "checkpoint_every": 1000,
        "overrides": {"blocks": [1, 1], "width": 4, "preprocess.size": 32, "preprocess.resize_to": 36},
    }))
    fixed = save_tiny(tmp_path / "fixed")
    write_pngs(tmp_path / "calib" / "x" / "0_real", 6, seed=5)
    proto = tmp_path / "p.yaml"
    proto.write_text(yaml.safe_dump({
        "name": "cal", "data": {"test": str(image_tree)}, "calibration": {"data": str(tmp_path / "calib"), "fpr": 0.2},
        "detectors": [{"name": "trained", "recipe": str(recipe)}, {"name": "given", "model": str(fixed)}],
        "metrics": {"bootstrap": 0}, "run": {"batch_size": 8, "progress": False},
    }))
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["bench", str(proto), "-o", str(out), "--calibrate", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    cal = read_calibration(out / "models" / "trained")
    assert cal.n_real == 6 and cal.target_fpr == 0.2 and cal.fpr <= 0.2 and cal.dtype == "float32"
    assert not (fixed / "calibration.json").exists()  # a model the run did not train is left alone
    r = CliRunner().invoke(app, ["bench", str(proto), "-o", str(out), "--dtype", "int8"])
    assert r.exit_code == 1 and "dtype must be one of" in r.output


def test_report_shows_the_share_left_to_a_human_for_a_banded_detector(image_tree, tmp_path):
    from aigi.benchmark.tables import leaderboard
    from aigi.detectors.folder import AbstainBand, Calibration, write_calibration

    model = save_tiny(tmp_path / "model")
    write_pngs(tmp_path / "calib" / "x" / "0_real", 4, seed=5)
    plain = run_protocol(_protocol(image_tree, tmp_path / "calib", model), tmp_path / "plain")
    head, rows = leaderboard(plain.results)
    assert "uncertain" not in head
    write_calibration(model, Calibration(threshold=0.5, band=AbstainBand(low=0.0, high=1.0)))  # every score inside
    res = run_protocol(_protocol(image_tree, tmp_path / "calib", model), tmp_path / "banded")
    head, rows = leaderboard(res.results)
    assert head[-1] == "uncertain" and rows[0][-1] == "100.0"
    assert res.results.get("npr", "clean").subsets["a"]["uncertain"] == 1.0
