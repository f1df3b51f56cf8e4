"""The HTTP API: every endpoint, limit and error, against a tiny NPR detector in-process."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import threading

import pytest
from fastapi.testclient import TestClient

from aigi.serve.app import create_app
from aigi.serve.settings import ServeSettings
from serve_helpers import asgi_client, direct_scores, png_bytes


def _files(*items: tuple[str, bytes]) -> list:
    return [("files", (name, data, "application/octet-stream")) for name, data in items]


@pytest.fixture(scope="module")
def client(tiny_model_dir):
    with TestClient(create_app(tiny_model_dir, ServeSettings())) as c:
        yield c


# -- /v1/detect ------------------------------------------------------------------------
def test_detect_scores_match_the_detector_and_bad_files_fail_alone(client, tiny_model_dir):
    good = [png_bytes(40, 40, seed=1), png_bytes(64, 48, seed=2)]
    truncated = png_bytes(40, 40, seed=3)[:200]
    r = client.post("/v1/detect", files=_files(("a.png", good[0]), ("notes.txt", b"hello world"),
                                               ("b.png", good[1]), ("cut.png", truncated)))
    assert r.status_code == 200
    body = r.json()
    assert body["method"] == "npr" and body["threshold"] == 0.5 and body["threshold_source"] == "config"
    res = body["results"]
    assert [x["filename"] for x in res] == ["a.png", "notes.txt", "b.png", "cut.png"]
    assert [x["index"] for x in res] == [0, 1, 2, 3]
    assert [x["ok"] for x in res] == [True, False, True, False]
    expected = direct_scores(tiny_model_dir, good)
    assert res[0]["p_fake"] == pytest.approx(expected[0], abs=1e-5)
    assert res[2]["p_fake"] == pytest.approx(expected[1], abs=1e-5)
    for x in (res[0], res[2]):
        assert x["verdict"] == ("fake" if x["p_fake"] >= 0.5 else "real")
        assert x["threshold"] == 0.5 and x["time_ms"] > 0 and x["error"] is None
    assert (res[0]["width"], res[0]["height"]) == (40, 40) and (res[2]["width"], res[2]["height"]) == (64, 48)
    assert res[1]["error"]["reason"] == "not_an_image" and "notes.txt" in res[1]["error"]["message"]
    assert res[3]["error"]["reason"] == "truncated" and res[3]["p_fake"] is None and res[3]["verdict"] is None
    assert body["time_ms"] >= max(x["time_ms"] for x in res) - 1e-6


def test_model_card_includes_side_files_and_limits(client):
    card = client.get("/v1/model").json()
    assert card["method"] == "npr" and card["input_size"] == 32 and card["labels"] == ["real", "fake"]
    assert card["threshold"] == 0.5 and card["threshold_source"] == "config"
    assert card["preprocessing"]["test"] == "resize" and card["preprocessing"]["normalize"] == "imagenet"
    assert card["training"] == {"detector": "npr", "steps": 2, "train_data": "tiny"}
    assert card["metrics"] == {"method": "npr", "mean": {"acc": 0.5}}
    assert card["calibration"] is None and card["conversion"] is None
    assert card["parameters"] > 0 and card["trainable_parameters"] == card["parameters"] and card["config"]["width"] == 4
    assert card["limits"]["max_images"] == 16 and card["limits"]["auth"] is False


def test_calibrated_threshold_from_the_model_folder(tiny_model_dir, tmp_path):
    model = tmp_path / "calibrated"
    shutil.copytree(tiny_model_dir, model)
    (model / "calibration.json").write_text(json.dumps({"threshold": 0.0001, "target_fpr": 0.05}))
    with TestClient(create_app(model, ServeSettings(calibrated=True))) as c:
        card = c.get("/v1/model").json()
        assert card["threshold"] == 0.0001 and card["threshold_source"] == "calibration.json"
        assert card["calibration"] == {"threshold": 0.0001, "target_fpr": 0.05}
        res = c.post("/v1/detect", files=_files(("a.png", png_bytes(40, 40)))).json()["results"][0]
        assert res["threshold"] == 0.0001 and res["verdict"] == "fake"
    (model / "calibration.json").unlink()
    with pytest.raises(FileNotFoundError, match="calibration.json"):
        create_app(model, ServeSettings(calibrated=True))


def test_healthz_openapi_docs_and_page(client):
    h = client.get("/healthz").json()
    assert h["status"] == "ok" and h["method"] == "npr" and h["pending"] == 0
    assert set(h["batching"]) >= {"batches", "images", "mean_batch", "largest_batch", "rejected"}
    spec = client.get("/openapi.json").json()
    assert {"/v1/detect", "/v1/heatmap", "/v1/model", "/healthz"} <= set(spec["paths"])
    body = spec["paths"]["/v1/detect"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert body["schema"]["properties"]["files"]["items"]["format"] == "binary"
    for path in ("/", "/docs"):
        page = client.get(path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "default-src 'none'" in page.headers["content-security-policy"]
        # no external asset: no URL with a scheme in src/href attributes or fetches
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page.text)
        assert not re.search(r"""fetch\(\s*["'`]https?:""", page.text)
    assert client.get("/redoc").status_code == 404  # FastAPI's CDN-based pages are off


# -- errors ----------------------------------------------------------------------------
def test_request_errors_are_json_with_a_message(client):
    r = client.post("/v1/detect", content=b"raw", headers={"content-type": "application/octet-stream"})
    assert r.status_code == 415 and r.json()["error"] == "unsupported_media_type"
    assert "multipart/form-data" in r.json()["message"]
    r = client.post("/v1/detect", files=[("note", (None, "text only"))])
    assert r.status_code == 422 and r.json()["message"].startswith("no files")
    r = client.post("/v1/detect", files=[("image", ("a.png", png_bytes(8, 8), "image/png"))])
    assert r.status_code == 422 and "field 'files'" in r.json()["message"] and "'image'" in r.json()["message"]
    body = b'--XyZ\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n\r\nabc'
    r = client.post("/v1/detect", content=body, headers={"content-type": "multipart/form-data; boundary=XyZ"})
    assert r.status_code == 400 and "closing boundary" in r.json()["message"]
    r = client.post("/v1/detect", content=b"x", headers={"content-type": "multipart/form-data"})
    assert r.status_code == 400 and "boundary" in r.json()["message"]
    r = client.get("/v1/detect")
    assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"
    r = client.get("/v2/nothing")
    assert r.status_code == 404 and r.json() == {"error": "not_found", "message": "no such endpoint: /v2/nothing (see /docs)"}


def test_bearer_token(tiny_model_dir):
    with TestClient(create_app(tiny_model_dir, ServeSettings(token="s3cret"))) as c:
        files = _files(("a.png", png_bytes(40, 40)))
        r = c.post("/v1/detect", files=files)
        assert r.status_code == 401 and r.headers["www-authenticate"] == 'Bearer realm="aigi"'
        assert r.json()["error"] == "unauthorized" and "Authorization: Bearer" in r.json()["message"]
        r = c.get("/v1/model", headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]
        r = c.post("/v1/heatmap", files=files, headers={"Authorization": "Basic s3cret"})
        assert r.status_code == 401
        ok = c.post("/v1/detect", files=files, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and ok.json()["results"][0]["ok"]
        assert c.get("/v1/model", headers={"Authorization": "bearer s3cret"}).json()["limits"]["auth"] is True
        for open_path in ("/healthz", "/", "/docs", "/openapi.json"):  # no secrets there
            assert c.get(open_path).status_code == 200


# -- limits ----------------------------------------------------------------------------
def test_upload_size_image_count_body_and_pixel_limits(tiny_model_dir):
    settings = ServeSettings(max_upload_bytes=3000, max_images=2, max_pixels=50 * 50)
    with TestClient(create_app(tiny_model_dir, settings)) as c:
        big = png_bytes(60, 60, seed=4)  # ~11 kB
        assert len(big) > 3000
        r = c.post("/v1/detect", files=_files(("big.png", big)))
        assert r.status_code == 413 and "'big.png'" in r.json()["message"] and "3000" in r.json()["message"]
        small = png_bytes(20, 20)
        r = c.post("/v1/detect", files=_files(("1.png", small), ("2.png", small), ("3.png", small)))
        assert r.status_code == 413 and "at most 2" in r.json()["message"]
        r = c.post("/v1/detect", content=b"x" * (settings.max_body_bytes + 1),
                   headers={"content-type": "multipart/form-data; boundary=B"})
        assert r.status_code == 413 and "request body" in r.json()["message"]
    # over max_pixels: that image fails (checked from the header), the other is scored
    wide = png_bytes(80, 40, seed=5)  # 3200 px > 2500
    with TestClient(create_app(tiny_model_dir, ServeSettings(max_pixels=50 * 50))) as c:
        res = c.post("/v1/detect", files=_files(("wide.png", wide), ("ok.png", small))).json()["results"]
        assert res[0]["ok"] is False and res[0]["error"]["reason"] == "too_large"
        assert "max_pixels=2500" in res[0]["error"]["message"]
        assert res[1]["ok"] is True


def test_settings_from_environment_and_validation():
    s = ServeSettings.from_env({"AIGI_SERVE_MAX_IMAGES": "3", "AIGI_SERVE_TOKEN": "t"}, max_batch=4, port=None)
    assert (s.max_images, s.token, s.max_batch, s.port) == (3, "t", 4, 8000)
    assert "token" not in repr(s)  # the secret never lands in logs
    with pytest.raises(ValueError, match="max_images"):
        ServeSettings.from_env({"AIGI_SERVE_MAX_IMAGES": "zero"})
    with pytest.raises(ValueError, match="max_batch"):
        ServeSettings.from_env({}, max_batch=0)
    with pytest.raises(ValueError, match="could never be served"):
        ServeSettings(max_pending=8, max_images=16)


def _blocking_predict(app, gate: threading.Event, calls: list):
    state = app.state.aigi
    original = state.batcher.predict

    def predict(pixels):
        calls.append(pixels.shape[0])
        gate.wait(10)
        return original(pixels)

    state.batcher.predict = predict


def test_queue_full_gives_503_with_retry_after(tiny_model_dir):
    app = create_app(tiny_model_dir, ServeSettings(max_pending=2, max_images=2, retry_after_s=3))
    gate, calls = threading.Event(), []
    _blocking_predict(app, gate, calls)

    async def scenario():
        async with asgi_client(app) as c:
            first = asyncio.create_task(c.post("/v1/detect", files=_files(("a.png", png_bytes(40, 40)), ("b.png", png_bytes(40, 40, 1)))))
            while not calls:  # the first request is now inside the forward pass
                await asyncio.sleep(0.01)
            busy = await c.post("/v1/detect", files=_files(("c.png", png_bytes(40, 40))))
            busy_heat = await c.post("/v1/heatmap", files=_files(("d.png", png_bytes(40, 40))))
            health = (await c.get("/healthz")).json()
            gate.set()
            return await first, busy, busy_heat, health

    first, busy, busy_heat, health = asyncio.run(scenario())
    assert first.status_code == 200 and all(x["ok"] for x in first.json()["results"])
    assert busy.status_code == 503 and busy.headers["retry-after"] == "3"
    assert busy.json()["error"] == "overloaded" and "max_pending=2" in busy.json()["message"]
    assert busy_heat.status_code == 503 and busy_heat.headers["retry-after"] == "3"
    assert health["pending"] == 2 and health["batching"]["rejected"] == 2


def test_request_timeout_gives_504_and_frees_its_slots(tiny_model_dir):
    app = create_app(tiny_model_dir, ServeSettings(request_timeout_s=0.3, max_pending=4, max_images=4))
    gate, calls = threading.Event(), []
    _blocking_predict(app, gate, calls)

    async def scenario():
        async with asgi_client(app) as c:
            slow = await c.post("/v1/detect", files=_files(("a.png", png_bytes(40, 40))))
            pending_after = (await c.get("/healthz")).json()["pending"]
            gate.set()
            return slow, pending_after

    slow, pending_after = asyncio.run(scenario())
    assert slow.status_code == 504 and slow.json()["error"] == "timeout"
    assert "0.3 s" in slow.json()["message"]
    assert pending_after == 0


def test_concurrent_requests_share_forward_passes_and_get_their_own_answers(tiny_model_dir):
    app = create_app(tiny_model_dir, ServeSettings(max_batch=16, batch_wait_ms=50))
    images = [png_bytes(40, 40, seed=10 + i) for i in range(8)]
    expected = direct_scores(tiny_model_dir, images)

    async def scenario():
        async with asgi_client(app) as c:
            rs = await asyncio.gather(*[c.post("/v1/detect", files=_files((f"{i}.png", b))) for i, b in enumerate(images)])
            return rs, (await c.get("/healthz")).json()["batching"]

    responses, stats = asyncio.run(scenario())
    got = [r.json()["results"][0]["p_fake"] for r in responses]
    assert got == pytest.approx(expected, abs=1e-5)  # each request got its own image's score
    assert stats["images"] == 8 and stats["batches"] < 8 and stats["largest_batch"] > 1


# -- /v1/heatmap -----------------------------------------------------------------------
def test_heatmap_grid_of_crop_scores(client, tiny_model_dir):
    from PIL import Image

    import io

    data = png_bytes(100, 70, seed=6)
    r = client.post("/v1/heatmap", files=_files(("big.png", data)))
    assert r.status_code == 200
    h = r.json()
    assert (h["width"], h["height"], h["crop"], h["rows"], h["cols"]) == (100, 70, 32, 3, 4)
    assert len(h["boxes"]) == 12 and len(h["scores"]) == 3 and all(len(row) == 4 for row in h["scores"])
    assert h["boxes"][0] == [0, 0, 32, 32] and h["boxes"][-1] == [68, 38, 100, 70]
    img = Image.open(io.BytesIO(data)).convert("RGB")
    crops = []
    for box in (h["boxes"][0], h["boxes"][6]):
        buf = io.BytesIO()
        img.crop(tuple(box)).save(buf, "PNG")
        crops.append(buf.getvalue())
    expected = direct_scores(tiny_model_dir, crops + [data])
    assert h["scores"][0][0] == pytest.approx(expected[0], abs=1e-5)
    assert h["scores"][1][2] == pytest.approx(expected[1], abs=1e-5)
    assert h["p_fake"] == pytest.approx(expected[2], abs=1e-5)
    assert h["verdict"] == ("fake" if h["p_fake"] >= 0.5 else "real")

    small = client.post("/v1/heatmap", files=_files(("s.png", png_bytes(20, 20)))).json()
    assert (small["rows"], small["cols"], small["boxes"]) == (1, 1, [[0, 0, 20, 20]])
    two = client.post("/v1/heatmap", files=_files(("a.png", data), ("b.png", data)))
    assert two.status_code == 413 and "at most 1" in two.json()["message"]
    bad = client.post("/v1/heatmap", files=_files(("x.png", b"not an image")))
    assert bad.status_code == 422 and "not_an_image" in bad.json()["message"]
