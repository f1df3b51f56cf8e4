"""Effort on the full CLIP ViT-L/14 architecture (random weights), on this CPU: speed and memory.

Measures, with ``torch.inference_mode`` and 2 threads:

* the time to build Effort: the ViT-L tower (+ its weight hash) and the 96 residual triplets;
* images per second at batch 1 and 16 of the plain backbone (tower ``pooler_output`` + the same
  ``Linear(1024, 1)`` head), of Effort unfolded and of Effort folded (``for_inference``), and the
  folded / plain ratio (goal ≥ 0.98: a folded Effort *is* a plain tower). The three models are
  timed interleaved, repetition by repetition, so a change in the machine's load hits all three;
  the median of the repetitions is reported;
* the peak memory of one training step (AdamW, batch 4, forward + backward + step) of Effort
  against fine-tuning the whole tower, each in a fresh subprocess started before this process
  builds anything: ``getrusage`` max RSS after resetting the peak counter just before the step
  (so the model's construction does not count), and its growth over the RSS before the step.

Writes ``benchmarks/results/effort.json``. Not a test: it takes 10-20 minutes on a 2-core CPU.

    python benchmarks/bench_effort.py [--reps 3] [--out benchmarks/results/effort.json]
"""

from __future__ import annotations

import argparse
import copy
import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import current_rss_mb as rss_mb  # noqa: E402
from _util import loadavg, max_rss_mb  # noqa: E402

PRESET = "clip-vit-large-patch14-random"
THREADS = 2
MARK = "@@EFFORT-BENCH@@ "


def hwm_mb() -> float | None:
    """The kernel's peak RSS of this address space (VmHWM), which ``reset_peak`` can reset."""
    try:
        line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmHWM"))
    except (OSError, StopIteration):
        return None
    return round(int(line.split()[1]) / 1024, 1)


def reset_peak() -> bool:
    """Reset the peak-RSS counter (Linux ``clear_refs`` 5), so the next peak is the step's own."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "logical_cores": os.cpu_count(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "python": platform.python_version(), "torch": torch.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads()}


def effort_config(**kw):
    from aigi.detectors.effort import Effort, EffortConfig

    return EffortConfig.from_overrides({**Effort.full_size_overrides, **kw})


# ----------------------------------------------------------------------------------- build
def build_effort() -> tuple[Any, dict[str, Any]]:
    """Build Effort on ViT-L/14 and time its parts (the SVDs are timed inside the real code path)."""
    import aigi.layers.svd_residual as svdmod
    from aigi.detectors.effort import Effort

    svd_times: list[float] = []
    real_svd = svdmod.residual_triplets

    def timed_svd(w, k, **kw):
        t = time.perf_counter()
        out = real_svd(w, k, **kw)
        svd_times.append(time.perf_counter() - t)
        return out

    svdmod.residual_triplets = timed_svd
    load = loadavg()
    t = time.perf_counter()
    try:
        model = Effort(effort_config())
    finally:
        svdmod.residual_triplets = real_svd
    total = time.perf_counter() - t
    return model, {
        "total_s": round(total, 2),
        "svd_count": len(svd_times),
        "svd_sum_over_threads_s": round(sum(svd_times), 2),
        "svd_median_s": round(statistics.median(svd_times), 3),
        "note": "residual triplets in float64 (smallest triplets only, full SVD as fallback), one LAPACK "
                "thread per matrix, matrices on parallel threads (so the per-matrix times overlap); the "
                "rest is the tower's random init, its sha256 and module creation",
        "load_before": load, "load_after": loadavg(),
    }


# ------------------------------------------------------------------------------ throughput
def throughput(models: dict[str, Callable[[torch.Tensor], torch.Tensor]], batch: int, reps: int) -> dict[str, Any]:
    x = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    times: dict[str, list[float]] = {k: [] for k in models}
    load = loadavg()
    with torch.inference_mode():
        for fn in models.values():  # warm-up
            fn(x)
        for _ in range(reps):
            for name, fn in models.items():
                t = time.perf_counter()
                fn(x)
                times[name].append(time.perf_counter() - t)
    out: dict[str, Any] = {"batch": batch, "reps": reps, "load_before": load, "load_after": loadavg()}
    for name, ts in times.items():
        out[name] = {"images_per_s_best": round(batch / min(ts), 3),
                     "images_per_s_median": round(batch / statistics.median(ts), 3),
                     "seconds_all": [round(v, 3) for v in ts]}
    for kind in ("best", "median"):
        plain = out["plain"][f"images_per_s_{kind}"]
        out[f"folded_over_plain_{kind}"] = round(out["effort_folded"][f"images_per_s_{kind}"] / plain, 4)
        out[f"unfolded_over_plain_{kind}"] = round(out["effort_unfolded"][f"images_per_s_{kind}"] / plain, 4)
    return out


# ---------------------------------------------------------------------------------- memory
def memory_child(kind: str, batch: int) -> dict[str, Any]:
    """One AdamW training step in this (fresh) process; peak RSS and its growth during the step."""
    import torch.nn.functional as F
    from torch import nn

    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    if kind == "effort":
        from aigi.detectors.effort import Effort

        # decompose=False: same modules, shapes and trainable set; memory does not depend on the SVD values
        model = Effort(effort_config(), decompose=False).train()
        params = model.trainable_parameters()

        def loss_fn(x, y):
            return model.training_loss({"pixels": x, "label": y})["loss"]
    else:
        from aigi.backbones.clip import ClipBackboneConfig, load_clip_vision

        tower = load_clip_vision(ClipBackboneConfig(source=PRESET), pretrained=False).vision_model.train()
        head = nn.Linear(1024, 1)
        params = list(tower.parameters()) + list(head.parameters())

        def loss_fn(x, y):
            return F.binary_cross_entropy_with_logits(head(tower(pixel_values=x).pooler_output).squeeze(-1), y)
    opt = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.0)
    x = torch.randn(batch, 3, 224, 224)
    y = torch.tensor([0.0, 1.0] * (batch // 2))
    build_peak = max_rss_mb()
    before = rss_mb()
    reset = reset_peak()
    t = time.perf_counter()
    loss = loss_fn(x, y)
    loss.backward()
    opt.step()
    step_s = time.perf_counter() - t
    peak, hwm = max_rss_mb(), hwm_mb()
    return {"kind": kind, "batch": batch, "trainable_parameters": sum(p.numel() for p in params),
            "build_peak_rss_mb": build_peak, "rss_before_step_mb": before, "peak_counter_reset": reset,
            "step_peak_rss_mb": peak, "step_peak_vmhwm_mb": hwm,
            "step_growth_mb": round(peak - before, 1), "step_seconds": round(step_s, 2)}


def run_memory(kind: str, batch: int) -> dict[str, Any]:
    load = loadavg()
    proc = subprocess.run([sys.executable, __file__, "--memory-child", kind, "--batch", str(batch)],
                          capture_output=True, text=True, timeout=1800)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(MARK):
            res = json.loads(line[len(MARK):])
            res.update(load_before=load, load_after=loadavg())
            return res
    raise RuntimeError(f"memory child {kind} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")


# -------------------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "effort.json")
    ap.add_argument("--reps", type=int, nargs="+", default=[9, 4],
                    help="timed repetitions per model, one number per batch size")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--memory-batch", type=int, default=4)
    ap.add_argument("--memory-child", choices=["effort", "full"], help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        print(MARK + json.dumps(memory_child(args.memory_child, args.batch)), flush=True)
        return

    torch.set_num_threads(THREADS)
    from aigi.backbones.clip import ClipBackboneConfig, load_clip_vision

    started = _dt.datetime.now(_dt.timezone.utc)
    result: dict[str, Any] = {
        "benchmark": "effort", "date_utc": started.isoformat(timespec="seconds"), "machine": machine(),
        "settings": {"architecture": PRESET, "threads": THREADS, "inference_mode": True, "reps": args.reps,
                     "batches": args.batches, "input": "random 224x224", "memory_batch": args.memory_batch,
                     "optimizer": "AdamW (one step: forward + backward + step)"},
        "note": "shared CPU: other engineers' jobs ran at the same time; see load_before/load_after "
                "(1/5/15-min load averages) next to each number. The three models are timed "
                "interleaved; 'best' (fastest repetition, least disturbed) and 'median' are both "
                "given, the ratios are more trustworthy than the absolute rates.",
    }
    # Memory first, while this parent process is small: a child's max RSS starts from its
    # parent's RSS at fork time (Linux keeps it across exec), so a parent holding three ViT-Ls
    # would hide the children's peaks. Each child also resets its own peak counter before the step.
    result["memory_train_step"] = {}
    for kind in ("effort", "full"):
        print(f"memory of one training step: {kind} …", flush=True)
        result["memory_train_step"][kind] = run_memory(kind, args.memory_batch)
        print(json.dumps(result["memory_train_step"][kind]), flush=True)
    e, f = result["memory_train_step"]["effort"], result["memory_train_step"]["full"]
    result["memory_train_step"]["peak_ratio_effort_over_full"] = round(e["step_peak_rss_mb"] / f["step_peak_rss_mb"], 3)
    result["memory_train_step"]["step_growth_ratio_effort_over_full"] = round(e["step_growth_mb"] / f["step_growth_mb"], 3)

    print("building Effort on ViT-L/14 (96 SVDs) …", flush=True)
    effort, result["build"] = build_effort()
    effort.eval()
    print(json.dumps(result["build"]), flush=True)

    plain_tower = load_clip_vision(ClipBackboneConfig(source=PRESET), pretrained=False).eval()
    folded = copy.deepcopy(effort).for_inference()
    head = effort.head

    def plain(x):
        return head(plain_tower.vision_model(pixel_values=x).pooler_output).squeeze(-1)

    models = {"plain": plain, "effort_unfolded": effort, "effort_folded": folded}
    with torch.inference_mode():
        x = torch.randn(2, 3, 224, 224)
        diff = (effort(x) - folded(x)).abs().max().item()
    result["folded_vs_unfolded_max_abs_logit_diff"] = diff
    result["throughput"] = {}
    reps = args.reps + [args.reps[-1]] * (len(args.batches) - len(args.reps))
    for b, r in zip(args.batches, reps):
        print(f"throughput at batch {b} …", flush=True)
        result["throughput"][f"batch_{b}"] = throughput(models, b, r)
        print(json.dumps(result["throughput"][f"batch_{b}"]), flush=True)
    result["wall_minutes"] = round((_dt.datetime.now(_dt.timezone.utc) - started).total_seconds() / 60, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}", flush=True)


if __name__ == "__main__":
    main()
