"""``aigi audit`` throughput and memory: files per second, headers only vs with pixel statistics.

Builds a synthetic dataset of ``--files`` images (5 subsets x {0_real, 1_fake}; sides drawn
from 96..320 px, half PNG, half JPEG at quality 70..95, a quarter with camera EXIF; smooth
random content), then audits N of them (every (total / N)-th file, so every subset and class
is represented) in a fresh child process per measurement:

* ``read_s``: the time to read every file's attributes (until the last progress call);
  ``files_per_s`` = N / ``read_s``;
* ``total_s``: the whole :func:`aigi.audit.audit` call (reading, the per-attribute AUROCs with
  200 bootstrap resamples, the gradient-boosted model, per subset and pooled);
* ``rss_before_mb``, ``rss_after_read_mb``, ``peak_rss_mb``: resident memory before the
  call, when every file has been read, and the process's peak (the analysis: bootstrap
  blocks of at most 10^6 values, the model); ``read_growth_mb`` and ``growth_mb`` the
  growth over the first. Files are read one at a time and only their attributes are kept.

Writes ``benchmarks/results/audit.json``. Not a test: it takes a few minutes on 2 cores.

    python benchmarks/bench_audit.py [--files 10000] [--pixel-files 2000] [--data /tmp/aigi-audit-bench]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import current_rss_mb as rss_mb  # noqa: E402
from _util import loadavg, max_rss_mb  # noqa: E402

MARK = "@@AUDIT-BENCH@@ "
SUBSETS = 5


def make_files(root: Path, n: int, seed: int = 0) -> Path:
    """Write ``n`` images under ``root`` (skipped when a previous run left exactly these)."""
    import numpy as np
    from PIL import Image

    stamp = root / "made.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == {"n": n, "seed": seed}:
        return root
    rng = np.random.default_rng(seed)
    for i in range(n):
        label = i % 2
        folder = root / f"s{(i // 2) % SUBSETS}" / ("1_fake" if label else "0_real")
        folder.mkdir(parents=True, exist_ok=True)
        w, h = (int(x) for x in rng.integers(96, 321, 2))
        small = (rng.random((max(2, h // 6), max(2, w // 6), 3)) * 255).astype(np.uint8)
        img = Image.fromarray(small).resize((w, h), Image.Resampling.BILINEAR)
        if rng.random() < 0.5:
            kw: dict = {"quality": int(rng.integers(70, 96))}
            if rng.random() < 0.5:
                exif = Image.Exif()
                exif[0x010F], exif[0x0110] = "Canon", f"EOS {int(rng.integers(1, 90))}D"
                kw["exif"] = exif
            img.save(folder / f"{i:06d}.jpg", format="JPEG", **kw)
        else:
            img.save(folder / f"{i:06d}.png", format="PNG", compress_level=1)
    stamp.write_text(json.dumps({"n": n, "seed": seed}))
    return root


def child(root: str, n: int, pixels: bool) -> dict:
    """One measurement, in this (fresh) process."""
    from aigi.audit import audit
    from aigi.data.layouts import load_samples

    every = load_samples(root)
    samples = every[:: max(1, len(every) // n)][:n]  # spread over every subset and both classes
    import sklearn.ensemble  # noqa: F401  (imported before the clock starts, as in a warm process)
    import scipy.stats  # noqa: F401

    before = rss_mb()
    done_at: list[tuple[float, float]] = []

    def progress(done: int, total: int) -> None:
        if done == total:  # every file read: the time and the memory the read phase holds
            done_at.append((time.perf_counter(), rss_mb()))

    t0 = time.perf_counter()
    res = audit(samples, pixels=pixels, progress=progress)
    total = time.perf_counter() - t0
    read, after_read = done_at[-1][0] - t0, done_at[-1][1]
    peak = max_rss_mb()
    return {"files": len(res.paths), "errors": len(res.errors), "pixels": pixels, "read_s": round(read, 2),
            "files_per_s": round(len(samples) / read, 1), "total_s": round(total, 2),
            "rss_before_mb": before, "rss_after_read_mb": after_read, "read_growth_mb": round(after_read - before, 1),
            "peak_rss_mb": peak, "growth_mb": round(peak - before, 1),
            "verdicts": res.verdicts}


def measure(root: Path, n: int, pixels: bool) -> dict:
    cmd = [sys.executable, __file__, "--child", str(root), str(n), "1" if pixels else "0"]
    before = loadavg()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith(MARK))
    result = json.loads(line[len(MARK):])
    result.update(load_before=before, load_after=loadavg())
    print(json.dumps(result), flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--files", type=int, default=10_000)
    p.add_argument("--pixel-files", type=int, default=2_000)
    p.add_argument("--data", type=Path, default=Path("/tmp/aigi-audit-bench"))
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "audit.json")
    p.add_argument("--child", nargs=3, metavar=("ROOT", "N", "PIXELS"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        print(MARK + json.dumps(child(a.child[0], int(a.child[1]), a.child[2] == "1")), flush=True)
        return 0
    t0 = time.perf_counter()
    make_files(a.data, a.files)
    made = time.perf_counter() - t0
    runs = [measure(a.data, n, False) for n in sorted({1_000, a.files})]
    runs += [measure(a.data, n, True) for n in sorted({1_000, a.pixel_files})]
    import numpy
    import PIL
    import sklearn

    result = {
        "what": "aigi audit throughput and memory (benchmarks/bench_audit.py)",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "python": platform.python_version(),
                    "numpy": numpy.__version__, "pillow": PIL.__version__, "sklearn": sklearn.__version__},
        "dataset": {"files": a.files, "subsets": SUBSETS, "sides_px": [96, 320], "generation_s": round(made, 1)},
        "command": "python benchmarks/bench_audit.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "runs": runs,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
