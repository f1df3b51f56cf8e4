"""benchmarks/bench_detect_vs_eval.py in its test-sized mode: it runs and writes what it claims."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import bench_detect_vs_eval as bench  # noqa: E402


def test_quick_mode_writes_timings_and_finds_identical_scores(tmp_path):
    out = tmp_path / "dve.json"
    result = bench.main(["--quick", "--images", "4", "--rounds", "2", "--device", "cpu", "--unfolded", "--output", str(out)])
    saved = json.loads(out.read_text())
    assert saved["identical_scores"] is True and saved["model"]["size"] == "tiny"
    assert [t["round"] for t in saved["timings"]["eval"]] == [0, 1] and len(saved["timings"]["detect"]) == 2
    med = saved["median_seconds"]
    # the ratio is computed from the unrounded medians, stored to the microsecond (a tiny
    # model takes ~10 ms, so coarser rounding would move the recomputed ratio by several %)
    assert saved["detect_speed_vs_eval"] == pytest.approx(med["eval"] / med["detect"], rel=1e-2)
    assert med["detect_unfolded"] > 0
    assert result["device"] == "cpu" and result["images"] == 4
