"""Uploads stay in memory: no temp file, even for parts far above Starlette's 1 MiB spool size."""

from __future__ import annotations

import tempfile

import pytest
import starlette.formparsers
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from aigi.serve.app import create_app
from aigi.serve.settings import ServeSettings
from serve_helpers import png_bytes


class DiskTouched(AssertionError):
    pass


@pytest.fixture
def no_temp_files(monkeypatch):
    """Make every temp-file constructor (and Starlette's own reference to one) fail loudly."""

    def refuse(*args, **kwargs):
        raise DiskTouched("an upload was about to be written to a temporary file")

    for name in ("SpooledTemporaryFile", "TemporaryFile", "NamedTemporaryFile", "mkstemp", "mkdtemp"):
        monkeypatch.setattr(tempfile, name, refuse)
    monkeypatch.setattr(starlette.formparsers, "SpooledTemporaryFile", refuse)


def test_starlette_form_parser_would_spool_large_parts_to_disk():
    """Why the server has its own reader: request.form() rolls parts over 1 MiB to a real file."""
    seen = {}

    async def endpoint(request: Request) -> JSONResponse:
        form = await request.form()
        upload = form["files"]
        seen["rolled_to_disk"] = bool(getattr(upload.file, "_rolled", False))
        await form.close()
        return JSONResponse({})

    app = Starlette(routes=[Route("/", endpoint, methods=["POST"])])
    with TestClient(app) as c:
        c.post("/", files={"files": ("big.bin", b"\0" * (2 * 1024 * 1024), "application/octet-stream")})
    assert starlette.formparsers.MultiPartParser.spool_max_size == 1024 * 1024
    assert seen["rolled_to_disk"] is True


def test_large_upload_never_touches_the_disk(tiny_model_dir, no_temp_files):
    big = png_bytes(1024, 1024, seed=7)  # random pixels: ~3 MiB of PNG
    assert len(big) > 2 * 1024 * 1024
    with TestClient(create_app(tiny_model_dir, ServeSettings(max_upload_bytes=8 * 1024 * 1024))) as c:
        r = c.post("/v1/detect", files=[("files", ("big.png", big, "image/png")),
                                        ("files", ("small.png", png_bytes(40, 40), "image/png"))])
        assert r.status_code == 200, r.text
        res = r.json()["results"]
        assert [x["ok"] for x in res] == [True, True]
        assert (res[0]["width"], res[0]["height"]) == (1024, 1024)
        h = c.post("/v1/heatmap", files=[("files", ("big.png", big, "image/png"))])
        assert h.status_code == 200 and h.json()["rows"] * h.json()["cols"] <= 64


def test_the_size_limit_is_enforced_while_streaming(tiny_model_dir, no_temp_files):
    with TestClient(create_app(tiny_model_dir, ServeSettings(max_upload_bytes=1024 * 1024))) as c:
        r = c.post("/v1/detect", files=[("files", ("huge.bin", b"\xff" * (3 * 1024 * 1024), "image/png"))])
    assert r.status_code == 413 and "huge.bin" in r.json()["message"]
