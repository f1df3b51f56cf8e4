"""Speed and memory of aigi, measured against the machine's own matmul limit.

Usage::

    python benchmarks/run.py [--quick] [--only NAME,...] [--out benchmarks/results/perf.json]

Writes the JSON file and a Markdown table beside it (same name, ``.md``). Sections:

* ``machine``  — CPU, threads, and the dense matmul rate (GFLOP/s, float32 and bfloat16);
* ``models``   — every registered detector at full size (``full_size_overrides``, random
  weights), one fresh subprocess each: build time, FLOPs per image, images/s at batch 1
  and 32 (float32, bfloat16 autocast; CNNs also without channels-last), peak RSS;
* Effort's model run also times it folded against UniVFD (the plain CLIP ViT-L/14 tower
  + a linear head), interleaved in one process so load changes hit both alike;
* ``decode``   — decode + preprocess images/s (512 JPEG, 1024 PNG, 1024 JPEG with and
  without draft decoding) to a 224 input, centre-crop and resize paths, 0/1/2 workers;
* ``e2e``      — ``aigi eval`` on generated images with a tiny model (data path and
  overhead), and the peak memory over 1,000 vs 10,000 images;
* ``compile``  — opt-in (``--only compile``, minutes of code generation): eager vs
  ``torch.compile`` for NPR, CNNSpot and UniVFD.

``--only`` takes section names and/or detector names (a detector name runs the
``models`` section for it); the results are merged into an existing ``--out`` file.
``--quick`` builds tiny models and uses few images: a smoke test of the harness, not a
measurement. Goals (see docs/performance.md) are computed from whatever is in the file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _util as U  # noqa: E402

SECTIONS = ("machine", "models", "decode", "e2e", "compile")
#: sections run when --only is not given (``compile`` takes minutes of code generation: opt-in)
DEFAULT_SECTIONS = ("machine", "models", "decode", "e2e")
#: detectors and batch sizes of the opt-in ``compile`` section
COMPILE_CASES = (("npr", 32), ("cnnspot", 32), ("univfd", 8))
#: detectors whose batch-32 bfloat16 speed is always measured (the goals use them)
REFERENCE = ("univfd", "effort", "cnnspot", "npr")
#: a detector outside REFERENCE whose float32 batch-32 warm-up call takes longer than this
#: gets 1 timed call instead of 2 and no batch-32 bfloat16 run (keeps the full run short)
SLOW_CALL_S = 8.0
CHILD_TIMEOUT_S = 900


# =========================================================================== children


def child_model(spec: dict[str, Any]) -> dict[str, Any]:
    """One detector in a fresh process: build, FLOPs, timed forwards, peak RSS after each stage."""
    import torch

    from aigi.detectors import create_detector, detector_class
    from aigi.detectors.clip_base import ClipDetector
    from aigi.inference.fast import inference_forward, is_convolutional

    name, overrides = spec["name"], spec["overrides"]
    out: dict[str, Any] = {"name": name, "overrides": overrides, "torch_threads": torch.get_num_threads(),
                           "rss_after_imports_mb": U.current_rss_mb()}
    t = time.perf_counter()
    model = create_detector(name, **overrides).for_inference()
    out["build_s"] = round(time.perf_counter() - t, 2)
    out["parameters"] = sum(p.numel() for p in model.parameters())
    out["clip"] = issubclass(detector_class(name), ClipDetector)
    out["convolutional"] = is_convolutional(model)
    out["max_rss_after_build_mb"] = U.max_rss_mb()
    size = int(model.config.preprocess.size)
    out["input_size"] = size
    gen = torch.Generator().manual_seed(0)
    inputs = {b: torch.randn(b, 3, size, size, generator=gen) for b in spec["batches"]}
    big = max(spec["batches"])
    runs: list[dict[str, Any]] = []
    outputs: dict[tuple[int, str], Any] = {}

    def run(batch: int, dtype: str, channels_last: bool | None, warmup: int, iters: int,
            count: bool = False) -> dict[str, Any]:
        fwd = inference_forward(model, dtype=dtype, channels_last=channels_last)
        x = inputs[batch]
        rec: dict[str, Any] = {"batch": batch, "dtype": dtype,
                               "channels_last": out["convolutional"] if channels_last is None else channels_last,
                               "warmup": warmup, "iters": iters, "load_before": U.loadavg()}
        last: dict[str, Any] = {}

        def call() -> None:
            last["logits"] = fwd(x)

        with torch.inference_mode():
            if count:  # the counted forward is the first warm-up call
                t = time.perf_counter()
                flops, by_op = U.count_flops(call)
                rec["counted_warmup_s"] = round(time.perf_counter() - t, 3)
                out["flops_per_image"] = flops // batch
                out["flops_by_op_per_image"] = {k: v // batch for k, v in by_op.items()}
                warmup -= 1
                if name not in REFERENCE and rec["counted_warmup_s"] > SLOW_CALL_S:
                    iters = rec["iters"] = 1
            times = U.time_calls(call, warmup=warmup, iters=iters)
        outputs[(batch, dtype)] = last["logits"]
        if dtype != "float32" and (batch, "float32") in outputs:  # same inputs, float32 first
            rec["max_abs_logit_change_vs_float32"] = float((last["logits"] - outputs[(batch, "float32")]).abs().max())
        rec["load_after"] = U.loadavg()
        rec["seconds"] = [round(s, 4) for s in times]
        rec["images_per_s"] = round(batch / U.median(times), 3)
        rec["max_rss_mb"] = U.max_rss_mb()
        runs.append(rec)
        return rec

    w, it1, it32 = spec["warmup"], spec["iters_small"], spec["iters_big"]
    run(1, "float32", None, w, it1)
    run(1, "bfloat16", None, w, it1)
    fp32 = run(big, "float32", None, max(w, 1), it32, count=True)
    if spec.get("bf16_ab"):  # the bfloat16 "before" (autocast alone) against "after", alternated
        runs.append(bfloat16_ab(model, inputs[big], outputs[(big, "float32")], spec["bf16_ab"]))
        out["bfloat16_copy_speedup"] = runs[-1]["bfloat16_copy_speedup"]
    if out["convolutional"]:  # the channels-last "before" number, timed in alternation with "after"
        runs.append(channels_last_ab(model, inputs[big], it32))
        out["channels_last_speedup"] = runs[-1]["channels_last_speedup"]
    per_call = U.median(fp32["seconds"])
    if name in REFERENCE or per_call <= SLOW_CALL_S or spec.get("quick"):
        run(big, "bfloat16", None, w, it32)
    else:
        out["bf16_big_batch_skipped"] = (f"a float32 batch-{big} call takes {per_call:.1f} s; bfloat16 at "
                                         f"batch {big} is measured only for {', '.join(REFERENCE)} and models "
                                         f"under {SLOW_CALL_S:.0f} s per call, to keep the run short")
    out["runs"] = runs
    out["max_rss_mb"] = U.max_rss_mb()
    if spec.get("pair_with"):  # after every memory reading: the partner's build is not counted
        try:
            out["pair"] = paired_timing(model, name, spec["pair_with"], spec)
        except Exception as err:  # a broken partner must not lose this detector's numbers
            out["pair"] = {"error": f"{type(err).__name__}: {err}"}
    return out


def channels_last_ab(model: Any, x: Any, rounds: int) -> dict[str, Any]:
    """A contiguous (NCHW) copy of a CNN against the channels-last original, calls alternated.

    Returns the contiguous run's record, with both sides' call times and the speed-up.
    """
    import copy

    import torch

    from aigi.inference.fast import inference_forward

    nchw = copy.deepcopy(model)
    f_nchw = inference_forward(nchw, channels_last=False)
    f_nhwc = inference_forward(model, channels_last=True)
    times: dict[str, list[float]] = {"nchw": [], "nhwc": []}
    rec: dict[str, Any] = {"batch": int(x.shape[0]), "dtype": "float32", "channels_last": False,
                           "warmup": 1, "iters": 2 * rounds, "load_before": U.loadavg()}
    with torch.inference_mode():
        f_nchw(x)  # warm-up (the channels-last model is warm from its own run)
        for r in range(2 * rounds):
            for key, fn in ((("nchw", f_nchw), ("nhwc", f_nhwc)) if r % 2 == 0 else
                            (("nhwc", f_nhwc), ("nchw", f_nchw))):
                t = time.perf_counter()
                fn(x)
                times[key].append(time.perf_counter() - t)
    del nchw
    rec["load_after"] = U.loadavg()
    rec["seconds"] = [round(v, 4) for v in times["nchw"]]
    rec["channels_last_seconds_alternated"] = [round(v, 4) for v in times["nhwc"]]
    rec["images_per_s"] = round(rec["batch"] / U.median(times["nchw"]), 3)
    rec["channels_last_speedup"] = round(U.median(times["nchw"]) / U.median(times["nhwc"]), 3)
    rec["max_rss_mb"] = U.max_rss_mb()
    return rec


def bfloat16_ab(model: Any, x: Any, ref: Any, rounds: int) -> dict[str, Any]:
    """bfloat16 autocast on the float32 model (the "before") against ``inference_forward``'s
    low-precision copy, calls alternated; both sides' logit change against float32 (``ref``).

    Returns the autocast-only run's record with the copy's call times and the speed-up.
    """
    import torch

    from aigi.inference.fast import inference_forward

    after = inference_forward(model, dtype="bfloat16")

    def before(v: Any) -> Any:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return model(v).float()

    times: dict[str, list[float]] = {"autocast": [], "copy": []}
    rec: dict[str, Any] = {"batch": int(x.shape[0]), "dtype": "bfloat16", "variant": "autocast only (before)",
                           "warmup": 1, "iters": rounds, "load_before": U.loadavg()}
    with torch.inference_mode():
        change = {"autocast": float((before(x) - ref).abs().max()), "copy": float((after(x) - ref).abs().max())}
        for r in range(rounds):
            for key, fn in ((("autocast", before), ("copy", after)) if r % 2 == 0 else
                            (("copy", after), ("autocast", before))):
                t = time.perf_counter()
                fn(x)
                times[key].append(time.perf_counter() - t)
    rec["load_after"] = U.loadavg()
    rec["seconds"] = [round(v, 4) for v in times["autocast"]]
    rec["copy_seconds_alternated"] = [round(v, 4) for v in times["copy"]]
    rec["images_per_s"] = round(rec["batch"] / U.median(times["autocast"]), 3)
    rec["copy_images_per_s"] = round(rec["batch"] / U.median(times["copy"]), 3)
    rec["copy_images_per_s_best"] = round(rec["batch"] / min(times["copy"]), 3)
    rec["autocast_images_per_s_best"] = round(rec["batch"] / min(times["autocast"]), 3)
    rec["bfloat16_copy_speedup"] = round(U.median(times["autocast"]) / U.median(times["copy"]), 3)
    rec["max_abs_logit_change_vs_float32"] = change["autocast"]
    rec["copy_max_abs_logit_change_vs_float32"] = change["copy"]
    rec["max_rss_mb"] = U.max_rss_mb()
    return rec


def paired_timing(first: Any, name_a: str, name_b: str, spec: dict[str, Any]) -> dict[str, Any]:
    """``first`` (detector ``name_a``, built) against a fresh ``name_b``, timed in alternation.

    Alternating calls (A B, B A, ...) at one batch size make a change of the machine's load
    hit both alike, which separate measurements minutes apart cannot promise.
    """
    import torch

    from aigi.detectors import create_detector, detector_class
    from aigi.inference.fast import inference_forward

    cls = detector_class(name_b)
    t = time.perf_counter()
    other = create_detector(name_b, **(cls.tiny_overrides if spec.get("quick") else cls.full_size_overrides))
    other = other.for_inference()
    build_b = round(time.perf_counter() - t, 2)
    size = int(first.config.preprocess.size)
    if int(other.config.preprocess.size) != size:
        raise ValueError(f"{name_a} and {name_b} take different input sizes ({size} vs {other.config.preprocess.size})")
    batch, rounds = spec["pair_batch"], spec["pair_rounds"]
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    fwd = {name_a: inference_forward(first), name_b: inference_forward(other)}
    times: dict[str, list[float]] = {name_a: [], name_b: []}
    before = U.loadavg()
    with torch.inference_mode():
        for n in fwd:
            fwd[n](x)  # warm-up
        for r in range(rounds):
            for n in ((name_a, name_b) if r % 2 == 0 else (name_b, name_a)):
                t = time.perf_counter()
                fwd[n](x)
                times[n].append(time.perf_counter() - t)
    ta, tb = U.median(times[name_a]), U.median(times[name_b])
    return {
        "batch": batch, "rounds": rounds, "warmup": 1, f"{name_b}_build_s": build_b,
        f"{name_a}_parameters": sum(p.numel() for p in first.parameters()),
        f"{name_b}_parameters": sum(p.numel() for p in other.parameters()),
        f"{name_a}_seconds": [round(v, 4) for v in times[name_a]],
        f"{name_b}_seconds": [round(v, 4) for v in times[name_b]],
        f"{name_a}_images_per_s": round(batch / ta, 3), f"{name_b}_images_per_s": round(batch / tb, 3),
        "speed_ratio": round(tb / ta, 4),
        "load_before": before, "load_after": U.loadavg(),
    }


def child_compile(spec: dict[str, Any]) -> dict[str, Any]:
    """One detector eager vs ``torch.compile`` (inductor): compile time, speed, logit change."""
    import torch

    from aigi.detectors import create_detector, detector_class
    from aigi.inference.fast import inference_forward

    name, batch = spec["name"], spec["batch"]
    cls = detector_class(name)
    model = create_detector(name, **(cls.tiny_overrides if spec.get("quick") else cls.full_size_overrides))
    model = model.for_inference()
    size = int(model.config.preprocess.size)
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    out: dict[str, Any] = {"name": name, "batch": batch, "load_before": U.loadavg()}
    with torch.inference_mode():
        eager = inference_forward(model)
        ref = eager(x)
        t = time.perf_counter()
        compiled = inference_forward(model, compile=True)
        got = compiled(x)
        out["compile_s"] = round(time.perf_counter() - t, 1)
        out["max_abs_logit_change"] = float((got - ref).abs().max())
        for label, fn in (("eager", eager), ("compiled", compiled), ("eager_again", eager)):
            times = U.time_calls(lambda: fn(x), warmup=0, iters=spec["iters"])
            out[f"{label}_seconds"] = [round(v, 4) for v in times]
            out[f"{label}_images_per_s"] = round(batch / U.median(times), 3)
    out["speedup"] = round(out["compiled_images_per_s"] /
                           (0.5 * (out["eager_images_per_s"] + out["eager_again_images_per_s"])), 3)
    out["load_after"] = U.loadavg()
    return out


CHILDREN = {"model": child_model, "compile": child_compile}


def spawn(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Run a child measurement in a fresh interpreter; its result, or the error it died of."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--spec", json.dumps(spec)]
    res = U.run_measured(cmd, env=_env(), timeout=CHILD_TIMEOUT_S)
    got = U.child_result(res["stdout"])
    if res["returncode"] != 0 or got is None:
        return {"error": f"exit {res['returncode']}" + (" (timed out)" if res["timed_out"] else ""),
                "stderr_tail": res["stderr"][-2000:], "wall_s": res["wall_s"]}
    got["process_wall_s"] = res["wall_s"]
    got["process_max_rss_mb"] = res["max_rss_mb"]
    return got


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    return env


# =========================================================================== sections


def section_machine(quick: bool) -> dict[str, Any]:
    info = U.machine_info()
    sizes = (512,) if quick else (2048, 4096)
    rates = [U.matmul_rate(dt, n, min_seconds=0.2 if quick else 1.5) for dt in ("float32", "bfloat16") for n in sizes]
    limit = {dt: max(r["gflops_best"] for r in rates if r["dtype"] == dt) for dt in ("float32", "bfloat16")}
    return {**info, "matmul": rates, "matmul_gflops": limit}


def section_models(names: list[str], quick: bool, progress) -> dict[str, Any]:
    from aigi.detectors import detector_class, list_detectors

    known = set(list_detectors())
    out = {}
    for name in names:
        cls = detector_class(name)
        spec = {"name": name, "overrides": dict(cls.tiny_overrides if quick else cls.full_size_overrides),
                "batches": [1, 4] if quick else [1, 32], "warmup": 1, "iters_small": 2 if quick else 3,
                "iters_big": 2, "quick": quick}
        if name == "univfd":  # the bfloat16 goal's model: autocast alone vs the low-precision copy
            spec["bf16_ab"] = 2 if quick else 3
        if name == "effort" and "univfd" in known:  # goal 3: Effort folded vs the plain tower
            spec.update(pair_with="univfd", pair_batch=2 if quick else 4, pair_rounds=2 if quick else 4)
        progress(f"model {name} …")
        t = time.perf_counter()
        out[name] = spawn("model", _jsonable(spec))
        progress(f"model {name}: {time.perf_counter() - t:.0f} s"
                 + (f" ERROR {out[name]['error']}" if "error" in out[name] else ""))
    return out


def section_decode(quick: bool, progress) -> dict[str, Any]:
    """Decode + test-time preprocessing to a 224 input through the real Dataset/DataLoader."""
    import torch
    from torch.utils.data import DataLoader

    from aigi.data.dataset import ImageDataset, collate, draft_size_for
    from aigi.data.layouts import Sample
    from aigi.data.transforms import PreprocessConfig, build_transform
    from aigi.inference.predictor import _fetch_single_threaded

    n_files = 8 if quick else 24
    min_s = 0.3 if quick else 1.5
    kinds = {"jpeg512": (512, "JPEG", ".jpg"), "png1024": (1024, "PNG", ".png"), "jpeg1024": (1024, "JPEG", ".jpg")}
    rows = []
    with tempfile.TemporaryDirectory(prefix="aigi-bench-decode-") as tmp:
        files = {}
        for kind, (side, fmt, suffix) in kinds.items():
            blobs = [U.encoded(U.photo_like(side, side, seed), fmt) for seed in range(n_files)]
            files[kind] = (U.write_files(Path(tmp) / kind, blobs, n_files, suffix), sum(map(len, blobs)) / n_files)
        for kind, (paths, mean_bytes) in files.items():
            for mode in ("center_crop", "resize_center_crop"):
                for draft in ((False, True) if kind == "jpeg1024" and mode == "resize_center_crop" else (False,)):
                    transform = build_transform(PreprocessConfig(test=mode, size=224, resize_to=256), train=False)
                    ds_draft = draft_size_for(transform) if draft else None
                    rate0 = None
                    # workers=0 as score_samples runs it (one torch thread while loading), then
                    # with torch's default threads (the "before"), then 1 and 2 worker processes
                    for workers, single in ((0, True), (0, False), (1, False), (2, False)):
                        if not single and workers == 0 and kind != "jpeg512":
                            continue  # the thread effect is shown once, on the cheapest images
                        # enough images for ~min_s of work, estimated from the 0-worker rate
                        n = max(32, int((rate0 or 0) * max(workers, 1) * min_s)) if workers else len(paths)
                        samples = [Sample(path=paths[i % len(paths)], label=0, subset="") for i in range(n)]
                        ds = ImageDataset(samples, transform, draft_size=ds_draft)
                        before = U.loadavg()
                        t = time.perf_counter()
                        done = 0
                        while True:  # workers=0: repeat epochs until min_s; else one epoch
                            loader = DataLoader(ds, batch_size=32, collate_fn=collate, num_workers=workers,
                                                prefetch_factor=4 if workers else None)
                            for batch in (_fetch_single_threaded(loader) if single else loader):
                                done += int(batch["index"].numel())
                            if workers or time.perf_counter() - t >= min_s:
                                break
                        wall = time.perf_counter() - t
                        rate = done / wall
                        if workers == 0 and single:
                            rate0 = rate
                        main_threads = 1 if (single or workers) else torch.get_num_threads()
                        rows.append({"images": kind, "mean_file_kib": round(mean_bytes / 1024, 1), "mode": mode,
                                     "draft": draft, "draft_size": ds_draft, "workers": workers,
                                     "loader_threads": main_threads, "images_done": done,
                                     "wall_s": round(wall, 3), "images_per_s": round(rate, 1),
                                     "load_before": before, "load_after": U.loadavg()})
                        progress(f"decode {kind} {mode} draft={draft} workers={workers} threads={main_threads}: "
                                 f"{rate:.1f} img/s")
    return {"size": 224, "resize_to": 256, "batch_size": 32, "prefetch_factor": 4,
            "note": "worker start-up is included (one epoch of ~min_seconds of work per worker count)",
            "min_seconds": min_s, "rows": rows}


def section_e2e(quick: bool, progress) -> dict[str, Any]:
    """`aigi eval` end to end with a tiny model; peak memory over 1,000 vs 10,000 images."""
    import aigi

    small, large = (100, 1000) if quick else (1000, 10000)
    out: dict[str, Any] = {"model": "univfd (tiny backbone, 32x32 centre crop)", "image": "64x64 PNG",
                           "small": small, "large": large, "runs": []}
    with tempfile.TemporaryDirectory(prefix="aigi-bench-e2e-") as tmp:
        tmp = Path(tmp)
        model = tmp / "model"
        aigi.create_detector("univfd", backbone="tiny").save_pretrained(model)
        t = time.perf_counter()
        blobs = [U.encoded(U.photo_like(64, 64, seed), "PNG") for seed in range(64)]
        U.write_labelled_tree(tmp / "large", blobs, large)
        U.link_tree(tmp / "large", tmp / "small", small)
        out["generate_s"] = round(time.perf_counter() - t, 2)
        for n, workers in ((small, 0), (large, 0), (small, 2)):
            data = tmp / ("small" if n == small else "large")
            cmd = [sys.executable, "-m", "aigi.cli", "eval", str(data), "--model", str(model),
                   "--output", str(tmp / f"out-{n}-{workers}"), "--workers", str(workers)]
            res = U.run_measured(cmd, env=_env(), timeout=CHILD_TIMEOUT_S)
            rec = {k: v for k, v in res.items() if k not in ("stdout", "stderr")}
            rec.update(images=n, workers=workers, images_per_s=round(n / res["wall_s"], 1))
            if res["returncode"] != 0:
                rec["stderr_tail"] = res["stderr"][-2000:]
            else:
                m = json.loads((tmp / f"out-{n}-{workers}" / "metrics.json").read_text())
                rec["scored"] = m["mean"]["n_real"] + m["mean"]["n_fake"]
            out["runs"].append(rec)
            progress(f"e2e {n} images, workers={workers}: {res['wall_s']:.1f} s, max RSS {res['max_rss_mb']:.0f} MiB")
    a, b, c = out["runs"]
    if a["returncode"] == 0 and b["returncode"] == 0:
        out["marginal_images_per_s"] = round((large - small) / max(b["wall_s"] - a["wall_s"], 1e-9), 1)
        out["startup_s_estimate"] = round(a["wall_s"] - small / out["marginal_images_per_s"], 2)
        out["memory_ratio_large_to_small"] = round(b["max_rss_mb"] / a["max_rss_mb"], 4)
    return out


# =========================================================================== goals


def goals(res: dict[str, Any]) -> dict[str, Any]:
    """The four goals of docs/performance.md, computed from the results present."""
    g: dict[str, Any] = {}
    limit = res.get("machine", {}).get("matmul_gflops", {})
    models = res.get("models", {})
    # 1. the data path never limits: slowest 2-worker decode >= 3x fastest full-size CLIP detector
    clip_best = [(r["images_per_s"], n, r["batch"], r["dtype"]) for n, m in models.items() if m.get("clip")
                 for r in m.get("runs", [])]
    rows = [r for r in res.get("decode", {}).get("rows", [])
            if r["workers"] == 2 and not r["draft"] and r["images"] in ("jpeg512", "png1024")]
    if clip_best and rows:
        best = max(clip_best)
        slow = min(rows, key=lambda r: r["images_per_s"])
        ratio = slow["images_per_s"] / best[0]
        g["data_path_vs_fastest_clip"] = {
            "target": ">= 3", "ratio": round(ratio, 2), "met": ratio >= 3,
            "slowest_decode": f"{slow['images']} {slow['mode']} 2 workers: {slow['images_per_s']} img/s",
            "fastest_clip": f"{best[1]} batch {best[2]} {best[3]}: {best[0]} img/s"}
    # 2. ViT-L/14 at batch 32 reaches half the matmul rate (the plain tower: univfd)
    vit = models.get("univfd", {})
    if vit.get("flops_per_image") and limit:
        for r in vit.get("runs", []):
            if r["batch"] == max(x["batch"] for x in vit["runs"]) and "variant" not in r:
                gf = vit["flops_per_image"] * r["images_per_s"] / 1e9
                frac = gf / limit[r["dtype"]]
                g[f"vit_l_batch{r['batch']}_{r['dtype']}_fraction_of_matmul"] = {
                    "target": ">= 0.5", "gflops": round(gf, 1), "matmul_gflops": limit[r["dtype"]],
                    "fraction": round(frac, 3), "met": frac >= 0.5}
    # 3. Effort folded at least 0.98x the plain backbone
    eff = res.get("effort", {})
    if "speed_ratio" in eff:
        g["effort_folded_vs_univfd"] = {"target": ">= 0.98", "ratio": eff["speed_ratio"],
                                        "met": eff["speed_ratio"] >= 0.98, "batch": eff["batch"]}
    else:
        g["effort_folded_vs_univfd"] = {"target": ">= 0.98", "met": None,
                                        "status": eff.get("status") or eff.get("error", "not measured")}
    # 4. memory does not grow with the data
    e2e = res.get("e2e", {})
    if "memory_ratio_large_to_small" in e2e:
        r = e2e["memory_ratio_large_to_small"]
        g["memory_large_vs_small_eval"] = {"target": "<= 1.10", "ratio": r, "met": r <= 1.10,
                                           "images": [e2e["small"], e2e["large"]]}
    return g


def add_fractions(res: dict[str, Any]) -> None:
    """Each model run's achieved GFLOP/s and its fraction of the matching matmul rate."""
    limit = res.get("machine", {}).get("matmul_gflops", {})
    for m in res.get("models", {}).values():
        f = m.get("flops_per_image")
        for r in m.get("runs", []):
            if f and r["dtype"] in limit:
                r["gflops"] = round(f * r["images_per_s"] / 1e9, 1)
                r["fraction_of_matmul"] = round(r["gflops"] / limit[r["dtype"]], 3)


# =========================================================================== report


def markdown(res: dict[str, Any]) -> str:
    meta, mach = res.get("meta", {}), res.get("machine", {})
    parts = [f"# aigi performance{' (QUICK: tiny models, smoke test only)' if meta.get('quick') else ''}",
             "", f"Generated by `python benchmarks/run.py` at {meta.get('finished', '?')} "
             f"(total {meta.get('wall_s', '?')} s). Load average before/after: "
             f"{meta.get('load_before')} → {meta.get('load_after')} "
             "(the machine is shared; see the JSON for each measurement's load).", ""]
    for u in meta.get("updates", []):
        parts += [f"Merged in later: `{' '.join(u.get('argv', []))}` at {u.get('finished', '?')} "
                  f"({u.get('wall_s', '?')} s, load {u.get('load_before')} → {u.get('load_after')}).", ""]
    if mach:
        parts += ["## Machine", "", f"{mach.get('cpu')}, {mach.get('logical_cores')} logical cores, "
                  f"torch {mach.get('torch')} ({mach.get('torch_threads')} threads, {mach.get('cpu_capability')}).", "",
                  U.md_table(["matmul", "n", "GFLOP/s best", "GFLOP/s median", "load before → after"],
                             [[r["dtype"], r["n"], r["gflops_best"], r["gflops_median"],
                               f"{r['load_before'][0]} → {r['load_after'][0]}"] for r in mach.get("matmul", [])]), ""]
    goals_ = res.get("goals", {})
    if goals_:
        parts += ["## Goals", "", U.md_table(["goal", "target", "measured", "met"], [
            [k, v.get("target"), v.get("ratio", v.get("fraction", v.get("status"))), v.get("met")]
            for k, v in goals_.items()]), ""]
    models = res.get("models", {})
    if models:
        rows = []
        for n, m in models.items():
            if "error" in m:
                rows.append([n, "ERROR", m["error"], "", "", "", "", "", "", "", ""])
                continue
            params = m.get("parameters")
            for r in m.get("runs", []):
                rows.append([n, None if params is None else f"{params / 1e6:.1f}M",
                             None if not m.get("flops_per_image") else round(m["flops_per_image"] / 1e9, 2),
                             r["batch"], r["dtype"] + (f" ({r['variant']})" if r.get("variant") else ""),
                             r.get("channels_last"),
                             f"{r.get('warmup', '?')}+{r.get('iters', '?')}", r["images_per_s"], r.get("gflops"),
                             r.get("fraction_of_matmul"), r.get("max_rss_mb")])
        parts += ["## Detectors at full size (random weights, inference mode)", "",
                  f"Iterations: {meta.get('iterations')}. "
                  "Peak RSS is the process's maximum so far (build included), in MiB. "
                  "GFLOP/s = FLOPs per image (matmul, convolution, attention) × img/s; "
                  "'of matmul' divides it by the machine's matmul rate of the same dtype.", "",
                  U.md_table(["detector", "params", "GFLOP/img", "batch", "dtype", "NHWC", "calls", "img/s", "GFLOP/s",
                              "of matmul", "peak RSS"], rows), ""]
    eff = res.get("effort", {})
    if eff:
        parts += ["## Effort folded vs UniVFD", "",
                  (f"batch {eff['batch']}, {eff['rounds']} interleaved rounds: effort {eff['effort_images_per_s']} "
                   f"img/s, univfd {eff['univfd_images_per_s']} img/s, ratio {eff['speed_ratio']}"
                   if "speed_ratio" in eff else str(eff.get("status") or eff.get("error"))), ""]
    dec = res.get("decode", {})
    if dec:
        parts += ["## Decode + preprocess to 224 (DataLoader, batch 32)", "",
                  U.md_table(["images", "KiB/file", "mode", "draft", "workers", "torch threads/loader", "img/s"],
                             [[r["images"], r.get("mean_file_kib"), r["mode"], r["draft"], r["workers"],
                               r.get("loader_threads"), r["images_per_s"]] for r in dec.get("rows", [])]), ""]
    comp = res.get("compile", {})
    if comp:
        parts += ["## torch.compile (inductor) vs eager", "",
                  U.md_table(["detector", "batch", "compile s", "eager img/s", "compiled img/s", "speed-up",
                              "max |Δlogit|"],
                             [[n, c.get("batch"), c.get("compile_s"), c.get("eager_images_per_s"),
                               c.get("compiled_images_per_s"), c.get("speedup"), c.get("max_abs_logit_change")]
                              for n, c in comp.items()]), ""]
    e2e = res.get("e2e", {})
    if e2e:
        parts += ["## `aigi eval` end to end (tiny model, 64×64 PNG)", "",
                  U.md_table(["images", "workers", "wall s", "img/s (incl. start-up)", "max RSS MiB"],
                             [[r.get("images"), r.get("workers"), r.get("wall_s"), r.get("images_per_s"),
                               r.get("max_rss_mb")]
                              for r in e2e.get("runs", [])]), "",
                  f"Marginal rate {e2e.get('marginal_images_per_s')} img/s; start-up ≈ {e2e.get('startup_s_estimate')} s; "
                  f"peak memory {e2e.get('large')} vs {e2e.get('small')} images: ×{e2e.get('memory_ratio_large_to_small')}.",
                  ""]
    return "\n".join(parts)


# =========================================================================== main


def _jsonable(x: Any) -> Any:
    return json.loads(json.dumps(x, default=list))


def parse_only(only: str | None, known: list[str]) -> tuple[set[str], list[str] | None]:
    """Sections to run and the detectors for the models section (None: all registered)."""
    if not only:
        return set(DEFAULT_SECTIONS), None
    sections, names = set(), []
    for item in (s.strip() for s in only.split(",") if s.strip()):
        if item in SECTIONS:
            sections.add(item)
        elif item in known:
            names.append(item)
        else:
            raise SystemExit(f"--only: {item!r} is neither a section ({', '.join(SECTIONS)}) "
                             f"nor a registered detector ({', '.join(known)})")
    if names:
        sections.add("models")
    return sections, names or None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny models, few images: check the harness works")
    p.add_argument("--only", help="comma-separated sections (" + ", ".join(SECTIONS) + ") and/or detector names")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "perf.json"))
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--spec", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        U.emit_result(CHILDREN[args.child](json.loads(args.spec)))
        return 0

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from aigi.detectors import list_detectors

    known = sorted(list_detectors())
    sections, names = parse_only(args.only, known)
    out = Path(args.out)
    res: dict[str, Any] = {}
    if args.only and out.is_file():
        res = json.loads(out.read_text())
        if bool(res.get("meta", {}).get("quick")) != args.quick:
            raise SystemExit(f"{out} holds a {'quick' if res['meta'].get('quick') else 'full'} run; "
                             "merge only runs of the same kind (or pass another --out)")
    t0 = time.perf_counter()

    def progress(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:6.0f} s] {msg}", file=sys.stderr, flush=True)

    merging = bool(res)
    meta = res.setdefault("meta", {})
    # a merged (--only) run is logged under "updates"; the full run's own fields stay
    this = {"quick": args.quick, "started": time.strftime("%Y-%m-%d %H:%M:%S"), "load_before": U.loadavg(),
            "argv": sys.argv[1:], "registered_detectors": known}
    if merging:
        meta.setdefault("updates", []).append(this)
    else:
        meta.update(this)
    timings = meta.setdefault("section_wall_s", {})
    if "machine" in sections or ("models" in sections and "machine" not in res):
        s = time.perf_counter()
        res["machine"] = section_machine(args.quick)
        timings["machine"] = round(time.perf_counter() - s, 1)
        progress(f"matmul GFLOP/s: {res['machine']['matmul_gflops']}")
    if "models" in sections:
        s = time.perf_counter()
        res.setdefault("models", {}).update(section_models(names or known, args.quick, progress))
        timings["models"] = round(time.perf_counter() - s, 1)
    if "effort" in res.get("models", {}):
        res["effort"] = res["models"]["effort"].get("pair", {"status": "not measured (univfd not registered?)"})
    elif "effort" not in known:
        res["effort"] = {"status": "skipped: no detector named 'effort' is registered yet"}
    if "decode" in sections:
        s = time.perf_counter()
        res["decode"] = section_decode(args.quick, progress)
        timings["decode"] = round(time.perf_counter() - s, 1)
    if "e2e" in sections:
        s = time.perf_counter()
        res["e2e"] = section_e2e(args.quick, progress)
        timings["e2e"] = round(time.perf_counter() - s, 1)
    if "compile" in sections:
        s = time.perf_counter()
        res["compile"] = {}
        for name, batch in COMPILE_CASES:
            progress(f"compile {name} …")
            res["compile"][name] = spawn("compile", {"name": name, "batch": 4 if args.quick else batch,
                                                     "iters": 2, "quick": args.quick})
            progress(f"compile {name}: {res['compile'][name].get('speedup', res['compile'][name].get('error'))}")
        timings["compile"] = round(time.perf_counter() - s, 1)
    add_fractions(res)
    res["goals"] = goals(res)
    (meta["updates"][-1] if merging else meta).update(
        finished=time.strftime("%Y-%m-%d %H:%M:%S"), load_after=U.loadavg(), wall_s=round(time.perf_counter() - t0, 1),
        sections=sorted(sections))
    meta.update(
                iterations="batch 1: 1 warm-up + 3 timed calls; batch 32: 1 warm-up (the FLOP-counted call) "
                           f"+ 2 timed calls (1 for detectors outside {', '.join(REFERENCE)} whose warm-up "
                           f"took over {SLOW_CALL_S:.0f} s); the median call is reported; each run records "
                           "its own warmup/iters" if not args.quick else
                           "quick: 1 warm-up + 2 timed calls at batch 1 and 4")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(res) + "\n")
    progress(f"wrote {out} and {out.with_suffix('.md')}")
    for k, v in res["goals"].items():
        progress(f"goal {k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
