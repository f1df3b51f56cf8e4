"""The runner end to end on tiny models: store contents, reuse, kill -9 and resume, training, report, CLI."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

import aigi
from aigi.detectors import detector_class
from aigi.benchmark.run import run_protocol
from aigi.benchmark.protocol import protocol_from_dict
from aigi.benchmark.store import ResultStore


def _images(root: Path, subsets=("ga", "gb"), n: int = 10, size: int = 40, seed: int = 0) -> Path:
    """Reals: noise; fakes: 2x nearest up-sampled noise (an NPR-visible trace)."""
    rng = np.random.default_rng(seed)
    for sub in subsets:
        for lab in ("0_real", "1_fake"):
            d = root / sub / lab
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                if lab == "0_real":
                    a = rng.integers(0, 256, (size, size, 3))
                else:
                    a = np.repeat(np.repeat(rng.integers(0, 256, (size // 2, size // 2, 3)), 2, 0), 2, 1)
                Image.fromarray(a.astype(np.uint8)).save(d / f"{i:03d}.png")
    return root


def _model(path: Path, name: str, **extra) -> Path:
    torch_seed = {"npr": 1, "cnnspot": 2}[name]
    import torch

    torch.manual_seed(torch_seed)
    aigi.create_detector(name, **{**detector_class(name).tiny_overrides, **extra}).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bench")
    return {
        "root": root,
        "test": _images(root / "test"),
        "calib": _images(root / "calib", subsets=("c",), n=8, seed=5),
        "train": _images(root / "train", n=6, seed=9),
        "npr": _model(root / "npr", "npr"),
        "cnn": _model(root / "cnn", "cnnspot"),
    }


def _protocol(world, **tasks) -> dict:
    return {
        "name": "unit",
        "data": {"test": str(world["test"])},
        "calibration": {"data": str(world["calib"]), "fpr": 0.1},
        "detectors": [{"name": "npr", "model": str(world["npr"])}, {"name": "cnn", "model": str(world["cnn"])}],
        "tasks": tasks or {"generalization": {}},
        "metrics": {"bootstrap": 50},
        "run": {"batch_size": 4, "progress": False},
    }


def test_run_scores_everything_once_and_matches_eval(world, tmp_path):
    proto = protocol_from_dict(_protocol(
        world, generalization={}, robustness={"degradations": ["jpeg:75", "noise:0.05"]},
        preprocessing={"modes": ["center_crop", "resize"]},
    ))
    res = run_protocol(proto, tmp_path / "out")
    n_test, n_cal = 40, 8  # test images; calibration reals (the calib folder's fakes are not used)
    # per detector: clean (+cal) + 2 degradations + the other mode (+cal): the tiny NPR's own test mode is
    # resize (NPR's official protocol), the tiny CNNSpot's center_crop
    expected = 2 * ((n_test + n_cal) + 2 * n_test + (n_test + n_cal))
    assert res.scored == expected and res.reused == 0
    with ResultStore(res.store) as store:
        assert len(store.all_scores()) == expected
        conds = {r[0] for r in store.conn.execute("SELECT DISTINCT condition FROM scores")}
        assert conds == {"clean", "jpeg:75", "noise:0.05", "clean|pre=resize", "clean|pre=center_crop"}
        rows = store.conn.execute("SELECT DISTINCT protocol_hash FROM scores").fetchall()
        assert rows == [(proto.digest(),)]
        pre = store.condition_preprocess(res.results.detectors["cnn"]["weights_hash"], "clean|pre=resize")
        assert pre["test"] == "resize" and pre["size"] == 32
        before = store.all_scores()
    # the clean metrics equal the engine's own evaluation of the same model and data
    from aigi.evaluate import evaluate

    ref = evaluate(world["npr"], world["test"])
    got = res.results.get("npr", "clean")
    for subset, m in ref["subsets"].items():
        for key in ("acc", "r_acc", "f_acc", "ap", "auroc"):
            assert got.subsets[subset][key] == pytest.approx(m[key], abs=1e-9), (subset, key)
    # bootstrap intervals hold the point estimate (ACC, AUROC); a percentile interval of AP need not: a
    # resample's duplicated images tie and AP rewards ties, so its resampled values sit above the
    # point estimate on a subset this small (40 images, AP near 0.33 here)
    for m in got.subsets.values():
        for key in ("acc", "auroc"):
            assert m["ci"][key]["low"] <= m[key] <= m["ci"][key]["high"], key
        assert m["ci"]["ap"]["low"] <= m["ci"]["ap"]["high"] and m["ap"] <= m["ci"]["ap"]["high"]
    # the calibrated threshold meets its FPR on the calibration reals
    with ResultStore(res.store) as store:
        cal = [r[2] for r in store.scores_for(proto.digest(), res.results.detectors["cnn"]["weights_hash"], "clean",
                                              role="calibration")]
    t = res.results.get("cnn", "clean").cal_threshold
    assert len(cal) == n_cal and np.mean(np.asarray(cal) >= t) <= 0.1

    # a second run computes nothing and changes nothing
    again = run_protocol(proto, tmp_path / "out", report=False)
    assert again.scored == 0 and again.reused == expected
    with ResultStore(res.store) as store:
        assert store.all_scores() == before
        assert [r["status"] for r in store.runs()] == ["finished", "finished"]

    # the report: markdown, self-contained HTML, plots
    out = tmp_path / "out"
    md = (out / "report.md").read_text()
    assert proto.digest() in md
    for name in ("npr", "cnn"):
        assert res.results.detectors[name]["weights_hash"][:16] in md
    assert "| detector | R.Acc | F.Acc | ACC | AP | AUROC | ACC@FPR10% | ECE |" in md
    for plot in ("roc", "subsets", "robustness", "preprocessing"):
        assert (out / "plots" / f"{plot}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"plots/{plot}.png" in md
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4
    assert "http://" not in html and "https://" not in html and "<link" not in html and "<script" not in html


_KILLED = textwrap.dedent(
    """
    import json, sys, time
    from aigi.benchmark.run import run_protocol
    from aigi.benchmark.protocol import protocol_from_dict
    proto = protocol_from_dict(json.loads(sys.argv[1]))
    run_protocol(proto, sys.argv[2], report=False, on_batch=lambda: time.sleep(0.15))
    """
)


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_store(world, tmp_path):
    # a subprocess is SIGKILLed mid-run (it imports torch: a few seconds)
    data = _protocol(world, generalization={}, robustness={"degradations": ["blur:1"]})
    proto = protocol_from_dict(data)
    full = run_protocol(proto, tmp_path / "uninterrupted", report=False)
    total = full.scored
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", _KILLED, json.dumps(data), str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    db = out / "results.sqlite"
    deadline = time.time() + 120
    seen = 0
    while seen < 12:  # a few batches committed, far from the end (batches of 4, 0.15 s apart)
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "the run never got going"
        if db.exists():
            try:
                with sqlite3.connect(db, timeout=5) as c:
                    seen = c.execute("SELECT COUNT(*) FROM scores").fetchone()[0]
            except sqlite3.OperationalError:  # schema not created yet
                pass
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with ResultStore(db) as store:
        partial = len(store.all_scores())
        assert 12 <= partial < total
        assert store.runs()[-1]["status"] == "running"  # it never got to say otherwise
    resumed = run_protocol(proto, out, report=False)
    assert resumed.scored == total - partial
    with ResultStore(db) as a, ResultStore(full.store) as b:
        assert a.all_scores() == b.all_scores()  # bit-identical scores and logits


def test_recipes_are_trained_once_and_augmentations_retrained(world, tmp_path):
    recipe = {
        "detector": "npr",
        "overrides": {"blocks": [1, 1], "width": 4, "preprocess.size": 32, "preprocess.resize_to": 36},
        "data": {"train": str(world["train"])},
        "batch_size": 4,
        "max_steps": 2,
        "checkpoint_every": 1000,
    }
    recipe_path = tmp_path / "npr.yaml"
    recipe_path.write_text(yaml.safe_dump(recipe))
    data = _protocol(world, generalization={}, augmentation={"detectors": ["trained"], "variants": ["none", "jpeg"]})
    data["detectors"] = [{"name": "trained", "recipe": str(recipe_path), "overrides": ["seed=3"]}]
    proto = protocol_from_dict(data)
    out = tmp_path / "out"
    res = run_protocol(proto, out)
    dets = res.results.detectors
    assert set(dets) == {"trained", "trained@none", "trained@jpeg"}
    assert dets["trained"]["info"]["trained"] is True
    # the 'none' variant is the recipe itself (no augmentation): same weights, not retrained
    assert dets["trained@none"]["weights_hash"] == dets["trained"]["weights_hash"]
    assert dets["trained@jpeg"]["weights_hash"] != dets["trained"]["weights_hash"]
    jpeg_cfg = yaml.safe_load((out / "models" / "trained-aug-jpeg" / "train_config.yaml").read_text())
    assert jpeg_cfg["augment"]["jpeg_prob"] == 0.5 and jpeg_cfg["augment"]["blur_prob"] == 0.0
    assert jpeg_cfg["seed"] == 3
    assert "## Sensitivity to training augmentation" in (out / "report.md").read_text()
    stamp = (out / "models" / "trained" / "model.safetensors").stat().st_mtime_ns
    again = run_protocol(proto, out, report=False)
    assert again.scored == 0
    assert (out / "models" / "trained" / "model.safetensors").stat().st_mtime_ns == stamp
    with ResultStore(again.store) as store:
        assert store.detectors(proto.digest())["trained"]["info"]["trained"] is False


def test_unusable_condition_is_recorded_not_fatal(world, tmp_path):
    odd = _model(tmp_path / "odd", "npr", **{"preprocess.size": 36})  # patch selection needs a multiple of 32
    data = _protocol(world, preprocessing={"modes": ["patch_selection"]})
    data["detectors"] = [{"name": "odd", "model": str(odd)}]
    res = run_protocol(protocol_from_dict(data), tmp_path / "out")
    assert res.failures == [("odd", "clean|pre=patch_selection", res.failures[0][2])]
    assert "multiple of 32" in res.failures[0][2]
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Conditions that could not be scored" in md and "failed" in md


def test_cli_bench_and_report(world, tmp_path):
    from aigi.cli import app

    path = tmp_path / "p.yaml"
    data = _protocol(world)
    data["data"]["test"] = "placeholder"
    path.write_text(yaml.safe_dump(data))
    runner = CliRunner()
    out = tmp_path / "out"
    r = runner.invoke(app, ["bench", str(path), f"data.test={world['test']}", "--output", str(out)])
    assert r.exit_code == 0, r.output
    assert "ACC@FPR10%" in r.output and "report:" in r.output
    (out / "report.md").unlink()
    r = runner.invoke(app, ["report", str(out)])
    assert r.exit_code == 0, r.output
    assert (out / "report.md").is_file() and (out / "report.html").is_file()
    r = runner.invoke(app, ["bench", str(path), "tasks.robustness.degradations=[jpg:75]", "-o", str(out)])
    assert r.exit_code == 1
    assert "unknown degradation 'jpg'" in r.output
    r = runner.invoke(app, ["report", str(tmp_path / "nothing")])
    assert r.exit_code == 1 and "holds no results.sqlite" in r.output


def test_report_says_when_scores_come_from_another_protocol(world, tmp_path):
    out = tmp_path / "out"
    first = protocol_from_dict(_protocol(world, generalization={}))
    run_protocol(first, out, report=False)
    second = protocol_from_dict(_protocol(world, generalization={}, robustness={"degradations": ["jpeg:50"]}))
    res = run_protocol(second, out)
    assert first.digest() != second.digest()
    assert res.reused == 2 * 48  # the clean scores of both detectors (test + calibration) were stored by the first
    md = (out / "report.md").read_text()
    note = f"computed under other protocol(s) ({first.digest()[:12]}…)"
    # the leaderboard and the robustness table hold reused clean scores; the note says so
    assert md.count(note) == 2
    with ResultStore(res.store) as store:
        assert {r["protocol_hash"] for r in store.runs()} == {first.digest(), second.digest()}
    # either protocol's report can be rendered from the same store
    from aigi.benchmark.report import collect

    with ResultStore(res.store) as store:
        old = collect(store, first.digest())
    assert old.protocol["tasks"]["robustness"] is None
    assert old.get("npr", "clean").mean["ap"] == res.results.get("npr", "clean").mean["ap"]
