"""Hostile checkpoints (issue 13 items 7, 9): config.json is checked field by field before a
byte of the model is allocated, NaN never becomes a verdict, weights are readable by others."""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
from pathlib import Path

import pytest
import torch

from aigi.detectors import create_detector, load_detector
from aigi.detectors.base import CheckpointError
from aigi.detectors.registry import detector_class, list_detectors

from .conftest import png_bytes, write


def _with_config(src: Path, dst: Path, config) -> Path:
    shutil.copytree(src, dst)
    (dst / "config.json").write_text(json.dumps(config))
    return dst


@pytest.mark.parametrize(
    "change, where",
    [
        (lambda c: [], "must hold a JSON object"),
        (lambda c: "npr", "must hold a JSON object"),
        (lambda c: {**c, "width": 1e9}, "width"),
        (lambda c: {**c, "width": -5}, "width"),
        (lambda c: {**c, "preprocess": {**c["preprocess"], "size": 1e6}}, "preprocess.size"),
        (lambda c: {**c, "preprocess": {**c["preprocess"], "resize_to": -1}}, "preprocess.resize_to"),
        (lambda c: {**c, "blocks": [1e6, 1e6]}, "blocks.0"),
        (lambda c: {**c, "threshold": float("nan")}, "threshold"),
        (lambda c: {**c, "threshold": -3}, "threshold"),
        (lambda c: {**c, "threshold": float("inf")}, "threshold"),
        (lambda c: {**c, "input_scale": float("nan")}, "input_scale"),
    ],
)
def test_bad_config_is_a_clear_error_naming_the_file_and_field(tiny_model, tmp_path, change, where):
    config = json.loads((tiny_model / "config.json").read_text())
    folder = _with_config(tiny_model, tmp_path / "m", change(config))
    with pytest.raises(CheckpointError) as err:
        load_detector(folder)
    assert str(folder / "config.json") in str(err.value) and where in str(err.value)


def test_every_detector_refuses_nan_in_its_float_fields():
    for name in list_detectors():
        cls = detector_class(name)
        floats = [f for f, info in cls.config_class.model_fields.items() if info.annotation in (float, float | None)]
        for field in floats:
            with pytest.raises(ValueError, match="finite"):
                cls.config_class.model_validate({**cls.config_class().model_dump(), field: float("nan")})


def test_nan_weights_give_an_error_per_image_never_a_verdict(tiny_model, tmp_path):
    from aigi.inference import Predictor

    det = load_detector(tiny_model)
    with torch.no_grad():
        for p in det.parameters():
            p.fill_(float("nan"))
    det.save_pretrained(tmp_path / "nan")
    write(tmp_path / "img" / "a.png", png_bytes())
    predictor = Predictor.from_pretrained(tmp_path / "nan", device="cpu")
    (pred,) = predictor.predict([tmp_path / "img" / "a.png"])
    assert pred.p_fake is None and pred.verdict is None and "non-finite" in pred.error

    from aigi.serve.app import create_app
    from aigi.serve.settings import ServeSettings

    from .test_server import client_for

    async def go():
        async with client_for(create_app(tmp_path / "nan", ServeSettings())) as c:
            res = (await c.post("/v1/detect", files={"files": ("a.png", png_bytes(), "image/png")})).json()
            (r,) = res["results"]
            assert r["ok"] is False and r["verdict"] is None and r["error"]["reason"] == "non_finite_score"

    asyncio.run(go())


def test_weights_are_written_readable_like_config_json(tmp_path):
    old = os.umask(0o022)
    try:
        det = create_detector("npr", **detector_class("npr").tiny_overrides)
        out = det.save_pretrained(tmp_path / "m")
    finally:
        os.umask(old)
    modes = {name: (out / name).stat().st_mode & 0o777 for name in ("config.json", "model.safetensors")}
    assert modes == {"config.json": 0o644, "model.safetensors": 0o644}
    assert not math.isnan(float(load_detector(out).config.threshold))
