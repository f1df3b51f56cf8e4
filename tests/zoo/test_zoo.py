"""aigi.zoo: registry facts, pull end to end against a loopback HTTP server, checksums, resume.

No test touches the network: releases are monkeypatched to point at a ``http.server`` on
127.0.0.1 run in a thread, which can cut a response short or ignore Range requests.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import re
import sys
import threading
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import aigi
from aigi import zoo
from aigi.data.transforms import PRESETS
from aigi.detectors.registry import detector_class, list_detectors

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "convert"))
from test_baselines import _randomised, official_npr  # noqa: E402  (the independent NPR forward)


class Server:
    """Serves ``files`` (path -> bytes); ``cut`` paths send half their bytes once, then close."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut: set[str] = set()
        self.honour_range = True
        self.requests: list[tuple[str, str | None]] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                owner.requests.append((self.path, self.headers.get("Range")))
                data = owner.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                rng = self.headers.get("Range")
                if rng and owner.honour_range:
                    start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.path in owner.cut:
                    owner.cut.discard(self.path)
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AIGI_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def npr_checkpoint() -> tuple[dict[str, torch.Tensor], bytes]:
    state = _randomised(aigi.create_detector("npr", **detector_class("npr").tiny_overrides).net.state_dict())
    buf = io.BytesIO()
    torch.save(state, buf)
    return state, buf.getvalue()


def _release(monkeypatch, name="npr-test", **fields) -> zoo.Release:
    base = dict(name=name, method="npr", paper="test", training_data="test", file_name="NPR.pth",
                converter="npr", preset="forensynths-resize256", source="test")
    release = zoo.Release(**{**base, **fields})
    monkeypatch.setitem(zoo.RELEASES, name, release)
    return release


X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))


# -- the registry --------------------------------------------------------------------------
def test_every_release_is_consistent_and_says_unknown_rather_than_guessing():
    methods = set(list_detectors())
    assert {"cnnspot", "univfd", "npr", "dffreq", "effort", "dgsnet"} <= {r.method for r in zoo.RELEASES.values()}
    for r in zoo.RELEASES.values():
        assert r.method in methods and r.preset in PRESETS, r.name
        assert r.converter == r.method, r.name
        assert r.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", r.sha256), r.name
        assert r.source and r.paper and r.training_data, r.name
        for url in r.urls:
            assert url.startswith("https://"), r.name
    # methods without public weights are not listed
    assert not {"masm", "selop", "nsnet", "pinclip", "causalclip"} & {r.method for r in zoo.RELEASES.values()}


def test_zoo_list_prints_every_release(monkeypatch):
    from aigi.cli import app

    monkeypatch.setenv("COLUMNS", "200")
    result = CliRunner().invoke(app, ["zoo", "list"])
    assert result.exit_code == 0, result.output
    for name in zoo.RELEASES:
        assert name in result.output
    long = CliRunner().invoke(app, ["zoo", "list", "--long"])
    assert "drive.google.com/file/d/1UXf1hC9FC1yV93uKwXSkdtepsgpIAU9d" in long.output
    assert "sha256: unknown" in long.output


def test_cache_dir_follows_aigi_cache_then_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("AIGI_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert zoo.cache_dir() == tmp_path / "xdg" / "aigi"
    monkeypatch.setenv("AIGI_CACHE", str(tmp_path / "mine"))
    assert zoo.cache_dir() == tmp_path / "mine"


# -- pull -----------------------------------------------------------------------------------
def test_pull_downloads_records_the_checksum_converts_and_reuses(server, cache, monkeypatch, npr_checkpoint):
    state, data = npr_checkpoint
    server.files["/NPR.pth"] = data
    _release(monkeypatch, urls=(server.url("/NPR.pth"),))
    said: list[str] = []
    folder = zoo.pull("npr-test", say=said.append)
    assert folder == cache / "models" / "npr-test"
    model = aigi.load_detector(folder).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(X), official_npr(state, X), rtol=1e-4, atol=1e-5)
    assert model.config.preprocess == PRESETS["forensynths-resize256"].config
    digest = hashlib.sha256(data).hexdigest()
    recorded = json.loads((cache / "sha256.json").read_text())
    assert recorded["npr-test"]["sha256"] == digest
    assert any("no sha256 is published; recorded" in m for m in said)
    assert (cache / "files" / "npr-test" / "NPR.pth").read_bytes() == data
    assert not any((cache / "partial").rglob("*.part"))
    # second pull: cached, no request
    n = len(server.requests)
    assert zoo.pull("npr-test") == folder and len(server.requests) == n
    # the recorded checksum now guards re-downloads: a changed file on the server is refused
    server.files["/NPR.pth"] = data[:-1] + bytes([data[-1] ^ 1])
    (cache / "files" / "npr-test" / "NPR.pth").unlink()
    with pytest.raises(zoo.ChecksumError, match="recorded sha256"):
        zoo.pull("npr-test", force=True)


def test_wrong_checksum_is_a_clear_error_and_leaves_nothing_behind(server, cache, monkeypatch, npr_checkpoint):
    server.files["/NPR.pth"] = npr_checkpoint[1]
    _release(monkeypatch, urls=(server.url("/NPR.pth"),), sha256="0" * 64)
    with pytest.raises(zoo.ChecksumError, match=r"has sha256 [0-9a-f]{64}, but the published sha256 of npr-test is 0{64}"):
        zoo.pull("npr-test")
    assert not [p for p in cache.rglob("*") if p.is_file()]
    assert not (cache / "models" / "npr-test").exists()


def test_an_interrupted_download_resumes(server, cache, monkeypatch, npr_checkpoint):
    state, data = npr_checkpoint
    server.files["/NPR.pth"] = data
    server.cut.add("/NPR.pth")
    _release(monkeypatch, urls=(server.url("/NPR.pth"),), sha256=hashlib.sha256(data).hexdigest())
    with pytest.raises(zoo.ZooError, match="interrupted.*run the same command again to resume"):
        zoo.pull("npr-test")
    part = cache / "partial" / "npr-test" / "NPR.pth.part"
    assert 0 < part.stat().st_size < len(data)
    assert not (cache / "files" / "npr-test" / "NPR.pth").exists()
    assert not (cache / "models" / "npr-test").exists()
    folder = zoo.pull("npr-test")
    assert server.requests[-1][1] == f"bytes={len(data) // 2}-"
    assert (cache / "files" / "npr-test" / "NPR.pth").read_bytes() == data and not part.exists()
    with torch.no_grad():
        torch.testing.assert_close(aigi.load_detector(folder).eval()(X), official_npr(state, X), rtol=1e-4, atol=1e-5)


def test_a_server_that_ignores_range_restarts_the_file(server, cache, monkeypatch, npr_checkpoint):
    data = npr_checkpoint[1]
    server.files["/NPR.pth"] = data
    server.honour_range = False
    _release(monkeypatch, urls=(server.url("/NPR.pth"),), sha256=hashlib.sha256(data).hexdigest())
    part = cache / "partial" / "npr-test" / "NPR.pth.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"garbage from an older attempt")
    zoo.pull("npr-test")
    assert (cache / "files" / "npr-test" / "NPR.pth").read_bytes() == data


def test_file_import_and_manual_only_releases(cache, monkeypatch, npr_checkpoint, tmp_path):
    from aigi.cli import app

    state, data = npr_checkpoint
    _release(monkeypatch, gdrive_file="abc123")
    with pytest.raises(zoo.ZooError, match=r"drive.google.com/file/d/abc123.*aigi pull npr-test --file PATH"):
        zoo.pull("npr-test")
    ckpt = tmp_path / "downloaded.pth"
    ckpt.write_bytes(data)
    result = CliRunner().invoke(app, ["pull", "npr-test", "--file", str(ckpt)])
    assert result.exit_code == 0, result.output
    folder = Path(result.stdout.strip().splitlines()[-1])
    assert folder == cache / "models" / "npr-test" and (folder / "model.safetensors").is_file()
    assert json.loads((folder / "conversion.json").read_text())["preset"] == "forensynths-resize256"
    # a hand-downloaded file with the wrong published checksum is refused
    _release(monkeypatch, gdrive_file="abc123", sha256="f" * 64)
    result = CliRunner().invoke(app, ["pull", "npr-test", "--file", str(ckpt)])
    assert result.exit_code == 1 and "published sha256" in result.output
    unknown = CliRunner().invoke(app, ["pull", "no-such-release"])
    assert unknown.exit_code == 1 and "known:" in unknown.output


def test_hub_releases_use_hf_hub_download(cache, monkeypatch, npr_checkpoint, tmp_path):
    import huggingface_hub

    data = npr_checkpoint[1]
    calls = []

    def fake_download(*, repo_id, filename, cache_dir):
        calls.append((repo_id, filename))
        path = Path(cache_dir) / "snap" / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return str(path)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    _release(monkeypatch, hf_repo="someone/npr", hf_filename="weights/NPR.pth")
    folder = zoo.pull("npr-test")
    assert calls == [("someone/npr", "weights/NPR.pth")] and (folder / "config.json").is_file()


def test_offline_is_a_clear_error(cache, monkeypatch):
    _release(monkeypatch, urls=("http://127.0.0.1:9/NPR.pth",))  # discard port: refused
    with pytest.raises(zoo.ZooError, match="cannot reach .*aigi pull NAME --file PATH"):
        zoo.pull("npr-test")


def test_detect_accepts_zoo_names(server, cache, monkeypatch, npr_checkpoint, tmp_path):
    from PIL import Image

    from aigi.cli import app

    server.files["/NPR.pth"] = npr_checkpoint[1]
    _release(monkeypatch, urls=(server.url("/NPR.pth"),))
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (40, 40), (120, 30, 200)).save(photos / "a.png")
    out = tmp_path / "scores.csv"
    result = CliRunner().invoke(app, ["detect", "--model", "zoo:npr-test", str(photos), "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "a.png" in out.read_text() and (cache / "models" / "npr-test" / "config.json").is_file()
