"""The Predictor: device choice, float64 sigmoid, non-finite scores, the abstain band, the Python API."""

from __future__ import annotations

import math

import pytest
import torch

import aigi
from aigi.detectors.folder import AbstainBand, Calibration, write_calibration
from aigi.evaluate.runner import detect
from aigi.inference import Predictor, predictor as predictor_mod
from inference_helpers import write_pngs


def test_auto_device_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert predictor_mod.resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert predictor_mod.resolve_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert predictor_mod.resolve_device(None) == torch.device("cuda")
    with pytest.raises(ValueError, match="unknown device 'tpu9'"):
        predictor_mod.resolve_device("tpu9")


def test_cuda_asked_for_without_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no CUDA device"):
        predictor_mod.resolve_device("cuda")


def test_sigmoid_is_float64_and_non_finite_logits_are_nan():
    p = predictor_mod.to_probabilities(torch.tensor([0.0, 20.0, float("nan"), float("inf"), -float("inf")]))
    assert p.dtype == torch.float64
    assert p[0].item() == 0.5
    assert p[1].item() == 1.0 / (1.0 + math.exp(-20.0)) < 1.0  # float32 sigmoid would give exactly 1.0
    assert all(math.isnan(v) for v in p[2:].tolist())


class _NaNForSome(torch.nn.Module):
    """Wraps a detector; returns NaN/inf logits for the images whose mean pixel is above the median."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.config = inner.config
        self.method = inner.method

    def preprocess_config(self):
        return self.inner.preprocess_config()

    def for_inference(self):
        self.inner.for_inference()
        return self

    def forward(self, x):
        out = self.inner(x).clone()
        out[0] = float("nan")
        if len(out) > 1:
            out[1] = float("inf")
        return out


def test_a_non_finite_score_is_an_error_for_that_image_never_a_verdict(tiny_dir, tmp_path):
    files = write_pngs(tmp_path / "imgs", 4)
    inner = aigi.load_detector(tiny_dir)
    predictor = Predictor(_NaNForSome(inner), device="cpu", batch_size=4)
    preds = predictor.predict(files)
    assert [p.path for p in preds] == [str(f) for f in files]
    assert preds[0].verdict is None and preds[0].p_fake is None and "non-finite score" in preds[0].error
    assert preds[1].verdict is None and "non-finite score" in preds[1].error
    assert all(p.error is None and p.verdict in ("real", "fake") for p in preds[2:])
    rows, errors = detect(predictor, files, output=tmp_path / "out.csv")
    assert [r["path"] for r in rows] == [str(f) for f in files[2:]]
    assert [e[0] for e in errors] == [str(files[0]), str(files[1])] and all("non-finite" in e[1] for e in errors)
    assert (tmp_path / "out.csv").read_text().count("\n") == 3  # header + the two scored images


def test_band_gives_three_verdicts(tiny_dir):
    predictor = Predictor.from_pretrained(tiny_dir, device="cpu", band_width=0.1)
    assert (predictor.band.low, predictor.band.high) == pytest.approx((0.4, 0.6))
    assert [predictor.verdict(p) for p in (0.39, 0.4, 0.5, 0.599, 0.6)] == ["real", "uncertain", "uncertain",
                                                                         "uncertain", "fake"]
    write_calibration(tiny_dir, Calibration(threshold=0.7, band=AbstainBand(low=0.2, high=0.7)))
    cal = Predictor.from_pretrained(tiny_dir, device="cpu", calibrated=True)
    assert cal.threshold_source == "calibration.json" and cal.threshold == 0.7
    assert [cal.verdict(p) for p in (0.1, 0.2, 0.69, 0.7)] == ["real", "uncertain", "uncertain", "fake"]
    plain = Predictor.from_pretrained(tiny_dir, device="cpu")
    assert plain.band is None and [plain.verdict(p) for p in (0.49, 0.5)] == ["real", "fake"]


def test_python_api_predict_equals_detect_and_folds(tiny_dir, tmp_path):
    files = write_pngs(tmp_path / "imgs", 5)
    (tmp_path / "imgs" / "notes.txt").write_text("ignored in folders")
    predictor = aigi.Predictor.from_pretrained(tiny_dir, device="cpu", batch_size=2)
    assert not any(p.requires_grad for p in predictor.detector.parameters())  # for_inference ran
    preds = predictor.predict([tmp_path / "imgs", tmp_path / "missing.png"])
    assert preds[0].error is not None and "no such file" in preds[0].error
    rows, _ = detect(tiny_dir, [tmp_path / "imgs"], batch_size=2, device="cpu")
    assert [(p.path, p.p_fake, p.verdict) for p in preds[1:]] == [(r["path"], r["p_fake"], r["verdict"]) for r in rows]
    assert len(rows) == len(files)


def test_bfloat16_on_cpu_scores_close_to_float32(tiny_dir, tmp_path):
    files = write_pngs(tmp_path / "imgs", 4)
    f32 = {r["path"]: r["p_fake"] for r in detect(tiny_dir, files, device="cpu")[0]}
    bf16 = {r["path"]: r["p_fake"] for r in detect(tiny_dir, files, device="cpu", dtype="bfloat16")[0]}
    f16 = Predictor.from_pretrained(tiny_dir, device="cpu", dtype="float16").predict(files)
    assert f32.keys() == bf16.keys()
    assert all(abs(f32[k] - bf16[k]) < 0.05 for k in f32)
    assert all(p.error is None and abs(p.p_fake - f32[p.path]) < 0.05 for p in f16)
    with pytest.raises(ValueError, match="dtype must be one of"):
        Predictor.from_pretrained(tiny_dir, device="cpu", dtype="int8")
