"""Concurrent large uploads: the server's memory stays within its budget and is given back
(issue 13 item 6), measured on a real server process with benchmarks/serve_memory.py."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import serve_memory  # noqa: E402

BUDGET_MB = 160
#: what the budget does not cover: allocator slack, per-thread arenas, response objects
SLACK_MB = 64


def test_sixteen_concurrent_large_images_stay_within_the_budget(tiny_model, tmp_path):
    # 2000 x 1500 JPEGs: 3 MP each, charged 72 MB of decode; 16 at once would need 1.1 GB
    res = serve_memory.measure(tiny_model, clients=16, requests=1, width=2000, height=1500, n_images=1,
                               budget_mb=BUDGET_MB, max_pixels=4_000_000, settle=0.5, sample_ms=10,
                               max_seconds=60, log=tmp_path / "server.log")
    assert set(res["status"]) <= {"200", "503"} and res["status"].get("200", 0) >= 1, res["status"]
    assert not res["problems"], res["problems"]
    assert res["server_memory"]["used_bytes"] == 0  # every reservation given back
    assert res["server_memory"]["peak_bytes"] <= BUDGET_MB * 2**20
    assert res["peak_above_idle_mb"] <= BUDGET_MB + SLACK_MB, res
    assert res["final_above_idle_mb"] <= SLACK_MB / 2, res  # memory is given back after the burst
