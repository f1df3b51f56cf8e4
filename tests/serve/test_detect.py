"""`aigi detect`: incremental output, --resume after an interruption, --calibrated threshold."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
from typer.testing import CliRunner

from aigi.cli import app
from aigi.detectors import load_detector
from aigi.evaluate import runner
from aigi.detectors.folder import read_calibration
from aigi.evaluate.runner import detect
from serve_helpers import png_bytes


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(6):
        (d / f"{i}.png").write_bytes(png_bytes(36, 36, seed=30 + i))
    return d


def _csv_rows(path):
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_interrupted_run_keeps_its_rows_and_resume_completes_it(tiny_model_dir, folder, tmp_path, suffix):
    full, _ = detect(tiny_model_dir, [folder], batch_size=2)
    assert len(full) == 6
    out = tmp_path / f"scores{suffix}"

    det = load_detector(tiny_model_dir)
    forward, calls = det.forward, []

    def interrupted_forward(pixels):
        calls.append(pixels.shape[0])
        if len(calls) == 2:
            raise KeyboardInterrupt  # like Ctrl-C during the second batch
        return forward(pixels)

    det.forward = interrupted_forward
    with pytest.raises(KeyboardInterrupt):
        detect(det, [folder], output=out, batch_size=2)
    # the first batch was flushed before the interruption
    if suffix == ".csv":
        kept = _csv_rows(out)
    else:
        kept = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["path"] for r in kept] == [r["path"] for r in full[:2]]
    # a row cut in the middle of its write is dropped and scored again
    with out.open("a") as fh:
        fh.write(f"{full[2]['path']},0.12" if suffix == ".csv" else '{"path": "' + full[2]["path"] + '", "p_f')

    rows, errors = detect(tiny_model_dir, [folder], output=out, batch_size=2, resume=True)
    assert errors == [] and [r["path"] for r in rows] == [r["path"] for r in full[2:]]
    if suffix == ".csv":
        final = _csv_rows(out)
        final = [{**r, "p_fake": float(r["p_fake"])} for r in final]
    else:
        final = [json.loads(line) for line in out.read_text().splitlines()]
    assert final == full  # every image exactly once, same scores and verdicts as one clean run
    again, _ = detect(tiny_model_dir, [folder], output=out, resume=True)  # nothing left to do
    assert again == []
    assert (len(_csv_rows(out)) if suffix == ".csv" else out.read_text().count("\n")) == 6


def test_resume_errors(tiny_model_dir, folder, tmp_path):
    with pytest.raises(ValueError, match="resume needs an output file"):
        detect(tiny_model_dir, [folder], resume=True)
    other = tmp_path / "other.csv"
    other.write_text("file,score\na.png,0.1\n")
    with pytest.raises(ValueError, match="has columns"):
        detect(tiny_model_dir, [folder], output=other, resume=True)
    with pytest.raises(ValueError, match=r"\.csv or \.jsonl"):
        detect(tiny_model_dir, [folder], output=tmp_path / "x.txt")


def test_calibrated_threshold(tiny_model_dir, folder, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    with pytest.raises(FileNotFoundError, match="calibration.json"):
        detect(model, [folder], calibrated=True)
    (model / "calibration.json").write_text(json.dumps({"threshold": 1.5}))
    with pytest.raises(ValueError, match="between 0 and 1"):
        read_calibration(model)
    plain, _ = detect(model, [folder])
    ranked = sorted(r["p_fake"] for r in plain)
    t = (ranked[2] + ranked[3]) / 2  # a threshold between the scores: 3 real, 3 fake
    (model / "calibration.json").write_text(json.dumps({"threshold": t, "target_fpr": 0.05, "n_real": 100}))
    rows, _ = detect(model, [folder], calibrated=True)
    assert [r["verdict"] for r in rows] == ["fake" if r["p_fake"] >= t else "real" for r in plain]
    assert sum(r["verdict"] == "fake" for r in rows) == 3
    with pytest.raises(ValueError, match="not both"):
        detect(model, [folder], calibrated=True, threshold=0.3)


def test_cli_detect_resume_calibrated_and_interrupt(tiny_model_dir, folder, tmp_path, monkeypatch):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    (model / "calibration.json").write_text(json.dumps({"threshold": 0.0}))
    out = tmp_path / "out.csv"
    runner_cli = CliRunner()
    r = runner_cli.invoke(app, ["detect", str(folder), "--model", str(model), "--output", str(out),
                                "--calibrated", "--resume"])
    assert r.exit_code == 0, r.output
    rows = _csv_rows(out)
    assert len(rows) == 6 and {x["verdict"] for x in rows} == {"fake"}
    r = runner_cli.invoke(app, ["detect", str(folder), "--model", str(model), "--output", str(out), "--resume"])
    assert r.exit_code == 0 and "scored 0 image(s)" in r.output and len(_csv_rows(out)) == 6

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "detect", interrupted)
    r = runner_cli.invoke(app, ["detect", str(folder), "--model", str(model), "--output", str(out)])
    assert r.exit_code == 130 and "--resume" in r.output
