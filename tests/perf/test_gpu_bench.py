"""benchmarks/gpu.py in its CPU mode on tiny models: the forward section and the training-step child."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import gpu as gpu_bench  # noqa: E402


def test_forward_section_on_cpu_writes_every_case(tmp_path):
    out = tmp_path / "gpu.json"
    # torch.compile's wiring is tested in test_inference_options (its tracing alone takes seconds)
    assert gpu_bench.main(["--device", "cpu", "--tiny", "--only", "forward", "--no-compile",
                           "--models", "effort", "--batches", "2", "--warmup", "0",
                           "--iters", "1", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["device"] == "cpu" and res["tiny"] and res["gpu"] is None
    for name in ("effort",):
        runs = res["forward"][name]["runs"]
        cases = {(r["batch"], r["dtype"], r["compile"]) for r in runs}
        assert cases == {(2, d, False) for d in gpu_bench.DTYPES}
        assert all("error" not in r and r["images_per_s"] > 0 and "load_before" in r for r in runs), runs
        # low-precision runs report their logit change against float32 on the same inputs
        low = [r for r in runs if r["dtype"] != "float32" and not r["compile"]]
        assert all(0 <= r["max_abs_logit_change_vs_float32"] < 1e-2 for r in low)


def test_training_step_child_measures_effort_and_full(tmp_path):
    effort = gpu_bench.train_child("effort", True, 2, "cpu")
    full = gpu_bench.train_child("full", True, 2, "cpu")
    # Effort trains only the residual triplets and the head: far fewer numbers than the tower
    assert 0 < effort["trainable_parameters"] < full["trainable_parameters"]
    assert effort["step_s"] > 0 and full["peak_memory_mb"] > 0


def test_bad_arguments_are_named():
    with pytest.raises(SystemExit, match="unknown section.*bogus"):
        gpu_bench.main(["--device", "cpu", "--tiny", "--only", "forward,bogus"])
    with pytest.raises(SystemExit, match="--dtypes.*includes float32"):
        gpu_bench.main(["--device", "cpu", "--tiny", "--dtypes", "bfloat16"])
