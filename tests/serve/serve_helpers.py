"""Helpers of the serving tests (imported by the test modules; fixtures live in conftest.py)."""

from __future__ import annotations

import contextlib
import io
import socket
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import torch
from PIL import Image

from aigi.data.io import decode_image
from aigi.inference import Predictor


def png_bytes(width: int, height: int, seed: int = 0) -> bytes:
    """A random RGB PNG, encoded in memory."""
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@contextlib.asynccontextmanager
async def asgi_client(app, **kwargs):
    """An httpx client talking to ``app`` in-process, with the app's lifespan (batcher) running."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://aigi.test", **kwargs) as client:
            yield client


def direct_scores(model_dir: Path, images: list[bytes]) -> list[float]:
    """P(fake) computed without the server, by the shared engine on the CPU: decode, transform, score."""
    predictor = Predictor.from_pretrained(model_dir, device="cpu")
    x = torch.stack([predictor.transform(decode_image(b)) for b in images])
    return predictor.probabilities(x).tolist()


@contextlib.contextmanager
def running_server(app, timeout: float = 10.0):
    """Run ``app`` under uvicorn on 127.0.0.1 on a free port in a thread; yields the base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()
