"""The server answers through the Predictor: abstain band verdicts, and a non-finite score is that image's error."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aigi
from aigi.detectors import detector_class
from aigi.serve.app import create_app
from aigi.serve.settings import ServeSettings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))  # the serving tests' helpers
from serve_helpers import asgi_client, png_bytes  # noqa: E402


def _files(n):
    return [("files", (f"{i}.png", png_bytes(36, 36, seed=40 + i), "image/png")) for i in range(n)]


def test_band_width_makes_every_verdict_uncertain(tiny_dir):
    app = create_app(tiny_dir, ServeSettings(device="cpu", band_width=0.5))

    async def scenario():
        async with asgi_client(app) as client:
            return ((await client.post("/v1/detect", files=_files(3))).json(),
                    (await client.get("/v1/model")).json())

    res, card = asyncio.run(scenario())
    assert res["band"] == {"low": 0.0, "high": 1.0}
    assert [r["verdict"] for r in res["results"]] == ["uncertain"] * 3
    assert card["band"] == {"low": 0.0, "high": 1.0} and card["device"] == "cpu" and card["dtype"] == "float32"


class _NaNFirst(detector_class("npr")):
    def forward(self, x):
        out = super().forward(x).clone()
        out[0] = float("nan")
        return out


def test_non_finite_score_is_an_error_not_a_verdict(tiny_dir):
    det = aigi.load_detector(tiny_dir)
    det.__class__ = _NaNFirst
    app = create_app(det, ServeSettings(device="cpu", batch_wait_ms=0))

    async def scenario():
        async with asgi_client(app) as client:
            return (await client.post("/v1/detect", files=_files(1))).json()

    res = asyncio.run(scenario())
    r = res["results"][0]
    assert r["ok"] is False and r["verdict"] is None and r["p_fake"] is None
    assert r["error"]["reason"] == "non_finite_score" and "non-finite score" in r["error"]["message"]
