"""A full-size Effort exported to ONNX: file size, export time, onnxruntime CPU throughput beside PyTorch.

Builds Effort at full size (CLIP ViT-L/14 tower, random weights, built as a full checkpoint is
loaded into: ``Effort.build_full_size()``), exports it with ``aigi.export.export_onnx`` (the
folded model, float32, checked against PyTorch before it is written), then times the folded
PyTorch model and the onnxruntime session on the same random batches, alternating which goes
first. Reports the file size, the export time, the largest logit difference, images/s of each
at every ``--batch`` size (median of ``--iters`` timed calls after one warm-up), the threads
each used, and the load average before and after every timing (the machine may be shared).
The ``.onnx`` file is deleted afterwards unless ``--keep``.

    python benchmarks/bench_onnx.py [--batch 1,8] [--iters 5] [--dtype float32]
    python benchmarks/bench_onnx.py --quick          # tiny Effort: a smoke test (seconds)

Writes ``benchmarks/results/onnx.json`` (or ``--output``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _util as U  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def run(batches: list[int], iters: int, quick: bool, dtype: str, keep: Path | None) -> dict[str, Any]:
    import onnxruntime as ort
    import torch

    from aigi.detectors import create_detector, detector_class
    from aigi.export import export_onnx

    torch.manual_seed(0)
    cls = detector_class("effort")
    t0 = time.perf_counter()
    model = create_detector("effort", **cls.tiny_overrides) if quick else cls.build_full_size()
    build_s = time.perf_counter() - t0
    model.for_inference()
    size = model.config.preprocess.size
    result: dict[str, Any] = {
        "model": "effort " + ("tiny" if quick else "full size (CLIP ViT-L/14, random weights)"),
        "parameters": sum(p.numel() for p in model.parameters()),
        "build_s": round(build_s, 2),
        "dtype": dtype,
        "machine": U.machine_info(),
        "onnxruntime": ort.__version__,
    }
    with tempfile.TemporaryDirectory(prefix="aigi-onnx-bench-") as tmp:
        path = (keep or Path(tmp)) / "effort.onnx"
        load0 = U.loadavg()
        t0 = time.perf_counter()
        res = export_onnx(model, path, dtype=dtype)  # type: ignore[arg-type]
        result["export"] = {"seconds": round(time.perf_counter() - t0, 1), "file_mb": round(res.size_bytes / 2**20, 1),
                            "max_abs_logit_diff": res.max_abs_logit_diff, "max_abs_prob_diff": res.max_abs_prob_diff,
                            "tolerance": list(res.tolerance), "opset": res.opset,
                            "external_data": res.external_data is not None,
                            "loadavg_before": load0, "loadavg_after": U.loadavg()}
        t0 = time.perf_counter()
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        result["onnxruntime_load_s"] = round(time.perf_counter() - t0, 2)
        name = session.get_inputs()[0].name
        result["threads"] = {"torch": torch.get_num_threads(),
                             "onnxruntime": "default (one per physical core)"}
        rows = []
        for b in batches:
            x = torch.randn(b, 3, size, size, generator=torch.Generator().manual_seed(b))
            arr = x.numpy()

            def torch_call() -> Any:
                with torch.inference_mode():
                    return model(x)

            def ort_call() -> Any:
                return session.run(None, {name: arr})[0]

            with torch.inference_mode():
                diff = float((torch.from_numpy(ort_call()) - model(x)).abs().max())
            row: dict[str, Any] = {"batch": b, "max_abs_logit_diff": diff, "loadavg_before": U.loadavg()}
            order = [("pytorch", torch_call), ("onnxruntime", ort_call)]
            times: dict[str, list[float]] = {"pytorch": [], "onnxruntime": []}
            for i in range(iters):  # alternate which runs first, so drift in machine load hits both
                for label, fn in (order if i % 2 == 0 else order[::-1]):
                    times[label] += U.time_calls(fn, warmup=1 if i == 0 else 0, iters=1)
            for label, ts in times.items():
                med = U.median(ts)
                row[label] = {"median_s": round(med, 4), "images_per_s": round(b / med, 2),
                              "all_s": [round(t, 4) for t in ts]}
            row["onnxruntime_vs_pytorch"] = round(row["pytorch"]["median_s"] / row["onnxruntime"]["median_s"], 3)
            row["loadavg_after"] = U.loadavg()
            rows.append(row)
            print(f"batch {b}: pytorch {row['pytorch']['images_per_s']} img/s, onnxruntime "
                  f"{row['onnxruntime']['images_per_s']} img/s (x{row['onnxruntime_vs_pytorch']}), "
                  f"max |Δlogit| {diff:.2e}", flush=True)
        result["throughput"] = rows
        del session
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", default="1,8", help="comma-separated batch sizes")
    p.add_argument("--iters", type=int, default=5, help="timed calls per batch size and runtime")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16"])
    p.add_argument("--quick", action="store_true", help="tiny Effort (a smoke test)")
    p.add_argument("--keep", type=Path, default=None, help="keep the .onnx in this folder")
    p.add_argument("--output", type=Path, default=None, help="JSON file (default benchmarks/results/onnx.json)")
    args = p.parse_args(argv)
    batches = [int(b) for b in args.batch.split(",") if b.strip()]
    if not batches or min(batches) < 1 or args.iters < 1:
        p.error("--batch needs positive sizes and --iters at least 1")
    result = run(batches, args.iters, args.quick, args.dtype, args.keep)
    out = args.output or RESULTS / ("onnx_quick.json" if args.quick else "onnx.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
