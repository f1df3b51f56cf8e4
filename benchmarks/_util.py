"""Helpers of the benchmark harness (``benchmarks/run.py``): timing, memory, FLOPs, images.

Kept free of anything ``aigi``-specific so the measurements are easy to audit:

* wall time is ``time.perf_counter``; every measurement records ``os.getloadavg()``
  before and after, so a reader can see how busy the (shared) machine was;
* peak memory is the kernel's max resident set size: ``getrusage(RUSAGE_SELF)`` inside a
  child, or ``os.wait4`` on a command (the largest of the process and the worker
  processes it waited for — not their sum);
* FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` on one real forward
  (matrix products, convolutions and attention; element-wise work is not counted), with
  the CPU flash-attention kernel added, which torch's table does not list.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

#: marker of the one JSON line a child process prints on stdout
RESULT_MARK = "@@AIGI-BENCH-RESULT@@ "


def loadavg() -> list[float]:
    """1-, 5- and 15-minute load averages, rounded (all zeros where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return [0.0, 0.0, 0.0]


def max_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kb / (1024 * 1024) if platform.system() == "Darwin" else kb / 1024, 1)


def current_rss_mb() -> float | None:
    """Resident set size now, in MiB (None where /proc is missing)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    import torch

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        mem_gib = None
    return {
        "cpu": cpu,
        "logical_cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def time_calls(fn: Callable[[], Any], *, warmup: int, iters: int) -> list[float]:
    """Seconds of each of ``iters`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def matmul_rate(dtype_name: str, n: int = 2048, *, min_seconds: float = 1.0) -> dict[str, Any]:
    """Dense ``n x n`` matmul rate in GFLOP/s (2 n^3 per product), best of timed rounds."""
    import torch

    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype_name]
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(dtype)
    b = torch.randn(n, n, generator=g).to(dtype)
    out = torch.empty(n, n, dtype=dtype)
    before = loadavg()
    for _ in range(2):
        torch.mm(a, b, out=out)
    rates, start = [], time.perf_counter()
    while time.perf_counter() - start < min_seconds or len(rates) < 3:
        t = time.perf_counter()
        torch.mm(a, b, out=out)
        rates.append(2 * n**3 / (time.perf_counter() - t) / 1e9)
    return {"n": n, "dtype": dtype_name, "gflops_best": round(max(rates), 1),
            "gflops_median": round(median(rates), 1), "products": len(rates),
            "load_before": before, "load_after": loadavg()}


def count_flops(fn: Callable[[], Any]) -> tuple[int, dict[str, int]]:
    """FLOPs of one call of ``fn`` (which runs the real computation) and their split by op."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    def cpu_sdpa(q, k, v, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(q, k, v)

    extra = {}
    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if op is not None:
        extra[op] = cpu_sdpa
    counter = FlopCounterMode(display=False, custom_mapping=extra)
    with counter:
        fn()
    by_op = {str(k): int(v) for k, v in counter.get_flop_counts().get("Global", {}).items()}
    return int(counter.get_total_flops()), by_op


def run_measured(cmd: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 900,
                 cwd: str | os.PathLike | None = None) -> dict[str, Any]:
    """Run a command; its wall time, exit code, peak memory (``os.wait4``) and output tails."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        before = loadavg()
        t = time.perf_counter()
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=err, env=env, cwd=cwd)
        deadline = t + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        wall = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)  # so Popen does not wait again
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    return {
        "returncode": proc.returncode,
        "timed_out": wall > timeout,
        "wall_s": round(wall, 3),
        "max_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "load_before": before,
        "load_after": loadavg(),
        "stdout": stdout,
        "stderr": stderr,
    }


def child_result(stdout: str) -> dict[str, Any] | None:
    """The JSON a child printed after :data:`RESULT_MARK` (None if it printed none)."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK):])
    return None


def emit_result(result: dict[str, Any]) -> None:
    """Print a child's result as the one marked JSON line the parent reads."""
    print(RESULT_MARK + json.dumps(result), flush=True)


# --------------------------------------------------------------------------- images


def photo_like(w: int, h: int, seed: int):
    """A smooth random colour field plus mild noise: compresses and resamples like a photo."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 32 + 2, w // 32 + 2, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC)
    arr = np.asarray(img).astype(np.int16) + rng.integers(-4, 5, (h, w, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def encoded(img, fmt: str) -> bytes:
    import io

    buf = io.BytesIO()
    if fmt == "JPEG":
        img.save(buf, format="JPEG", quality=90)
    else:
        img.save(buf, format=fmt)
    return buf.getvalue()


def write_files(folder: Path, blobs: Sequence[bytes], count: int, suffix: str) -> list[Path]:
    """``count`` files in ``folder`` cycling through ``blobs`` (content repeats; names differ)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        p = folder / f"{i:05d}{suffix}"
        p.write_bytes(blobs[i % len(blobs)])
        paths.append(p)
    return paths


def write_labelled_tree(root: Path, blobs: Sequence[bytes], count: int, suffix: str = ".png",
                        subsets: Sequence[str] = ("s0", "s1")) -> Path:
    """``count`` images as ``root/<subset>/{0_real,1_fake}/NNNNN.png`` (the subsets layout)."""
    groups = [(s, c) for s in subsets for c in ("0_real", "1_fake")]
    per, extra = divmod(count, len(groups))
    for gi, (subset, cls) in enumerate(groups):
        write_files(root / subset / cls, blobs, per + (1 if gi < extra else 0), suffix)
    return root


def link_tree(src: Path, dst: Path, count: int) -> Path:
    """A labelled tree of the first ``count`` images of ``src`` (hard links; copies if refused)."""
    groups = sorted(p for p in src.glob("*/*") if p.is_dir())
    per, extra = divmod(count, len(groups))
    for gi, g in enumerate(groups):
        target = dst / g.relative_to(src)
        target.mkdir(parents=True, exist_ok=True)
        for f in sorted(g.iterdir())[: per + (1 if gi < extra else 0)]:
            try:
                os.link(f, target / f.name)
            except OSError:
                (target / f.name).write_bytes(f.read_bytes())
    return dst


# --------------------------------------------------------------------------- markdown


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{digits}f}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)
