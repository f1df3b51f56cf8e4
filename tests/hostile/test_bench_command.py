"""`aigi bench` and `aigi audit` list what they could not read and say so in the exit code (issue 13 item 4)."""

from __future__ import annotations

import os

import yaml
from typer.testing import CliRunner

from aigi.cli import app

from .conftest import png_bytes, write


def test_bench_reports_a_loop_and_a_broken_link_and_exits_3(tiny_model, tmp_path):
    test = tmp_path / "test"
    for sub in ("a", "b"):
        for label in ("0_real", "1_fake"):
            for i in range(3):
                write(test / sub / label / f"{i}.png", png_bytes(seed=i + (label == "1_fake") * 10))
    os.symlink("..", test / "a" / "0_real" / "loop")
    os.symlink("gone.png", test / "b" / "1_fake" / "gone.png")
    proto = {
        "name": "hostile",
        "data": {"test": str(test)},
        "detectors": [{"name": "npr", "model": str(tiny_model)}],
        "tasks": {"generalization": {}},
        "metrics": {"bootstrap": 10},
        "run": {"batch_size": 4, "progress": False},
    }
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(proto))
    r = CliRunner().invoke(app, ["bench", str(tmp_path / "p.yaml"), "-o", str(tmp_path / "out"), "--device", "cpu"])
    assert r.exit_code == 3, r.output
    assert "loop" in r.output and "broken symbolic link" in r.output
    # 6 reals + 6 fakes, each once (the loop would have added a's fakes as reals); 2 reals calibrate
    assert "10 test images in 2 subsets, 2 calibration reals" in r.output


def test_audit_reports_a_loop_and_exits_3(tmp_path):
    data = tmp_path / "d"
    for label in ("0_real", "1_fake"):
        for i in range(4):
            write(data / "s" / label / f"{i}.png", png_bytes(seed=i + (label == "1_fake") * 10))
    os.symlink("..", data / "s" / "1_fake" / "loop")
    r = CliRunner().invoke(app, ["audit", str(data), "--bootstrap", "0"])
    assert r.exit_code == 3, r.output
    assert "loop" in r.output and "8 file(s) audited, 1 skipped" in r.output
