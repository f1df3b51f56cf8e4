"""`detect` against `eval` on one detector folder, side by side in one run: same engine, same speed?

Builds a full-size Effort (CLIP ViT-L/14 tower, random weights, built as a full checkpoint is
loaded into: ``Effort.build_full_size()``), saves it as a detector folder, writes ``--images``
generated 256 × 256 PNGs (half in ``0_real``, half in ``1_fake``), then times the library calls
behind ``aigi eval`` and ``aigi detect`` on them, each from the folder (load + fold + score,
what a user waits for), alternating which goes first, ``--rounds`` times. Reports the median
wall time of each, ``detect_speed_vs_eval`` = eval time / detect time (goal >= 0.95: detect
runs the folded model like eval), the same ratio of the process's CPU time (less sensitive to
other jobs on a shared machine), the ratio per round, whether both gave identical P(fake)
for every image, and the load average before and after each timing. ``--unfolded`` adds a reference timing of
the old ``detect`` path (the same folder scored without ``for_inference``).

    python benchmarks/bench_detect_vs_eval.py [--images 32] [--rounds 2] [--device auto] [--dtype float32]
    python benchmarks/bench_detect_vs_eval.py --quick      # tiny Effort, 8 images: a smoke test (seconds)

Writes ``benchmarks/results/detect_vs_eval.json`` (or ``--output``).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _util as U  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def build_model(folder: Path, quick: bool) -> dict[str, Any]:
    """Save an Effort detector folder: full size (ViT-L/14) or, with ``quick``, the tiny test size."""
    import torch

    from aigi.detectors import create_detector, detector_class

    torch.manual_seed(0)
    cls = detector_class("effort")
    t0 = time.perf_counter()
    model = create_detector("effort", **cls.tiny_overrides) if quick else cls.build_full_size()
    built = time.perf_counter() - t0
    model.save_pretrained(folder)
    return {"size": "tiny" if quick else "full (ViT-L/14, random weights)",
            "parameters": sum(p.numel() for p in model.parameters()), "build_s": round(built, 2),
            "checkpoint_mb": round((folder / "model.safetensors").stat().st_size / 2**20, 1)}


def write_images(root: Path, n: int, size: int, seed: int = 0) -> Path:
    """``n`` PNGs in ``root/gen/{0_real,1_fake}``: noise, and 2x up-sampled noise."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        label = "0_real" if i % 2 == 0 else "1_fake"
        d = root / "gen" / label
        d.mkdir(parents=True, exist_ok=True)
        if label == "0_real":
            a = rng.integers(0, 256, (size, size, 3))
        else:
            a = np.repeat(np.repeat(rng.integers(0, 256, (size // 2, size // 2, 3)), 2, 0), 2, 1)
        Image.fromarray(a.astype(np.uint8)).save(d / f"{i:03d}.png")
    return root


def timed(fn: Callable[[], Any]) -> tuple[float, float, list[float], list[float], Any]:
    """Wall seconds, CPU seconds of this process (all threads), load before and after, the result."""
    before = U.loadavg()
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return seconds, cpu, before, U.loadavg(), out


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from aigi.detectors import load_detector
    from aigi.evaluate.runner import detect, evaluate
    from aigi.inference import Predictor, resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    device = None if args.device == "auto" else args.device
    with tempfile.TemporaryDirectory(prefix="aigi-bench-dve-") as tmp:
        tmp = Path(tmp)
        info = build_model(tmp / "model", args.quick)
        data = write_images(tmp / "data", args.images, 64 if args.quick else 256)
        common = dict(batch_size=args.batch_size, device=device, dtype=args.dtype)

        def run_eval() -> dict[str, float]:
            evaluate(tmp / "model", data, output=tmp / "ev", **common)
            with (tmp / "ev" / "scores.csv").open(newline="") as fh:
                return {r["path"]: float(r["score"]) for r in csv.DictReader(fh)}

        def run_detect() -> dict[str, float]:
            rows, errors = detect(tmp / "model", [data], **common)
            if errors:
                raise RuntimeError(f"detect skipped {len(errors)} image(s): {errors[:2]}")
            return {r["path"]: r["p_fake"] for r in rows}

        def run_unfolded() -> dict[str, float]:
            predictor = Predictor(load_detector(tmp / "model"), fold=False, **{**common, "device": args.device})
            rows, _ = detect(predictor, [data])
            return {r["path"]: r["p_fake"] for r in rows}

        timings: dict[str, list[dict[str, Any]]] = {"eval": [], "detect": []}
        if args.unfolded:
            timings["detect_unfolded"] = []
        scores: dict[str, dict[str, float]] = {}
        for r in range(args.rounds):
            order = ["eval", "detect"] if r % 2 == 0 else ["detect", "eval"]
            if args.unfolded:
                order.append("detect_unfolded")
            for name in order:
                fn = {"eval": run_eval, "detect": run_detect, "detect_unfolded": run_unfolded}[name]
                seconds, cpu, before, after, out = timed(fn)
                timings[name].append({"round": r, "seconds": round(seconds, 6), "cpu_seconds": round(cpu, 6),
                                      "loadavg_before": before, "loadavg_after": after})
                scores[name] = out
                print(f"round {r} {name}: {seconds:.2f} s wall, {cpu:.2f} s CPU (load {before[0]} -> {after[0]})",
                      flush=True)
    med = {k: statistics.median(t["seconds"] for t in v) for k, v in timings.items()}
    med_cpu = {k: statistics.median(t["cpu_seconds"] for t in v) for k, v in timings.items()}
    paired = [e["seconds"] / d["seconds"] for e, d in zip(timings["eval"], timings["detect"])]
    result = {
        "benchmark": "detect_vs_eval",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "quick": args.quick,
        "model": info,
        "images": args.images,
        "batch_size": args.batch_size,
        "device": str(resolve_device(args.device)),
        "dtype": args.dtype,
        "rounds": args.rounds,
        "median_seconds": {k: round(v, 6) for k, v in med.items()},
        "detect_speed_vs_eval": round(med["eval"] / med["detect"], 3),
        "goal": ">= 0.95",
        "median_cpu_seconds": {k: round(v, 6) for k, v in med_cpu.items()},
        "detect_speed_vs_eval_cpu": round(med_cpu["eval"] / med_cpu["detect"], 3),
        "per_round_speed_vs_eval": [round(x, 3) for x in paired],
        "identical_scores": scores["eval"] == scores["detect"],
        "timings": timings,
        "machine": U.machine_info(),
    }
    if args.unfolded:
        result["unfolded_speed_vs_folded_detect"] = round(med["detect"] / med["detect_unfolded"], 3)
        result["unfolded_speed_vs_folded_detect_cpu"] = round(med_cpu["detect"] / med_cpu["detect_unfolded"], 3)
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny Effort and 8 small images (a smoke test)")
    p.add_argument("--images", type=int, default=None, help="images to score (default 32; 8 with --quick)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--unfolded", action="store_true", help="also time detect without folding (the old path)")
    p.add_argument("--output", type=Path, default=RESULTS / "detect_vs_eval.json")
    args = p.parse_args(argv)
    if args.images is None:
        args.images = 8 if args.quick else 32
    result = run(args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"detect / eval speed: {result['detect_speed_vs_eval']} wall, {result['detect_speed_vs_eval_cpu']} CPU "
          f"(goal >= 0.95); identical scores: {result['identical_scores']}; wrote {args.output}")
    return result


if __name__ == "__main__":
    main()
