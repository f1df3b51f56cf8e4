"""The detector-folder format: file names, calibration files, and the model resolver's dispatch."""

from __future__ import annotations

import json
import sys
import types

import pytest
import torch

from aigi.detectors import folder as fmt
from aigi.detectors.folder import AbstainBand, Calibration, open_model, read_calibration, write_calibration


def test_file_names_are_the_ones_written_by_save_pretrained(tiny_dir):
    assert sorted(p.name for p in tiny_dir.iterdir()) == sorted([fmt.CONFIG_NAME, fmt.WEIGHTS_NAME])
    assert fmt.is_finished_folder(tiny_dir)


def test_calibration_round_trip_and_validation(tiny_dir):
    cal = Calibration(threshold=0.7, target_fpr=0.05, fpr=0.04, n_real=50,
                      band=AbstainBand(low=0.2, high=0.7, source="error rates", target_fnr=0.05, fnr=0.04))
    path = write_calibration(tiny_dir, cal)
    assert path.name == fmt.CALIBRATION_NAME
    again = read_calibration(tiny_dir)
    assert again.threshold == 0.7 and again.band.low == 0.2 and again.band.high == 0.7
    # an older file with only a threshold still reads
    path.write_text(json.dumps({"threshold": 0.4}))
    assert read_calibration(tiny_dir).band is None
    path.write_text(json.dumps({"threshold": 0.4, "band": {"low": 0.6, "high": 0.5}}))
    with pytest.raises(ValueError, match="must not be above"):
        read_calibration(tiny_dir)
    with pytest.raises(FileNotFoundError, match="not a detector folder"):
        write_calibration(tiny_dir / "nowhere", cal)


def test_band_around_a_threshold_is_clipped():
    b = AbstainBand.around(0.95, 0.1)
    assert (b.low, b.high) == pytest.approx((0.85, 1.0))
    with pytest.raises(ValueError, match="between 0 and 0.5"):
        AbstainBand.around(0.5, 0.7)


def test_open_model_dispatches_folder_zoo_onnx_and_hub(tiny_dir, tmp_path, monkeypatch):
    calls = []
    zoo = types.ModuleType("aigi.zoo")
    zoo.pull = lambda name: calls.append(("zoo", name)) or tiny_dir
    hub = types.ModuleType("aigi.hub")
    hub.snapshot = lambda repo_id, revision=None: calls.append(("hub", repo_id, revision)) or tiny_dir
    onnx_mod = types.ModuleType("aigi.export.onnx")
    marker = torch.nn.Identity()
    onnx_mod.load_onnx_detector = lambda path: calls.append(("onnx", path.name)) or marker
    export_pkg = types.ModuleType("aigi.export")
    export_pkg.onnx = onnx_mod
    import aigi

    monkeypatch.setitem(sys.modules, "aigi.zoo", zoo)
    monkeypatch.setitem(sys.modules, "aigi.hub", hub)
    monkeypatch.setitem(sys.modules, "aigi.export", export_pkg)
    monkeypatch.setitem(sys.modules, "aigi.export.onnx", onnx_mod)
    monkeypatch.setattr(aigi, "zoo", zoo, raising=False)
    monkeypatch.setattr(aigi, "hub", hub, raising=False)
    monkeypatch.setattr(aigi, "export", export_pkg, raising=False)

    opened = open_model(tiny_dir)
    assert opened.folder == tiny_dir and opened.detector.method == "npr" and calls == []
    opened = open_model("zoo:npr-progan")
    assert calls[-1] == ("zoo", "npr-progan") and opened.folder == tiny_dir
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"stand-in")
    opened = open_model(onnx_file)
    assert calls[-1] == ("onnx", "m.onnx") and opened.detector is marker and opened.folder is None
    opened = open_model("someone/some-detector", revision="v1")
    assert calls[-1] == ("hub", "someone/some-detector", "v1") and opened.folder == tiny_dir
    assert aigi.load_detector("zoo:npr-progan").method == "npr"  # the public API uses the same resolver


def test_resolver_errors_are_clear(tmp_path, tiny_dir):
    with pytest.raises(FileNotFoundError, match="no such detector folder"):
        open_model(tmp_path / "missing" / "deeper")
    with pytest.raises(FileNotFoundError, match="no such ONNX file"):
        open_model(tmp_path / "absent.onnx")
    with pytest.raises(ValueError, match="revision applies to a Hugging Face Hub id"):
        open_model(tiny_dir, revision="main")
    with pytest.raises(ValueError, match="zoo: needs a model name"):
        open_model("zoo:")


def test_hub_failure_names_both_readings(monkeypatch):
    hub = types.ModuleType("aigi.hub")

    def snapshot(repo_id, revision=None):
        raise OSError("offline")

    hub.snapshot = snapshot
    monkeypatch.setitem(sys.modules, "aigi.hub", hub)
    import aigi

    monkeypatch.setattr(aigi, "hub", hub, raising=False)
    with pytest.raises(FileNotFoundError, match="not a folder here.*Hugging Face Hub id failed: offline"):
        open_model("no-such-user/no-such-repo")
