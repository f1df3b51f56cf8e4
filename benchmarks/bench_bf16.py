"""bfloat16 ViT-L/14 (UniVFD, random weights): where the time goes, and the fraction of the matmul limit.

    python benchmarks/bench_bf16.py [--batch 32] [--rounds 3] [--out benchmarks/results/bf16.json]

In one process, so both sides see the same machine:

1. ``torch.profiler`` on one call of each side (self CPU time per op, top ops and their share):
   *autocast* (``torch.autocast`` around the float32 model, the old path) and *copy*
   (``inference_forward(dtype="bfloat16")``: the low-precision copy under autocast);
2. ``--rounds`` rounds of: a bfloat16 matmul burst (the machine's limit *now*), one autocast
   call, one copy call (order alternated), so a change of load hits all three alike; the
   fraction of the limit is computed per round (FLOPs per image counted with
   ``FlopCounterMode``) and the best and median rounds are reported;
3. the largest logit change of each side against float32 on the same inputs.

Every round records the load average. On a shared machine read the best round as what the
code can do and the median as what it did.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _util as U  # noqa: E402


def profile_one(fn: Any, x: Any, top: int = 12) -> dict[str, Any]:
    import torch
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
        t = time.perf_counter()
        fn(x)
        wall = time.perf_counter() - t
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1
    return {"wall_s": round(wall, 3), "self_cpu_s_total": round(total / 1e6, 3),
            "top_ops": [{"op": e.key, "calls": e.count, "self_cpu_s": round(e.self_cpu_time_total / 1e6, 3),
                         "share": round(e.self_cpu_time_total / total, 3)} for e in events[:top]]}


def matmul_burst(n: int = 2048, seconds: float = 1.0) -> float:
    """bfloat16 n×n matmul GFLOP/s, best of the products in a ~``seconds`` burst."""
    import torch

    a = torch.randn(n, n, dtype=torch.bfloat16)
    b = torch.randn(n, n, dtype=torch.bfloat16)
    torch.mm(a, b)
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * n**3 / (time.perf_counter() - t) / 1e9)
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tiny", action="store_true", help="the tiny test model (harness check only)")
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "bf16.json")
    args = ap.parse_args(argv)
    import torch

    from aigi.detectors import create_detector, detector_class
    from aigi.inference.fast import inference_forward

    cls = detector_class("univfd")
    model = create_detector("univfd", **(cls.tiny_overrides if args.tiny else cls.full_size_overrides)).for_inference()
    size = int(model.config.preprocess.size)
    x = torch.randn(args.batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    copy_fwd = inference_forward(model, dtype="bfloat16")

    def autocast_fwd(v: Any) -> Any:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return model(v).float()

    sides = {"autocast": autocast_fwd, "copy": copy_fwd}
    res: dict[str, Any] = {"benchmark": "bf16", "model": "univfd" + (" (tiny)" if args.tiny else " (ViT-L/14)"),
                           "batch": args.batch, "machine": U.machine_info(),
                           "started": time.strftime("%Y-%m-%d %H:%M:%S"), "load_before": U.loadavg()}
    with torch.inference_mode():
        t = time.perf_counter()
        flops, _ = U.count_flops(lambda: model(x))
        ref = model(x)  # float32 reference (the counted call was the warm-up)
        res["float32_call_s"] = round((time.perf_counter() - t) / 2, 3)
        res["flops_per_image"] = flops // args.batch
        res["max_abs_logit_change_vs_float32"] = {k: float((fn(x) - ref).abs().max()) for k, fn in sides.items()}
        res["float32_logit_abs_max"] = float(ref.abs().max())
    if not args.no_profile:
        res["profile"] = {k: {**profile_one(fn, x), "load": U.loadavg()} for k, fn in sides.items()}
    rounds = []
    with torch.inference_mode():
        for r in range(args.rounds):
            rec: dict[str, Any] = {"load_before": U.loadavg(), "matmul_bf16_gflops": round(matmul_burst(), 1)}
            for k in (("autocast", "copy") if r % 2 == 0 else ("copy", "autocast")):
                t = time.perf_counter()
                sides[k](x)
                s = time.perf_counter() - t
                gf = res["flops_per_image"] * args.batch / s / 1e9
                rec[k] = {"seconds": round(s, 3), "images_per_s": round(args.batch / s, 3), "gflops": round(gf, 1),
                          "fraction_of_matmul": round(gf / rec["matmul_bf16_gflops"], 3)}
            rec["load_after"] = U.loadavg()
            rounds.append(rec)
            print(json.dumps(rec), flush=True)
    res["rounds"] = rounds
    for k in sides:
        fr = [r[k]["fraction_of_matmul"] for r in rounds]
        ips = [r[k]["images_per_s"] for r in rounds]
        res[k] = {"fraction_best": max(fr), "fraction_median": statistics.median(fr),
                  "images_per_s_best": max(ips), "images_per_s_median": statistics.median(ips)}
    res["speedup_copy_over_autocast_median"] = round(
        statistics.median(r["autocast"]["seconds"] / r["copy"]["seconds"] for r in rounds), 3)
    res.update(finished=time.strftime("%Y-%m-%d %H:%M:%S"), load_after=U.loadavg())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps({k: res[k] for k in ("autocast", "copy", "speedup_copy_over_autocast_median",
                                          "max_abs_logit_change_vs_float32")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
