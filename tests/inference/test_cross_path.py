"""The same files through eval, detect, bench, serve (real HTTP) and the Python API: identical P(fake)."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import httpx

import aigi
from aigi.benchmark.protocol import protocol_from_dict
from aigi.benchmark.run import run_protocol
from aigi.benchmark.store import ResultStore
from aigi.evaluate.runner import detect, evaluate
from aigi.serve.app import create_app
from aigi.serve.settings import ServeSettings
from inference_helpers import save_tiny, write_pngs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))  # the serving tests' helpers
from serve_helpers import running_server  # noqa: E402


def _all_paths(image_tree: Path) -> list[Path]:
    return sorted(image_tree.rglob("*.png"))


def test_every_path_gives_identical_p_fake(image_tree, tmp_path):
    model = save_tiny(tmp_path / "model", "npr")
    files = _all_paths(image_tree)
    assert len(files) == 32

    # eval: scores.csv holds every score losslessly
    evaluate(model, image_tree, output=tmp_path / "ev", device="cpu")
    ev = {r["path"]: float(r["score"]) for r in csv.DictReader((tmp_path / "ev" / "scores.csv").open())}

    # detect
    rows, errors = detect(model, [image_tree], device="cpu")
    assert errors == []
    det = {r["path"]: r["p_fake"] for r in rows}

    # the Python API
    api = {p.path: p.p_fake for p in aigi.Predictor.from_pretrained(model, device="cpu").predict(files)}

    # bench (calibration reals come from another folder, so every test image is scored as a test image)
    calib = tmp_path / "calib" / "x" / "0_real"
    write_pngs(calib, 4, seed=7)
    proto = protocol_from_dict({
        "name": "same", "data": {"test": str(image_tree)}, "calibration": {"data": str(tmp_path / "calib")},
        "detectors": [{"name": "npr", "model": str(model)}], "metrics": {"bootstrap": 0},
        "run": {"batch_size": 32, "progress": False, "device": "cpu"},
    })
    res = run_protocol(proto, tmp_path / "bench", report=False)
    with ResultStore(res.store) as store:
        bench = {path: score for path, score in store.conn.execute(
            "SELECT s.path, sc.score FROM samples s JOIN scores sc ON sc.image_hash = s.image_hash "
            "WHERE s.role = 'test' AND sc.condition = 'clean'")}

    # serve, over HTTP on 127.0.0.1
    app = create_app(model, ServeSettings(device="cpu", max_images=32, max_batch=32))
    with running_server(app) as base:
        body = [("files", (f.name, f.read_bytes(), "image/png")) for f in files]
        got = httpx.post(f"{base}/v1/detect", files=body, timeout=30).json()
    served = {str(f): r["p_fake"] for f, r in zip(files, got["results"])}

    keys = {str(f) for f in files}
    for name, scores in (("eval", ev), ("detect", det), ("api", api), ("bench", bench), ("serve", served)):
        assert set(scores) == keys, name
    for k in sorted(keys):
        values = {"eval": ev[k], "detect": det[k], "api": api[k], "bench": bench[k], "serve": served[k]}
        assert len(set(values.values())) == 1, (k, values)
