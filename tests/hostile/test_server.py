"""Hostile clients of the server (issue 13 items 2, 6): memory admitted by bytes and pixels
against one budget, 503 + Retry-After beyond it, memory given back, malformed multipart,
odd file names, slow and idle connections, the connection limit."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
import zlib

import httpx
import pytest

from aigi.serve.app import create_app
from aigi.serve.connections import uvicorn_options
from aigi.serve.memory import MemoryBudget, Reservation
from aigi.serve.settings import MiB, ServeSettings

from .conftest import png_bytes


def png_of_size(width: int, height: int, rows: int | None = None) -> bytes:
    """A black RGB PNG of ``width x height`` (tiny: zeros compress); ``rows`` cuts its data
    after that many rows, leaving only a header that declares the full size."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = (b"\x00" * (1 + 3 * width)) * (height if rows is None else rows)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 6))
            + chunk(b"IEND", b""))


@contextlib.asynccontextmanager
async def client_for(app):
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://aigi.test") as client:
            yield client


def _settings(**kw) -> ServeSettings:
    base = dict(max_upload_bytes=2 * MiB, max_images=4, max_pixels=4_000_000, memory_budget_bytes=128 * MiB)
    base.update(kw)
    return ServeSettings(**base)


# -- the budget itself --------------------------------------------------------------------
def test_budget_refuses_beyond_its_limit_and_a_closed_reservation_takes_nothing():
    from aigi.serve.batching import Overloaded

    budget = MemoryBudget(100)
    with budget.reservation() as a:
        a.grow(60)
        b = Reservation(budget)
        with pytest.raises(Overloaded, match="busy"):
            b.grow(50)
        with pytest.raises(Overloaded, match="more than the whole memory budget"):
            b.grow(101)
    assert budget.used == 0 and budget.peak == 60 and budget.rejected == 2
    with pytest.raises(Overloaded):
        a.grow(1)  # the request ended (a worker thread of a timed-out request)
    assert budget.used == 0


def test_settings_refuse_a_budget_that_cannot_hold_the_largest_request():
    with pytest.raises(ValueError, match="memory_budget_bytes"):
        ServeSettings(memory_budget_bytes=64 * MiB)  # defaults allow 320 MiB bodies


# -- admission by bytes and pixels --------------------------------------------------------
def test_declared_body_beyond_the_budget_gets_503_before_reading(tiny_model):
    app = create_app(tiny_model, _settings())
    state = app.state.aigi

    async def go():
        async with client_for(app) as c:
            held = state.memory.reservation()
            held.grow(state.memory.limit - 1024)  # the rest of the server holds all but 1 KiB
            try:
                files = {"files": ("a.png", png_bytes(40), "image/png")}
                res = await c.post("/v1/detect", files=files)
            finally:
                held.close()
            assert res.status_code == 503 and res.headers["retry-after"] == "1"
            assert res.json()["error"] == "overloaded" and "MiB" in res.json()["message"]
            res = await c.post("/v1/detect", files=files)
            assert res.status_code == 200 and res.json()["results"][0]["ok"]
            assert state.memory.used == 0  # every byte given back

    asyncio.run(go())


def test_pixels_are_charged_from_the_header_before_decoding(tiny_model, monkeypatch):
    app = create_app(tiny_model, _settings(max_pixels=4_000_000, memory_budget_bytes=100 * MiB))
    state = app.state.aigi
    decoded: list[str] = []
    import aigi.serve.app as app_module

    real = app_module.decode_image
    monkeypatch.setattr(app_module, "decode_image", lambda *a, **k: decoded.append(k.get("name")) or real(*a, **k))

    async def go():
        async with client_for(app) as c:
            # 2000 x 2000 declares 4 MP = 96 MB of decode: fits once, not with 10 MB already held
            img = png_of_size(2000, 2000)
            held = state.memory.reservation()
            held.grow(10 * MiB)
            try:
                res = await c.post("/v1/detect", files={"files": ("big.png", img, "image/png")})
            finally:
                held.close()
            assert res.status_code == 503 and "decoding big.png" in res.json()["message"]
            assert decoded == []  # refused before a pixel was decoded
            res = await c.post("/v1/detect", files={"files": ("big.png", img, "image/png")})
            assert res.status_code == 200 and res.json()["results"][0]["ok"]
            assert decoded == ["big.png"] and state.memory.used == 0 and state.memory.peak >= 96_000_000

    asyncio.run(go())


def test_chunked_body_without_content_length_is_charged_as_it_arrives(tiny_model):
    app = create_app(tiny_model, _settings())
    state = app.state.aigi
    body = (b"--XyZ\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.png\"\r\n"
            b"Content-Type: image/png\r\n\r\n" + png_bytes(40) + b"\r\n--XyZ--\r\n")

    async def chunks():
        for i in range(0, len(body), 1000):
            yield body[i:i + 1000]

    async def go():
        async with client_for(app) as c:
            res = await c.post("/v1/detect", content=chunks(), headers={"content-type": "multipart/form-data; boundary=XyZ"})
            assert res.status_code == 200, res.text
            assert state.memory.peak >= len(body) and state.memory.used == 0

    asyncio.run(go())


# -- names and malformed bodies -----------------------------------------------------------
def test_non_utf8_file_name_round_trips_in_the_response(tiny_model):
    app = create_app(tiny_model, _settings())
    body = (b"--B\r\nContent-Disposition: form-data; name=\"files\"; filename=\"b_\xff[x].png\"\r\n"
            b"Content-Type: image/png\r\n\r\n" + png_bytes(40) + b"\r\n--B--\r\n")

    async def go():
        async with client_for(app) as c:
            res = await c.post("/v1/detect", content=body, headers={"content-type": "multipart/form-data; boundary=B"})
            assert res.status_code == 200, res.text
            assert res.json()["results"][0]["filename"] == "b_\\xff[x].png"

    asyncio.run(go())


@pytest.mark.parametrize(
    "body, ctype, status",
    [
        (b"--B\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.png\"\r\n\r\nabc", "boundary=B", 400),
        (b"garbage without any boundary", "boundary=B", 400),
        (b"--B\r\nno-colon-header\r\n\r\nabc\r\n--B--\r\n", "boundary=B", 400),
        (b"--B\r\nContent-Disposition: form-data\r\n\r\nabc\r\n--B--\r\n", "boundary=B", 400),
        (b"", "", 400),
    ],
)
def test_malformed_multipart_is_a_clear_400_and_holds_nothing(tiny_model, body, ctype, status):
    app = create_app(tiny_model, _settings())
    state = app.state.aigi

    async def go():
        async with client_for(app) as c:
            res = await c.post("/v1/detect", content=body, headers={"content-type": f"multipart/form-data; {ctype}"})
            assert res.status_code == status and res.json()["error"] == "bad_request", res.text
            assert state.memory.used == 0

    asyncio.run(go())


def test_negative_content_length_is_refused(tiny_model):
    app = create_app(tiny_model, _settings())

    async def go():
        async with client_for(app) as c:
            res = await c.post("/v1/detect", content=b"x", headers={"content-type": "multipart/form-data; boundary=B",
                                                                    "content-length": "-5"})
            assert res.status_code == 400 and "Content-Length" in res.json()["message"]

    asyncio.run(go())


# -- connections: slow heads, idle sockets, the connection limit --------------------------
@contextlib.contextmanager
def served(app, settings: ServeSettings):
    """``app`` under uvicorn with ``settings``' connection options, on a free loopback port."""
    import uvicorn

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    opts = uvicorn_options(settings)
    opts.pop("host"), opts.pop("port")
    server = uvicorn.Server(uvicorn.Config(app, log_level="critical", access_log=False, **opts))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.02)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def _closed_within(conn: socket.socket, seconds: float, trickle: bytes = b"") -> float | None:
    """Seconds until the server closes ``conn`` (sending ``trickle`` a byte at a time), or None."""
    conn.settimeout(0.1)
    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < seconds:
        if i < len(trickle):
            try:
                conn.sendall(trickle[i:i + 1])
            except OSError:
                return time.monotonic() - t0
            i += 1
        try:
            if conn.recv(1024) == b"":
                return time.monotonic() - t0
        except socket.timeout:
            pass
        except OSError:
            return time.monotonic() - t0
    return None


def test_idle_and_trickling_connections_are_closed_by_the_header_timeout(tiny_model):
    settings = _settings(header_timeout_s=0.6, keep_alive_s=1)
    app = create_app(tiny_model, settings)
    with served(app, settings) as port:
        idle = socket.create_connection(("127.0.0.1", port))
        slow = socket.create_connection(("127.0.0.1", port))
        head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 200 + b"\r\n\r\n"
        t_idle = _closed_within(idle, 6.0)
        t_slow = _closed_within(slow, 6.0, trickle=head)
        # closed long before the head could complete (one byte every >= 0.1 s: 22 s for this head);
        # loose bounds: a busy machine delays the server's timer
        assert t_idle is not None and t_idle < 4.0
        assert t_slow is not None and t_slow < 4.0
        # a normal client on a keep-alive connection is served, twice
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
            assert c.get("/healthz").status_code == 200
            time.sleep(0.3)
            assert c.get("/healthz").status_code == 200
        idle.close(), slow.close()


def test_connections_beyond_the_limit_get_503(tiny_model):
    settings = _settings(max_connections=2, header_timeout_s=5)
    app = create_app(tiny_model, settings)
    with served(app, settings) as port:
        holders = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
        time.sleep(0.2)
        res = httpx.get(f"http://127.0.0.1:{port}/healthz")
        assert res.status_code == 503
        for h in holders:
            h.close()
        time.sleep(0.2)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200


def test_a_body_refused_before_reading_gets_its_503_over_tcp(tiny_model):
    """Over real TCP: a 32 MiB upload refused before its body is read gets its 503 and
    Retry-After (uvicorn discards the unread body), again and again on the same server."""
    settings = _settings(max_upload_bytes=40 * MiB, memory_budget_bytes=256 * MiB)
    app = create_app(tiny_model, settings)
    state = app.state.aigi
    with served(app, settings) as port:
        held = state.memory.reservation()
        held.grow(state.memory.limit - MiB)
        try:
            big = b"\xff\xd8\xff" + b"\0" * (32 * MiB)
            for _ in range(3):
                res = httpx.post(f"http://127.0.0.1:{port}/v1/detect", files={"files": ("big.jpg", big, "image/jpeg")})
                assert res.status_code == 503 and res.headers["retry-after"] == "1"
        finally:
            held.close()
    assert state.memory.used == 0


def test_serve_command_runs_uvicorn_with_the_connection_limits(tiny_model, monkeypatch):
    import uvicorn
    from typer.testing import CliRunner

    from aigi.cli import app as cli_app
    from aigi.serve.connections import HeaderTimeoutH11

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda web, **kw: seen.update(web=web, **kw))
    r = CliRunner().invoke(cli_app, ["serve", "--model", str(tiny_model), "--header-timeout", "3", "--keep-alive", "2",
                                     "--max-connections", "40", "--memory-budget-mb", "3000"])
    assert r.exit_code == 0, r.output
    assert issubclass(seen["http"], HeaderTimeoutH11) and seen["http"].header_timeout_s == 3.0
    assert seen["timeout_keep_alive"] == 2 and seen["limit_concurrency"] == 40
    assert seen["web"].state.aigi.memory.limit == 3000 * MiB
    r = CliRunner().invoke(cli_app, ["serve", "--model", str(tiny_model), "--memory-budget-mb", "100"])
    assert r.exit_code == 1 and "memory_budget_bytes" in r.output
