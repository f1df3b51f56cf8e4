"""`aigi bench` audits its test set once, stores the summary and puts the verdicts in the report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

import aigi
from aigi.benchmark.protocol import protocol_from_dict
from aigi.benchmark.report import build_report
from aigi.benchmark.run import run_protocol
from aigi.benchmark.store import ResultStore
from aigi.detectors import detector_class


def _data(root: Path) -> Path:
    """Subset ``jpg``: reals JPEG, fakes PNG (a shortcut); subset ``same``: all PNG."""
    rng = np.random.default_rng(0)
    for sub in ("jpg", "same"):
        for lab in ("0_real", "1_fake"):
            d = root / sub / lab
            d.mkdir(parents=True)
            for i in range(8):
                img = Image.fromarray(rng.integers(0, 256, (40, 40, 3)).astype(np.uint8))
                if sub == "jpg" and lab == "0_real":
                    img.save(d / f"{i}.jpg", format="JPEG", quality=90)
                else:
                    img.save(d / f"{i}.png")
    return root


def test_bench_report_shows_the_test_set_audit(tmp_path):
    torch.manual_seed(0)
    model = tmp_path / "npr"
    aigi.create_detector("npr", **detector_class("npr").tiny_overrides).save_pretrained(model)
    proto = protocol_from_dict({
        "name": "audited", "data": {"test": str(_data(tmp_path / "test"))},
        "calibration": {"holdout": 0.25}, "detectors": [{"name": "npr", "model": str(model)}],
        "tasks": {"generalization": {}}, "metrics": {"bootstrap": 0}, "run": {"batch_size": 8, "progress": False},
    })
    res = run_protocol(proto, tmp_path / "out")
    with ResultStore(res.store) as store:
        summary = store.audit(proto.digest())
        created = store.conn.execute("SELECT created FROM audits").fetchone()[0]
    verdicts = {k: v["verdict"] for k, v in summary["subsets"].items()}
    assert (verdicts["jpg"], verdicts["same"]) == ("shortcut", "clean") and set(verdicts) == {"jpg", "same", "all"}
    md = res.report.read_text()
    assert "## Test-set audit" in md and "| jpg | **shortcut** |" in md and "| same | **clean** |" in md
    run_protocol(proto, tmp_path / "out")  # same test set: the stored audit is reused
    with ResultStore(res.store) as store:
        assert store.conn.execute("SELECT created FROM audits").fetchone()[0] == created
    md2, _ = build_report(tmp_path / "out")  # `aigi report` re-renders it from the store alone
    assert "| jpg | **shortcut** |" in md2.read_text()
