"""Load test of ``aigi serve`` on the loopback interface: throughput, latency, overload behaviour.

It starts the server itself (a subprocess on 127.0.0.1 and a free port) with a detector it
saves to a temporary folder (NPR at its published size, 1.44 M parameters and a 224 px
input, random weights; ``--size tiny`` for the few-thousand-parameter test model), or with
``--model DIR``. For each client count N it runs N concurrent clients (httpx, async) for T
seconds, each posting one image per request in a loop, then reports requests per second,
p50/p99 latency, the number of 503s, the server's mean batch size, and checks that every
request got a response and every accepted (200) request got its score (the server's own
count of scored images must equal the number of accepted images). Bounded: each run stops at
its deadline or after ``--max-requests``, and the whole test after ``--max-seconds``; the
server is stopped at the end.

    python benchmarks/load_test.py --clients 1,4,16 --duration 10

writes (or adds a scenario to) ``benchmarks/results/serving.json``. ``--unbatched`` adds the
same runs against a server with ``--max-batch 1``, to show what dynamic batching buys;
``--max-pending`` small enough makes the server shed load with 503s. ``--breakdown`` also
measures what limits the rate: ``GET /healthz`` from the same number of clients (the HTTP
stack alone, no upload or model) and the decode + preprocess cost per image.
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
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def make_images(side: int, n: int = 4) -> list[bytes]:
    """Photo-like JPEGs (smooth gradients plus mild noise), encoded in memory."""
    out = []
    for i in range(n):
        rng = np.random.default_rng(i)
        y, x = np.mgrid[0:side, 0:side] / side
        base = np.stack([np.sin(3 * x + i), np.cos(2 * y - i), np.sin(2 * (x + y))], -1) * 90 + 128
        arr = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def make_model(size: str, directory: Path) -> dict[str, Any]:
    import torch

    from aigi.detectors import create_detector
    from aigi.detectors.registry import detector_class

    torch.manual_seed(0)
    overrides = detector_class("npr").tiny_overrides if size == "tiny" else {}
    det = create_detector("npr", **overrides)
    det.save_pretrained(directory)
    return {"method": "npr", "size": size, "parameters": sum(p.numel() for p in det.parameters()),
            "input": det.config.preprocess.size}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``aigi serve`` in a subprocess; stopped (by its own pid) on exit."""

    def __init__(self, model: Path, log: Path, **options: Any) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "aigi.cli", "serve", "--model", str(model),
               "--host", "127.0.0.1", "--port", str(self.port)]
        for k, v in options.items():
            cmd += [f"--{k.replace('_', '-')}", str(v)]
        self.log = log.open("w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, cwd=REPO)

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}; see {self.log.name}")
            try:
                if httpx.get(self.base + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the server did not answer /healthz within {timeout} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


def _percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


async def run_clients(base: str, images: list[bytes], clients: int, duration: float, max_requests: int) -> dict[str, Any]:
    """N clients posting one image per request until the deadline; every outcome recorded."""
    latencies: list[float] = []
    status: dict[str, int] = {}
    problems: list[str] = []
    sent = 0
    deadline = time.monotonic() + duration
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=60.0, limits=limits) as client:
        before = (await client.get("/healthz")).json()["batching"]

        async def one_client(k: int) -> None:
            nonlocal sent
            i = k
            while time.monotonic() < deadline and sent < max_requests:
                sent += 1
                data = images[i % len(images)]
                i += 1
                t0 = time.perf_counter()
                try:
                    r = await client.post("/v1/detect", files=[("files", (f"{k}-{i}.jpg", data, "image/jpeg"))])
                except httpx.HTTPError as err:  # no answer at all: a lost request
                    status["no_response"] = status.get("no_response", 0) + 1
                    problems.append(f"{type(err).__name__}: {err}")
                    continue
                dt = time.perf_counter() - t0
                status[str(r.status_code)] = status.get(str(r.status_code), 0) + 1
                if r.status_code == 200:
                    res = r.json()["results"]
                    if len(res) != 1 or not res[0]["ok"] or not 0.0 <= res[0]["p_fake"] <= 1.0:
                        problems.append(f"accepted request without a valid score: {res}")
                    latencies.append(dt)
                elif r.status_code == 503:
                    await asyncio.sleep(float(r.headers.get("retry-after", "1")) * 0.05)  # brief back-off
                else:
                    problems.append(f"HTTP {r.status_code}: {r.text[:200]}")

        t_start = time.perf_counter()
        await asyncio.gather(*[one_client(k) for k in range(clients)])
        elapsed = time.perf_counter() - t_start
        after = (await client.get("/healthz")).json()["batching"]
    ok = status.get("200", 0)
    scored = after["images"] - before["images"]
    batches = after["batches"] - before["batches"]
    if scored != ok:
        problems.append(f"server scored {scored} images but {ok} requests were accepted")
    return {
        "clients": clients,
        "seconds": round(elapsed, 3),
        "requests": sum(status.values()),
        "accepted": ok,
        "status_503": status.get("503", 0),
        "status_counts": status,
        "requests_per_second": round(ok / elapsed, 2),
        "latency_ms_p50": None if not latencies else round(1000 * _percentile(latencies, 50), 2),
        "latency_ms_p99": None if not latencies else round(1000 * _percentile(latencies, 99), 2),
        "latency_ms_mean": None if not latencies else round(1000 * statistics.fmean(latencies), 2),
        "server_batches": batches,
        "server_mean_batch": round(scored / batches, 3) if batches else 0.0,
        "server_forward_seconds": round(after["forward_seconds"] - before["forward_seconds"], 3),
        "all_answered": not problems,
        "problems": problems[:20],
    }


async def run_get(base: str, path: str, clients: int, duration: float) -> dict[str, Any]:
    """N clients sending ``GET path`` until the deadline: the HTTP stack's own rate (no upload,
    no decoding, no model), client and server on the same machine as in the detect runs."""
    done = 0
    deadline = time.monotonic() + duration
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=60.0, limits=limits) as client:
        async def one() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                r = await client.get(path)
                r.raise_for_status()
                done += 1

        t0 = time.perf_counter()
        await asyncio.gather(*[one() for _ in range(clients)])
        elapsed = time.perf_counter() - t0
    return {"clients": clients, "path": path, "requests_per_second": round(done / elapsed, 1)}


def decode_cost(model: Path, images: list[bytes], reps: int = 20) -> dict[str, Any]:
    """Milliseconds per image of the server's per-image work outside the model, in this process
    on one torch thread: ``decode_image`` + the detector's test transform."""
    import torch

    from aigi.data.io import decode_image
    from aigi.data.transforms import build_transform
    from aigi.detectors import load_detector

    det = load_detector(model)
    tf = build_transform(det.preprocess_config(), train=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        times = []
        for _ in range(reps):
            for b in images:
                t = time.perf_counter()
                tf(decode_image(b))
                times.append(time.perf_counter() - t)
    finally:
        torch.set_num_threads(threads)
    ms = 1000 * statistics.median(times)
    return {"decode_preprocess_ms_median": round(ms, 3), "images_per_second_one_core": round(1000 / ms, 1)}


def batch_sweep(model: Path, sizes: list[int], threads: int, seconds: float = 1.0) -> list[dict[str, Any]]:
    """Forward milliseconds per image at each batch size, on the server's model thread count:
    where a bigger batch stops paying, ``--max-batch`` should stop too."""
    import torch

    from aigi.detectors import load_detector
    from aigi.inference.fast import inference_forward

    det = load_detector(model).for_inference()
    fwd = inference_forward(det)
    side = int(det.config.preprocess.size)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    out = []
    try:
        with torch.inference_mode():
            for b in sizes:
                x = torch.randn(b, 3, side, side, generator=torch.Generator().manual_seed(0))
                fwd(x)  # warm-up
                n, t0 = 0, time.perf_counter()
                while time.perf_counter() - t0 < seconds or n < 2:
                    fwd(x)
                    n += 1
                ms = 1000 * (time.perf_counter() - t0) / (n * b)
                out.append({"batch": b, "forward_ms_per_image": round(ms, 3), "calls": n, "threads": threads,
                            "load": round(os.getloadavg()[0], 2)})
    finally:
        torch.set_num_threads(before)
    return out


async def batcher_only(model: Path, images: list[bytes], clients: int, duration: float, args) -> dict[str, Any]:
    """The same loop without HTTP: N tasks submit one preprocessed image at a time to the batcher."""
    import torch

    from aigi.data.io import decode_image
    from aigi.data.transforms import build_transform
    from aigi.detectors import load_detector
    from aigi.serve.batching import DynamicBatcher

    det = load_detector(model).for_inference()
    tf = build_transform(det.preprocess_config(), train=False)
    tensors = [tf(decode_image(b)) for b in images]
    batcher = DynamicBatcher(lambda x: torch.sigmoid(det(x)), max_batch=args.max_batch,
                             max_wait_s=args.batch_wait_ms / 1000, max_pending=args.max_pending,
                             threads=args.threads)
    await batcher.start()
    done = 0
    deadline = time.monotonic() + duration

    async def one(k: int) -> None:
        nonlocal done
        i = k
        while time.monotonic() < deadline:
            with batcher.admit(1) as ticket:
                await batcher.submit(ticket, [tensors[i % len(tensors)]])
            done += 1
            i += 1

    t0 = time.perf_counter()
    try:
        await asyncio.gather(*[one(k) for k in range(clients)])
    finally:
        await batcher.stop()
    elapsed = time.perf_counter() - t0
    st = batcher.stats
    return {"clients": clients, "images_per_second": round(done / elapsed, 1),
            "mean_batch": round(st.images / st.batches, 3) if st.batches else 0.0,
            "forward_ms_per_image": round(1000 * st.forward_seconds / max(st.images, 1), 3)}


def series(model: Path, log: Path, images: list[bytes], args, **server_options: Any) -> list[dict[str, Any]]:
    server = Server(model, log, **server_options)
    try:
        server.wait_ready()
        args.server_threads = httpx.get(server.base + "/healthz").json()["model_threads"]
        # warm-up: first forward passes allocate and pick kernels
        for data in images:
            httpx.post(server.base + "/v1/detect", files=[("files", ("w.jpg", data, "image/jpeg"))], timeout=60)
        runs = []
        for n in args.clients:
            if time.monotonic() - args.t0 > args.max_seconds:
                print(f"  stopping: --max-seconds {args.max_seconds:.0f} reached", flush=True)
                break
            run = run_clients(server.base, images, n, args.duration, args.max_requests)
            res = asyncio.run(asyncio.wait_for(run, args.duration + 120))  # never hangs
            runs.append(res)
            print(f"  N={n:>3}: {res['requests_per_second']:8.1f} req/s  p50 {res['latency_ms_p50']} ms  "
                  f"p99 {res['latency_ms_p99']} ms  503s {res['status_503']}  mean batch {res['server_mean_batch']}  "
                  f"all answered: {res['all_answered']}", flush=True)
            if getattr(args, "breakdown", False):  # the same server and client count, without any work
                get = asyncio.run(asyncio.wait_for(run_get(server.base, "/healthz", n, args.duration),
                                                   args.duration + 60))
                res["healthz_requests_per_second"] = get["requests_per_second"]
                print(f"         GET /healthz: {get['requests_per_second']:8.1f} req/s", flush=True)
        return runs
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", default="1,4,16", help="comma-separated client counts")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per client count")
    p.add_argument("--max-requests", type=int, default=100_000, help="cap on requests per run")
    p.add_argument("--max-seconds", type=float, default=600.0, help="hard cap on the whole test")
    p.add_argument("--model", type=Path, default=None, help="detector folder (default: NPR saved here)")
    p.add_argument("--size", choices=["small", "tiny"], default="small",
                   help="small: NPR at its published size (1.44 M params, 224 px); tiny: the test model")
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--max-batch", type=int, default=32)
    p.add_argument("--batch-wait-ms", type=float, default=10.0)
    p.add_argument("--max-pending", type=int, default=256)
    p.add_argument("--threads", type=int, default=None, help="torch threads of the server's model")
    p.add_argument("--unbatched", action="store_true", help="also run against --max-batch 1")
    p.add_argument("--batcher-only", action="store_true",
                   help="also measure the batcher alone (no HTTP, no decoding) with the same client counts")
    p.add_argument("--breakdown", action="store_true",
                   help="also measure what limits throughput: GET /healthz at each client count (the HTTP "
                        "stack alone) and decode + preprocess per image in this process")
    p.add_argument("--batch-sweep", default=None,
                   help="comma-separated batch sizes: forward ms per image at each, on the server's model "
                        "thread count (--threads, default 1), before the HTTP runs")
    p.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "serving.json")
    p.add_argument("--name", default=None,
                   help="scenario name in the output (default: the model size); other scenarios already "
                        "in the file are kept")
    args = p.parse_args(argv)
    args.clients = [int(c) for c in args.clients.split(",") if c.strip()]
    args.t0 = time.monotonic()
    planned = args.duration * len(args.clients) * (1 + args.unbatched + args.batcher_only + args.breakdown)
    if planned > args.max_seconds:
        p.error(f"{planned:.0f} s of runs planned, more than --max-seconds {args.max_seconds:.0f}")

    import torch

    started = time.time()
    with tempfile.TemporaryDirectory(prefix="aigi-load-") as tmp:
        tmp = Path(tmp)
        if args.model is None:
            model_dir = tmp / "model"
            model_info = make_model(args.size, model_dir)
        else:
            model_dir = args.model
            model_info = {"folder": str(args.model)}
        images = make_images(args.image_size)
        options = dict(max_batch=args.max_batch, batch_wait_ms=args.batch_wait_ms, max_pending=args.max_pending,
                       max_images=min(16, args.max_pending))  # the server requires max_images <= max_pending
        if args.threads:
            options["threads"] = args.threads
        load_before = os.getloadavg()
        costs = decode_cost(model_dir, images) if args.breakdown else None
        sweep = None
        if args.batch_sweep:
            sweep = batch_sweep(model_dir, [int(b) for b in args.batch_sweep.split(",") if b.strip()],
                                args.threads or 1)
            for r in sweep:
                print(f"  forward at batch {r['batch']:>3}: {r['forward_ms_per_image']:8.3f} ms/image", flush=True)
        print(f"batched server (max_batch {args.max_batch}, wait {args.batch_wait_ms} ms):", flush=True)
        runs = series(model_dir, tmp / "server.log", images, args, **options)
        no_http = None
        if args.batcher_only:
            print("batcher alone (no HTTP):", flush=True)
            no_http = []
            for n in args.clients:
                r = asyncio.run(asyncio.wait_for(batcher_only(model_dir, images, n, args.duration, args), args.duration + 60))
                no_http.append(r)
                print(f"  N={n:>3}: {r['images_per_second']:8.1f} images/s  mean batch {r['mean_batch']}  "
                      f"forward {r['forward_ms_per_image']} ms/image", flush=True)
        unbatched = None
        if args.unbatched:
            print("unbatched server (max_batch 1):", flush=True)
            unbatched = series(model_dir, tmp / "server1.log", images, args, **{**options, "max_batch": 1})
    report = {
        "command": "python benchmarks/load_test.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpu_count": os.cpu_count(), "torch": torch.__version__,
                    "server_model_threads": getattr(args, "server_threads", None), "device": "cpu",
                    "load_average_1m_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)]},
        "model": model_info,
        "image": {"side": args.image_size, "format": "JPEG q90", "bytes_mean": int(np.mean([len(b) for b in images]))},
        "server": options,
        "duration_s": args.duration,
        "runs": runs,
        "unbatched_runs": unbatched,
        "batcher_only_runs": no_http,
        "decode_cost": costs,
        "batch_sweep": sweep,
        "wall_seconds": round(time.time() - started, 1),
    }
    name = args.name or (args.size if args.model is None else args.model.name)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"scenarios": {}}
    if args.output.is_file():
        try:
            previous = json.loads(args.output.read_text())
            if isinstance(previous, dict) and isinstance(previous.get("scenarios"), dict):
                results = previous
        except json.JSONDecodeError:
            pass
    results["scenarios"][name] = report
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote scenario {name!r} to {args.output}")
    ok = all(r["all_answered"] for r in runs + (unbatched or []))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
