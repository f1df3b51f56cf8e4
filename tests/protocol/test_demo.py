"""``aigi demo --quick`` end to end, twice: the second run reuses the data, the models and every score."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aigi.demo import SIZES, demo_protocol
from aigi.benchmark.protocol import protocol_from_dict


@pytest.mark.slow
def test_demo_quick_runs_and_reruns_from_the_store(tmp_path):
    # the whole demo (~30-60 s on a 2-core CPU): data, 4 trainings, 4 tasks, report, then a rerun
    from aigi.cli import app

    runner = CliRunner()
    out = tmp_path / "demo"
    r = runner.invoke(app, ["demo", "--quick", "--output", str(out)])
    assert r.exit_code == 0, r.output
    assert "ACC@FPR5%" in r.output
    for name in ("npr", "dffreq", "cnnspot"):
        assert re.search(rf"│ {name}\s+│", r.output), name
    assert "P(fake) = " in r.output
    assert "skipped univfd: needs pretrained CLIP weights" in r.output
    md = (out / "report.md").read_text()
    for section in ("## Leaderboard: multi-source generalization", "## Robustness to degradations",
                    "## Test-time preprocessing", "## Sensitivity to training augmentation", "**Skipped detectors**"):
        assert section in md
    for plot in ("roc", "subsets", "robustness", "preprocessing", "augmentation"):
        assert (out / "plots" / f"{plot}.png").is_file()
    assert (out / "report.html").stat().st_size > 10_000
    stamp = (out / "models" / "quick" / "npr" / "model.safetensors").stat().st_mtime_ns

    again = runner.invoke(app, ["demo", "--quick", "--output", str(out)])
    assert again.exit_code == 0, again.output
    assert re.search(r"\(0 new scores, \d+ reused\)", again.output), again.output
    assert "training " not in again.output and "generating" not in again.output
    assert (out / "models" / "quick" / "npr" / "model.safetensors").stat().st_mtime_ns == stamp


def test_demo_protocol_with_and_without_backbone(tmp_path):
    plain = protocol_from_dict(demo_protocol(tmp_path))
    assert [d.name for d in plain.detectors] == ["npr", "dffreq", "cnnspot"]
    assert {s.name for s in plain.skipped} == {"univfd", "effort"}
    assert plain.tasks.augmentation.variants == list(SIZES["full"].variants)
    assert set(plain.tasks.augmentation.variants) >= {"none", "blur", "jpeg", "rotation", "color_jitter", "mask"}
    clip = protocol_from_dict(demo_protocol(tmp_path, backbone=tmp_path / "clip"))
    assert [d.name for d in clip.detectors][-2:] == ["univfd", "effort"]
    assert clip.skipped == []
    assert clip.detector("effort").recipe["overrides"]["backbone"] == str(tmp_path / "clip")
    # CLIP detectors only join the generalisation task (a CLIP ViT on a CPU is slow)
    assert "effort" not in clip.task_detectors("robustness")
    assert plain.digest() != clip.digest()


def test_builtin_protocol_file_is_the_full_demo():
    repo = Path(__file__).resolve().parents[2]
    from aigi.benchmark.protocol import load_protocol

    shipped = load_protocol(repo / "configs" / "protocols" / "builtin.yaml")
    demo = protocol_from_dict(demo_protocol(repo / "runs" / "demo"))
    assert shipped.model_dump() == demo.model_dump()
