"""Memory of ``aigi serve`` over time while many clients send large images at once.

Starts the server in a subprocess on 127.0.0.1 (a free port) with a given memory budget,
samples its resident set size every ``--sample-ms`` from another thread (psutil), and runs
``--clients`` concurrent clients (httpx, async), each posting ``--requests`` large images
one per request; a 503 is counted and, with ``--retries``, retried after its Retry-After.
After the clients finish it keeps sampling for ``--settle`` seconds, to show whether the
memory is given back. Bounded everywhere: requests per client, retries, ``--max-seconds``
for the whole run; the server is stopped (by its own pid) at the end.

    python benchmarks/serve_memory.py --clients 64 --side 4000 --budget-mb 1024

writes ``benchmarks/results/serve_memory.json``: settings, idle/peak/final RSS, the peak
above idle against the budget, status counts, and the RSS samples over time. The test
``tests/hostile/test_server_memory.py`` runs :func:`measure` at a small size.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024


def large_jpeg(width: int, height: int, seed: int = 0) -> bytes:
    """A photo-like JPEG (smooth colours plus mild noise) of ``width x height``."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([np.sin(x / 300 + seed), np.cos(y / 200 - seed), np.sin((x + y) / 400)], -1) * 90 + 128
    arr = np.clip(base + rng.normal(0, 6, base.shape).astype(np.float32), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=85)
    return buf.getvalue()


def tiny_model(directory: Path) -> Path:
    """The few-thousand-parameter NPR test model, saved to ``directory``."""
    import torch

    from aigi.detectors import create_detector
    from aigi.detectors.registry import detector_class

    torch.manual_seed(0)
    create_detector("npr", **detector_class("npr").tiny_overrides).save_pretrained(directory)
    return directory


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Sampler(threading.Thread):
    """RSS of one process every ``interval`` seconds, as ``(seconds since start, bytes)``."""

    def __init__(self, pid: int, interval: float) -> None:
        super().__init__(daemon=True)
        import psutil

        self.proc = psutil.Process(pid)
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self.t0 = time.monotonic()
        self.stop_event = threading.Event()

    def now(self) -> int:
        return self.proc.memory_info().rss

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.samples.append((round(time.monotonic() - self.t0, 3), self.now()))
            except Exception:  # the process is gone
                return
            self.stop_event.wait(self.interval)


async def _clients(base: str, images: list[bytes], clients: int, requests: int, retries: int,
                   deadline: float) -> dict[str, Any]:
    status: dict[str, int] = {}
    problems: list[str] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=120.0, limits=limits) as client:

        async def one(k: int) -> None:
            for r in range(requests):
                data = images[(k + r) % len(images)]
                for attempt in range(retries + 1):
                    if time.monotonic() > deadline:
                        return
                    try:
                        res = await client.post("/v1/detect", files={"files": (f"c{k}-{r}.jpg", data, "image/jpeg")})
                    except httpx.HTTPError as err:
                        status["error"] = status.get("error", 0) + 1
                        problems.append(f"{type(err).__name__}: {err}")
                        break
                    status[str(res.status_code)] = status.get(str(res.status_code), 0) + 1
                    if res.status_code == 200 and not res.json()["results"][0]["ok"]:
                        problems.append(f"image not scored: {res.json()['results'][0]['error']}")
                    if res.status_code != 503 or attempt == retries:
                        break
                    await asyncio.sleep(float(res.headers.get("retry-after", "1")))

        await asyncio.gather(*(one(k) for k in range(clients)))
        health = (await client.get("/healthz")).json()
    return {"status": status, "problems": problems[:10], "server_memory": health.get("memory")}


def measure(
    model: Path,
    *,
    clients: int = 64,
    requests: int = 2,
    width: int = 4000,
    height: int = 3000,
    n_images: int = 4,
    budget_mb: float = 1024,
    max_pixels: int | None = None,
    retries: int = 0,
    settle: float = 3.0,
    sample_ms: float = 50.0,
    max_seconds: float = 300.0,
    log: Path | None = None,
) -> dict[str, Any]:
    """Run the server and the clients; returns the measurements (see the module doc)."""
    images = [large_jpeg(width, height, seed=i) for i in range(n_images)]
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    upload_mb = max(len(b) for b in images) / MiB + 1
    cmd = [sys.executable, "-m", "aigi.cli", "serve", "--model", str(model), "--host", "127.0.0.1",
           "--port", str(port), "--device", "cpu", "--max-images", "1", "--max-upload-mb", f"{upload_mb:.2f}",
           "--memory-budget-mb", str(budget_mb), "--max-connections", str(max(256, 2 * clients)),
           "--timeout", "120", "--threads", "1"]
    if max_pixels is not None:
        cmd += ["--max-pixels", str(max_pixels)]
    log_fh = open(log, "w") if log is not None else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, stdout=log_fh, stderr=subprocess.STDOUT, cwd=REPO)
    t_start = time.monotonic()
    deadline = t_start + max_seconds
    sampler = None
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited with {proc.returncode}" + (f"; see {log}" if log else ""))
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start in time")
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        # one warm-up request: lazy imports, the first forward pass, thread pools
        warm = httpx.post(base + "/v1/detect", files={"files": ("w.jpg", images[0], "image/jpeg")}, timeout=120)
        warm.raise_for_status()
        sampler = _Sampler(proc.pid, sample_ms / 1000)
        time.sleep(0.3)
        idle = sampler.now()
        sampler.start()
        t0 = time.monotonic()
        outcome = asyncio.run(_clients(base, images, clients, requests, retries, deadline))
        burst_s = time.monotonic() - t0
        time.sleep(settle)
        sampler.stop_event.set()
        sampler.join(5)
        final = sampler.now()
    finally:
        if sampler is not None:
            sampler.stop_event.set()
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if log is not None:
            log_fh.close()
    peak = max(rss for _, rss in sampler.samples) if sampler.samples else idle
    return {
        "settings": {"clients": clients, "requests_per_client": requests, "image": [width, height],
                     "image_bytes": [len(b) for b in images], "budget_mb": budget_mb, "max_pixels": max_pixels,
                     "retries": retries, "decode_bytes_per_pixel": _bpp()},
        "idle_rss_mb": round(idle / MiB, 1),
        "peak_rss_mb": round(peak / MiB, 1),
        "final_rss_mb": round(final / MiB, 1),
        "peak_above_idle_mb": round((peak - idle) / MiB, 1),
        "final_above_idle_mb": round((final - idle) / MiB, 1),
        "burst_seconds": round(burst_s, 2),
        **outcome,
        "samples": [[t, round(rss / MiB, 1)] for t, rss in sampler.samples],
    }


def _bpp() -> int:
    from aigi.data.io import DECODE_BYTES_PER_PIXEL

    return DECODE_BYTES_PER_PIXEL


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, help="detector folder (default: the tiny NPR, saved to a temp folder)")
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--requests", type=int, default=2, help="images each client sends")
    ap.add_argument("--width", type=int, default=4000)
    ap.add_argument("--height", type=int, default=3000)
    ap.add_argument("--budget-mb", type=float, default=1024)
    ap.add_argument("--retries", type=int, default=0, help="retries of a 503, after its Retry-After")
    ap.add_argument("--settle", type=float, default=3.0)
    ap.add_argument("--sample-ms", type=float, default=50.0)
    ap.add_argument("--max-seconds", type=float, default=300.0)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "serve_memory.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or tiny_model(Path(tmp) / "npr-tiny")
        result = measure(model, clients=args.clients, requests=args.requests, width=args.width, height=args.height,
                         budget_mb=args.budget_mb, retries=args.retries, settle=args.settle,
                         sample_ms=args.sample_ms, max_seconds=args.max_seconds, log=Path(tmp) / "server.log")
    result["machine"] = {"platform": platform.platform(), "cpus": os.cpu_count(),
                         "loadavg": [round(x, 2) for x in os.getloadavg()]}
    result["model"] = "tiny NPR (test size)" if args.model is None else str(args.model)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=1))


if __name__ == "__main__":
    main()
