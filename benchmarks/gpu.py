"""Everything that matters on a GPU, in one command: speed and memory of ViT-L/14 and Effort.

    python benchmarks/gpu.py                       # on a CUDA machine: full sizes, a few minutes
    python benchmarks/gpu.py --device cpu --tiny   # the harness on tiny models (seconds; run by the tests)

Measures, and writes to ``benchmarks/results/gpu.json`` (or ``--out``):

* ``forward``: UniVFD (the plain CLIP ViT-L/14 tower + a linear head) and Effort folded
  (``for_inference()``), random weights, through ``inference_forward`` — the function every
  scoring path uses — at batch 1, 32 and 128 in float32, bfloat16 and float16 (the
  low-precision copy under autocast), and with ``torch.compile`` (inductor) at batch 32 in
  float32 and bfloat16: images/s (median of the timed calls, each synchronised), peak GPU
  memory of the call (``max_memory_allocated`` after a reset) and the largest logit change
  against float32 on the same inputs;
* ``eval``: ``aigi eval`` end to end in a subprocess (DataLoader with ``--workers``, PNG
  files, UniVFD saved at full size): images/s including start-up, and the steady rate from a
  small and a large run (marginal images/s), in float32 and bfloat16;
* ``train_memory``: one AdamW step (forward, backward, step) at ``--train-batch`` of Effort
  (rank-1 residuals + head trainable) against full fine-tuning of the same tower: peak GPU
  memory (CPU: peak RSS of a fresh process) and the step's time.

Every record carries the 1-minute load average before and after. A failing measurement
records its error and the rest goes on. ``--tiny`` swaps in the test-sized models and a few
images so the whole script runs in seconds on a CPU (``--device cpu``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _util as U  # noqa: E402

MODELS = ("univfd", "effort")
DTYPES = ("float32", "bfloat16", "float16")
MARK = "@@AIGI-GPU-BENCH@@ "


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mb(device: Any) -> float | None:
    import torch

    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return U.max_rss_mb()  # CPU: the process's peak RSS so far (not per call)


def build(name: str, tiny: bool) -> Any:
    from aigi.detectors import create_detector, detector_class

    cls = detector_class(name)
    return create_detector(name, **(cls.tiny_overrides if tiny else cls.full_size_overrides)).for_inference()


def timed(fn: Callable[[], Any], device: Any, warmup: int, iters: int) -> list[float]:
    for _ in range(warmup):
        fn()
    _sync(device)
    out = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        _sync(device)
        out.append(time.perf_counter() - t)
    return out


def section_forward(args: argparse.Namespace, device: Any, log: Callable[[str], None]) -> dict[str, Any]:
    import torch

    from aigi.inference.fast import inference_forward

    res: dict[str, Any] = {}
    for name in args.models:
        model = build(name, args.tiny)
        size = int(model.config.preprocess.size)
        recs: list[dict[str, Any]] = []
        refs: dict[int, Any] = {}
        cases = [(b, dt, False) for b in args.batches for dt in args.dtypes]
        cases += [(args.compile_batch, dt, True) for dt in ("float32", "bfloat16") if not args.no_compile]
        for batch, dtype, comp in cases:
            rec: dict[str, Any] = {"batch": batch, "dtype": dtype, "compile": comp, "load_before": U.loadavg()}
            try:
                x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
                if comp:
                    torch._dynamo.reset()
                fwd = inference_forward(model, device=device, dtype=dtype,
                                        compile=args.compile_backend if comp else False)
                with torch.inference_mode():
                    t = time.perf_counter()
                    y = fwd(x)  # first call: compilation, kernel selection
                    _sync(device)
                    rec["first_call_s"] = round(time.perf_counter() - t, 3)
                    _reset_peak(device)
                    times = timed(lambda: fwd(x), device, warmup=args.warmup, iters=args.iters)
                    rec["peak_memory_mb"] = _peak_mb(device)
                    y = fwd(x).float()
                if dtype == "float32" and not comp:
                    refs[batch] = y
                elif batch in refs:
                    rec["max_abs_logit_change_vs_float32"] = float((y - refs[batch]).abs().max())
                rec.update(seconds=[round(s, 5) for s in times], images_per_s=round(batch / statistics.median(times), 2))
                del fwd
            except Exception as err:  # keep going: one failure must not lose the others
                rec["error"] = f"{type(err).__name__}: {err}"
                rec["traceback_tail"] = traceback.format_exc()[-1500:]
            rec["load_after"] = U.loadavg()
            recs.append(rec)
            log(f"forward {name} batch {batch} {dtype}{' compiled' if comp else ''}: "
                f"{rec.get('images_per_s', rec.get('error'))} img/s, peak {rec.get('peak_memory_mb')} MiB")
        res[name] = {"parameters": sum(p.numel() for p in model.parameters()), "input_size": size, "runs": recs}
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return res


def section_eval(args: argparse.Namespace, device: Any, log: Callable[[str], None]) -> dict[str, Any]:
    import aigi
    from aigi.detectors import detector_class

    small, large = (8, 24) if args.tiny else (256, 2048)
    out: dict[str, Any] = {"model": "univfd" + (" (tiny)" if args.tiny else " (ViT-L/14, random weights)"),
                           "image": "256x256 PNG", "workers": args.workers, "batch_size": args.eval_batch,
                           "small": small, "large": large, "runs": []}
    with tempfile.TemporaryDirectory(prefix="aigi-gpu-eval-") as tmp:
        tmp = Path(tmp)
        model_dir = tmp / "model"
        cls = detector_class("univfd")
        aigi.create_detector("univfd", **(cls.tiny_overrides if args.tiny else cls.full_size_overrides)) \
            .save_pretrained(model_dir)
        blobs = [U.encoded(U.photo_like(256, 256, seed), "PNG") for seed in range(32)]
        U.write_labelled_tree(tmp / "large", blobs, large)
        U.link_tree(tmp / "large", tmp / "small", small)
        for dtype in ("float32", "bfloat16"):
            walls = {}
            for n in (small, large):
                cmd = [sys.executable, "-m", "aigi.cli", "eval", str(tmp / ("small" if n == small else "large")),
                       "--model", str(model_dir), "--output", str(tmp / f"out-{dtype}-{n}"),
                       "--workers", str(args.workers), "--batch-size", str(args.eval_batch),
                       "--device", str(device), "--dtype", dtype]
                res = U.run_measured(cmd, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=1800)
                rec = {k: v for k, v in res.items() if k not in ("stdout", "stderr")}
                rec.update(dtype=dtype, images=n, images_per_s_with_startup=round(n / res["wall_s"], 1))
                if res["returncode"] != 0:
                    rec["stderr_tail"] = res["stderr"][-2000:]
                else:
                    walls[n] = res["wall_s"]
                out["runs"].append(rec)
                log(f"eval {dtype} {n} images: {res['wall_s']:.1f} s (exit {res['returncode']})")
            if len(walls) == 2 and walls[large] > walls[small]:
                out[f"marginal_images_per_s_{dtype}"] = round((large - small) / (walls[large] - walls[small]), 1)
    return out


def train_child(kind: str, tiny: bool, batch: int, device_name: str) -> dict[str, Any]:
    """One AdamW step of Effort or of full fine-tuning, in this (fresh) process."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from aigi.backbones.clip import ClipBackboneConfig, load_clip_vision
    from aigi.detectors import create_detector, detector_class

    device = torch.device(device_name)
    torch.manual_seed(0)
    source = "tiny" if tiny else "clip-vit-large-patch14-random"
    if kind == "effort":
        cls = detector_class("effort")
        model = create_detector("effort", **(cls.tiny_overrides if tiny else cls.full_size_overrides)).to(device).train()
        params = list(model.trainable_parameters())

        def loss_fn(x: Any, y: Any) -> Any:
            return model.training_loss({"pixels": x, "label": y})["loss"]
    else:
        tower = load_clip_vision(ClipBackboneConfig(source=source), pretrained=False).vision_model.to(device).train()
        head = nn.Linear(tower.config.hidden_size, 1).to(device)
        params = list(tower.parameters()) + list(head.parameters())

        def loss_fn(x: Any, y: Any) -> Any:
            return F.binary_cross_entropy_with_logits(head(tower(pixel_values=x).pooler_output).squeeze(-1), y)
    size = 32 if tiny else 224
    opt = torch.optim.AdamW(params, lr=1e-5)
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.tensor([0.0, 1.0] * (batch // 2) + [0.0] * (batch % 2), device=device)
    _reset_peak(device)
    before = round(torch.cuda.memory_allocated(device) / 2**20, 1) if device.type == "cuda" else U.current_rss_mb()
    t = time.perf_counter()
    loss = loss_fn(x, y)
    loss.backward()
    opt.step()
    _sync(device)
    return {"kind": kind, "batch": batch, "trainable_parameters": sum(p.numel() for p in params),
            "memory_before_step_mb": before, "peak_memory_mb": _peak_mb(device),
            "peak_is": "max_memory_allocated during the step" if device.type == "cuda" else "process peak RSS",
            "step_s": round(time.perf_counter() - t, 3), "loss": float(loss.detach())}


def section_train_memory(args: argparse.Namespace, device: Any, log: Callable[[str], None]) -> dict[str, Any]:
    out: dict[str, Any] = {"batch": args.train_batch}
    for kind in ("effort", "full"):
        cmd = [sys.executable, str(Path(__file__).resolve()), "--train-child", kind, "--device", str(device),
               "--train-batch", str(args.train_batch)] + (["--tiny"] if args.tiny else [])
        load = U.loadavg()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        line = next((s for s in reversed(proc.stdout.splitlines()) if s.startswith(MARK)), None)
        rec = json.loads(line[len(MARK):]) if line else {"error": f"exit {proc.returncode}",
                                                          "stderr_tail": proc.stderr[-2000:]}
        rec.update(load_before=load, load_after=U.loadavg())
        out[kind] = rec
        log(f"train step {kind}: peak {rec.get('peak_memory_mb', rec.get('error'))} MiB")
    e, f = out["effort"], out["full"]
    if "peak_memory_mb" in e and "peak_memory_mb" in f and f["peak_memory_mb"]:
        out["peak_ratio_effort_over_full"] = round(e["peak_memory_mb"] / f["peak_memory_mb"], 3)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default=None, help="cuda, cuda:N or cpu (default: cuda when available)")
    p.add_argument("--tiny", action="store_true", help="test-sized models and few images (a harness check)")
    p.add_argument("--batches", default=None, help="forward batch sizes (default 1,32,128; tiny: 1,4)")
    p.add_argument("--compile-batch", type=int, default=None, help="batch of the torch.compile runs (default 32; tiny: 4)")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile runs")
    p.add_argument("--compile-backend", default="inductor",
                   help="torch.compile backend (inductor; 'eager' checks the tracing without code generation)")
    p.add_argument("--models", default=",".join(MODELS), help="forward section: detectors (default univfd,effort)")
    p.add_argument("--dtypes", default=",".join(DTYPES), help="forward section: dtypes (default float32,bfloat16,float16)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--workers", type=int, default=8, help="DataLoader workers of the aigi eval runs")
    p.add_argument("--eval-batch", type=int, default=64)
    p.add_argument("--train-batch", type=int, default=32)
    p.add_argument("--only", default="forward,eval,train_memory", help="sections: forward, eval, train_memory")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "gpu.json")
    p.add_argument("--train-child", choices=["effort", "full"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is visible to torch")
    if args.train_child:
        print(MARK + json.dumps(train_child(args.train_child, args.tiny, args.train_batch, str(device))), flush=True)
        return 0
    args.batches = [int(b) for b in (args.batches or ("1,4" if args.tiny else "1,32,128")).split(",")]
    args.compile_batch = args.compile_batch or (4 if args.tiny else 32)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    args.dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    if "float32" not in args.dtypes or set(args.dtypes) - set(DTYPES):
        raise SystemExit(f"--dtypes: a subset of {', '.join(DTYPES)} that includes float32 (the reference)")
    if args.tiny:
        args.warmup, args.iters, args.workers = min(args.warmup, 1), min(args.iters, 2), min(args.workers, 1)
        args.eval_batch, args.train_batch = min(args.eval_batch, 8), min(args.train_batch, 2)
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(sections) - {"forward", "eval", "train_memory"}
    if unknown:
        raise SystemExit(f"--only: unknown section(s) {', '.join(sorted(unknown))}; use forward, eval, train_memory")
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:6.0f} s] {msg}", file=sys.stderr, flush=True)

    res: dict[str, Any] = {"benchmark": "gpu", "tiny": args.tiny, "device": str(device),
                           "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                           "cuda": torch.version.cuda, "machine": U.machine_info(),
                           "started": time.strftime("%Y-%m-%d %H:%M:%S"), "load_before": U.loadavg(),
                           "settings": {"batches": args.batches, "compile_batch": None if args.no_compile else args.compile_batch,
                                        "compile_backend": args.compile_backend,
                                        "warmup": args.warmup, "iters": args.iters}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for name, fn in (("forward", section_forward), ("eval", section_eval), ("train_memory", section_train_memory)):
        if name not in sections:
            continue
        s = time.perf_counter()
        try:
            res[name] = fn(args, device, log)
        except Exception as err:
            res[name] = {"error": f"{type(err).__name__}: {err}", "traceback_tail": traceback.format_exc()[-2000:]}
        res.setdefault("section_wall_s", {})[name] = round(time.perf_counter() - s, 1)
        args.out.write_text(json.dumps(res, indent=1) + "\n")  # after each section: a crash keeps the rest
    res.update(finished=time.strftime("%Y-%m-%d %H:%M:%S"), load_after=U.loadavg(),
               wall_s=round(time.perf_counter() - t0, 1))
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
