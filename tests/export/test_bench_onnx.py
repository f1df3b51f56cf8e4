"""benchmarks/bench_onnx.py in its smoke-test size: the JSON it writes holds what the docs quote."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def test_quick_run_writes_size_and_side_by_side_throughput(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    sys.modules.pop("bench_onnx", None)
    import bench_onnx

    out = tmp_path / "onnx.json"
    bench_onnx.main(["--quick", "--batch", "2", "--iters", "1", "--output", str(out)])
    data = json.loads(out.read_text())
    assert data["model"] == "effort tiny" and data["export"]["file_mb"] > 0
    assert data["export"]["max_abs_logit_diff"] <= 1e-4
    (row,) = data["throughput"]
    assert row["batch"] == 2 and row["max_abs_logit_diff"] <= 1e-4
    for runtime in ("pytorch", "onnxruntime"):
        assert row[runtime]["images_per_s"] > 0 and len(row[runtime]["all_s"]) == 1
    assert not list(tmp_path.glob("*.onnx")), "the exported file is deleted unless --keep"
