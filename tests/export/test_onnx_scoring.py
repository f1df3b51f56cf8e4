"""An exported file scores through detect, the CLI and the web service like its PyTorch folder."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import aigi  # noqa: E402
from aigi.cli import app  # noqa: E402
from aigi.detectors import detector_class  # noqa: E402
from aigi.evaluate.runner import detect  # noqa: E402
from aigi.export import export_onnx  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny Effort folder (SVD residuals folded at export), its ONNX file, and a few images."""
    root = tmp_path_factory.mktemp("onnx-scoring")
    torch.manual_seed(4)
    model = aigi.create_detector("effort", **detector_class("effort").tiny_overrides)
    model.save_pretrained(root / "effort")
    onnx_path = export_onnx(root / "effort", root / "effort.onnx").path
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i, (w, h) in enumerate([(40, 40), (57, 33), (32, 90), (64, 64), (35, 41)]):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(images / f"{i}.png")
    return root / "effort", onnx_path, images


def _by_path(rows):
    return {r["path"]: r["p_fake"] for r in rows}


def test_detect_on_the_onnx_file_matches_pytorch(exported):
    folder, onnx_path, images = exported
    ref, ref_err = detect(folder, [images], batch_size=2)
    got, got_err = detect(str(onnx_path), [images], batch_size=2)
    assert not ref_err and not got_err and len(got) == 5
    want = _by_path(ref)
    for path, p in _by_path(got).items():
        assert abs(p - want[path]) <= 1e-4
    assert [r["verdict"] for r in got] == [r["verdict"] for r in ref]


def test_cli_detect_with_an_onnx_model(exported, tmp_path):
    folder, onnx_path, images = exported
    out_onnx, out_torch = tmp_path / "onnx.csv", tmp_path / "torch.csv"
    runner = CliRunner()
    for model, out in ((onnx_path, out_onnx), (folder, out_torch)):
        r = runner.invoke(app, ["detect", str(images), "--model", str(model), "--output", str(out)])
        assert r.exit_code == 0, r.output
    a = {row["path"]: float(row["p_fake"]) for row in csv.DictReader(out_onnx.open())}
    b = {row["path"]: float(row["p_fake"]) for row in csv.DictReader(out_torch.open())}
    assert a.keys() == b.keys() and len(a) == 5
    assert max(abs(a[k] - b[k]) for k in a) <= 1e-4


def test_serve_with_an_onnx_model(exported):
    from fastapi.testclient import TestClient

    from aigi.serve.app import create_app

    folder, onnx_path, images = exported
    files = sorted(images.iterdir())
    payload = [("files", (f.name, f.read_bytes(), "image/png")) for f in files]
    scores = {}
    for model in (onnx_path, folder):
        with TestClient(create_app(str(model))) as client:
            r = client.post("/v1/detect", files=payload)
            assert r.status_code == 200, r.text
            body = r.json()
            scores[str(model)] = [x["p_fake"] for x in body["results"]]
            assert body["method"] == "effort"
    a, b = scores[str(onnx_path)], scores[str(folder)]
    assert len(a) == 5 and max(abs(x - y) for x, y in zip(a, b)) <= 1e-4


def test_cli_export_prints_the_check(tmp_path):
    folder = tmp_path / "npr"
    aigi.create_detector("npr", **detector_class("npr").tiny_overrides).save_pretrained(folder)
    runner = CliRunner()
    r = runner.invoke(app, ["export", str(folder), "--format", "onnx", "--output", str(tmp_path / "n.onnx")])
    assert r.exit_code == 0, r.output
    assert "largest logit difference" in r.output and (tmp_path / "n.onnx").is_file()
    assert (tmp_path / "n.json").is_file()
    r = runner.invoke(app, ["export", str(folder), "--format", "tflite"])
    assert r.exit_code == 1 and "--format must be onnx" in r.output
    r = runner.invoke(app, ["export", str(tmp_path / "nothing"), "--output", str(tmp_path / "x.onnx")])
    assert r.exit_code == 1 and "nothing" in r.output


def test_eval_on_the_onnx_file_gives_the_same_metrics(exported, image_tree, tmp_path):
    from aigi.evaluate import evaluate

    folder, onnx_path, _ = exported
    a = evaluate(str(onnx_path), image_tree, output=tmp_path / "onnx")
    b = evaluate(folder, image_tree, output=tmp_path / "torch")
    assert a["method"] == b["method"] == "effort"
    for key in ("acc", "ap", "auroc"):
        assert a["mean"][key] == pytest.approx(b["mean"][key], abs=1e-6)
    sa = {r["path"]: float(r["score"]) for r in csv.DictReader((tmp_path / "onnx" / "scores.csv").open())}
    sb = {r["path"]: float(r["score"]) for r in csv.DictReader((tmp_path / "torch" / "scores.csv").open())}
    assert sa.keys() == sb.keys() and max(abs(sa[k] - sb[k]) for k in sa) <= 1e-4


def test_low_precision_scoring_of_an_onnx_file_says_how_to_get_it(exported):
    _, onnx_path, images = exported
    with pytest.raises(ValueError, match="exported in float32.*export with --dtype float16"):
        detect(str(onnx_path), [images], dtype="bfloat16")
