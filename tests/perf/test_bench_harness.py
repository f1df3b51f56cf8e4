"""The measuring tools of benchmarks/run.py: FLOP counts, peak memory of a command, goals."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import _util as U  # noqa: E402
import run as bench  # noqa: E402


def test_flops_of_a_linear_layer_and_of_cpu_attention():
    lin = torch.nn.Linear(8, 4)
    x = torch.randn(3, 8)
    total, by_op = U.count_flops(lambda: lin(x))
    assert total == 2 * 3 * 8 * 4
    q, k, v = (torch.randn(1, 2, 5, 4) for _ in range(3))
    total, by_op = U.count_flops(lambda: F.scaled_dot_product_attention(q, k, v))
    # Q K^T and (softmax) V: 2 products of 1*2*5*5*4 multiply-adds each
    assert total == 2 * 2 * (1 * 2 * 5 * 5 * 4)


def test_peak_memory_and_exit_code_of_a_command():
    code = "b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096]); raise SystemExit(3)"
    res = U.run_measured([sys.executable, "-c", code], timeout=60)
    assert res["returncode"] == 3 and not res["timed_out"]
    assert res["max_rss_mb"] >= 300
    assert len(res["load_before"]) == 3


def test_child_result_is_read_back(capsys):
    U.emit_result({"a": 1, "b": [1.5]})
    printed = "noise\n" + capsys.readouterr().out + "more noise\n"
    assert U.child_result(printed) == {"a": 1, "b": [1.5]}
    assert U.child_result("nothing here") is None


def test_only_accepts_sections_and_detector_names():
    assert bench.parse_only(None, ["npr"]) == (set(bench.DEFAULT_SECTIONS), None)
    assert bench.parse_only("decode,npr", ["npr", "univfd"]) == ({"decode", "models"}, ["npr"])
    with pytest.raises(SystemExit, match="neither a section"):
        bench.parse_only("nosuch", ["npr"])


def test_goals_from_results():
    res = {
        "machine": {"matmul_gflops": {"float32": 300.0, "bfloat16": 700.0}},
        "models": {"univfd": {"clip": True, "flops_per_image": 150e9, "runs": [
            {"batch": 1, "dtype": "float32", "images_per_s": 1.5},
            {"batch": 32, "dtype": "float32", "images_per_s": 1.2},
            {"batch": 32, "dtype": "bfloat16", "images_per_s": 2.0}]}},
        "decode": {"rows": [
            {"images": "png1024", "mode": "center_crop", "workers": 2, "draft": False, "images_per_s": 30.0},
            {"images": "jpeg512", "mode": "center_crop", "workers": 2, "draft": False, "images_per_s": 90.0},
            {"images": "png1024", "mode": "center_crop", "workers": 1, "draft": False, "images_per_s": 1.0}]},
        "effort": {"speed_ratio": 0.99, "batch": 4, "rounds": 4, "effort_images_per_s": 0.99,
                   "univfd_images_per_s": 1.0},
        "e2e": {"memory_ratio_large_to_small": 1.02, "small": 1000, "large": 10000},
    }
    bench.add_fractions(res)
    assert res["models"]["univfd"]["runs"][1]["gflops"] == 180.0
    assert res["models"]["univfd"]["runs"][1]["fraction_of_matmul"] == 0.6
    g = bench.goals(res)
    assert g["data_path_vs_fastest_clip"]["ratio"] == 15.0 and g["data_path_vs_fastest_clip"]["met"]
    assert g["vit_l_batch32_float32_fraction_of_matmul"]["met"]
    assert g["vit_l_batch32_bfloat16_fraction_of_matmul"]["fraction"] == pytest.approx(300 / 700, abs=1e-3)
    assert not g["vit_l_batch32_bfloat16_fraction_of_matmul"]["met"]
    assert g["effort_folded_vs_univfd"]["met"] and g["memory_large_vs_small_eval"]["met"]
    assert "| univfd |" in bench.markdown({**res, "goals": g})
