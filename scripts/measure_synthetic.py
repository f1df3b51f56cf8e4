"""Measure the built-in benchmark: generation time, single-statistic shortcuts, detector generalisation.

    python scripts/measure_synthetic.py --out runs/measure-synthetic            # everything
    python scripts/measure_synthetic.py --out runs/measure-synthetic --only detectors

Writes ``results.json`` and ``tables.md`` (the tables of docs/synthetic.md) into ``--out``.

* ``timing``: ``generate_benchmark`` with its defaults (6 generators x 2 classes x 200
  images, 256 x 256) and ``--workers`` processes; wall-clock and CPU seconds.
* ``shortcuts``: ``aigi audit`` of that benchmark with pixel statistics
  (:func:`aigi.audit.audit`): the verdict and every attribute's AUROC, per generator and
  pooled.
* ``detectors``: a training set (seed 0, 200 images per class and generator) and a
  disjoint test set (seed 1, 100 per class) at ``--det-size`` pixels; small NPR and
  DFFreq models (``blocks (1, 1)``, ``width 8``, Adam lr 1e-3, batch 32) trained with
  ``aigi.train`` on each generator alone (``--steps``) and on all of them
  (``--steps-all``), evaluated with ``aigi.evaluate`` on every test subset (random
  96-pixel crops for training, the centre 96-pixel crop for testing, so the images are
  never resampled).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import time
from pathlib import Path


def _cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    s = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime + s.ru_utime + s.ru_stime


def timing(out: Path, workers: int) -> dict:
    from aigi.data.synthetic import generate_benchmark

    root = out / "bench-256"
    shutil.rmtree(root, ignore_errors=True)
    cpu0, t0 = _cpu_children(), time.perf_counter()
    generate_benchmark(root, workers=workers)
    wall, cpu = time.perf_counter() - t0, _cpu_children() - cpu0
    n = sum(1 for _ in root.rglob("0*.*"))
    with open("/proc/loadavg") as fh:
        load = fh.read().split()[:3]
    return {"images": n, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "workers": workers,
            "load_average_at_end": load, "root": str(root)}


def shortcuts(root: Path) -> dict:
    """``aigi audit`` of the benchmark (file attributes and pixel statistics): verdict and AUROC per subset."""
    from aigi.audit import audit

    res = audit(root, pixels=True, bootstrap=200)
    out: dict[str, dict] = {}
    for subset, rows in res.separations.items():
        out[subset] = {"verdict": res.verdicts[subset], "n": sum(res.labels[i] is not None for i, s in
                                                                 enumerate(res.subsets) if subset in ("all", s)),
                       "auroc": {r.attribute: [round(r.auroc, 3), round(r.low, 3), round(r.high, 3)] for r in rows}}
    return {"seconds": round(res.seconds, 1), "subsets": out}


def detectors(out: Path, size: int, per_class: int, test_per_class: int, steps: int, steps_all: int, crop: int,
              width: int, methods: list[str], workers: int) -> dict:
    import torch

    from aigi.data.synthetic import GENERATORS, generate_benchmark
    from aigi.evaluate import evaluate
    from aigi.train import TrainConfig, train

    data = out / f"det-{size}"
    if not (data / "train" / "synthetic.json").is_file():
        generate_benchmark(data / "train", per_class=per_class, size=size, seed=0, workers=workers, overwrite=True)
    if not (data / "test" / "synthetic.json").is_file():
        generate_benchmark(data / "test", per_class=test_per_class, size=size, seed=1, workers=workers,
                           overwrite=True)
    results: dict[str, dict] = {}
    for method in methods:
        for subset in [*GENERATORS, "all"]:
            run = out / "runs" / f"{method}-{subset}"
            shutil.rmtree(run, ignore_errors=True)
            cfg = TrainConfig.model_validate({
                "detector": method,
                "overrides": {"blocks": [1, 1], "width": width, "preprocess.size": crop,
                              "preprocess.train": "random_crop", "preprocess.test": "center_crop"},
                "data": {"train": str(data / "train"), "layout": "subsets",
                         "subsets": None if subset == "all" else [subset]},
                "optimizer": {"name": "adam", "lr": 1e-3},
                "batch_size": 32, "max_steps": steps_all if subset == "all" else steps, "seed": 0,
                "checkpoint_every": 10**6, "log_every": 50,
            })
            torch.manual_seed(0)
            t0 = time.perf_counter()
            train(cfg, run, progress=False)
            t_train = time.perf_counter() - t0
            report = evaluate(run, data / "test", layout="subsets", batch_size=64)
            results[f"{method}/{subset}"] = {
                "train_s": round(t_train, 1),
                "subsets": {k: {m: v[m] for m in ("acc", "ap", "r_acc", "f_acc")}
                            for k, v in report["subsets"].items()},
                "mean": {m: report["mean"][m] for m in ("acc", "ap")},
            }
            print(f"{method} trained on {subset}: mean acc {report['mean']['acc']:.3f} ap {report['mean']['ap']:.3f} "
                  f"({t_train:.0f} s)", flush=True)
    return {"size": size, "crop": crop, "per_class": per_class, "test_per_class": test_per_class, "steps": steps,
            "steps_all": steps_all, "width": width, "runs": results}


def tables(res: dict) -> str:
    lines: list[str] = []
    if "timing" in res:
        t = res["timing"]
        lines += [f"Generation: {t['images']} images in {t['wall_s']} s wall, {t['cpu_s']} s CPU "
                  f"({t['workers']} workers; load average at the end {' '.join(t['load_average_at_end'])}).", ""]
    if "shortcuts" in res:
        names = ["all metadata (model)", "format", "jpeg_quality", "bytes_per_pixel", "grey_mean", "grey_std",
                 "colourfulness", "noise", "hf_energy", "hf_ratio", "blockiness"]
        lines += ["| subset | verdict | " + " | ".join(names) + " |", "|---" * (len(names) + 2) + "|"]
        for sub, v in res["shortcuts"]["subsets"].items():
            lines.append(f"| {sub} | {v['verdict']} | " + " | ".join(f"{v['auroc'][k][0]:.2f}" for k in names) + " |")
        lines.append("")
    if "detectors" in res:
        d = res["detectors"]
        gens = sorted({g for r in d["runs"].values() for g in r["subsets"]})
        for method in sorted({k.split("/")[0] for k in d["runs"]}):
            lines += [f"**{method}** (ACC / AP, %; rows: training subset, columns: test subset)", "",
                      "| trained on | " + " | ".join(gens) + " | mean |", "|---" * (len(gens) + 2) + "|"]
            for key, r in d["runs"].items():
                if not key.startswith(method + "/"):
                    continue
                cells = [f"{100 * r['subsets'][g]['acc']:.1f} / {100 * r['subsets'][g]['ap']:.1f}" for g in gens]
                lines.append(f"| {key.split('/')[1]} | " + " | ".join(cells)
                             + f" | {100 * r['mean']['acc']:.1f} / {100 * r['mean']['ap']:.1f} |")
            lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/measure-synthetic"))
    p.add_argument("--only", default="timing,shortcuts,detectors")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for these small models)")
    p.add_argument("--det-size", type=int, default=128)
    p.add_argument("--det-per-class", type=int, default=200)
    p.add_argument("--det-test-per-class", type=int, default=100)
    p.add_argument("--steps", type=int, default=300, help="training steps on one generator (400 images)")
    p.add_argument("--steps-all", type=int, default=600, help="training steps on all generators (2400 images)")
    p.add_argument("--crop", type=int, default=96)
    p.add_argument("--width", type=int, default=8)
    p.add_argument("--methods", default="npr,dffreq")
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / "results.json"
    res = json.loads(path.read_text()) if path.is_file() else {}
    only = set(a.only.split(","))
    if "timing" in only:
        res["timing"] = timing(a.out, a.workers)
        print(res["timing"], flush=True)
    if "shortcuts" in only:
        root = a.out / "bench-256"
        if not (root / "synthetic.json").is_file():
            sys.exit(f"{root} is missing: run with --only timing first")
        res["shortcuts"] = shortcuts(root)
    if "detectors" in only:
        res["detectors"] = detectors(a.out, a.det_size, a.det_per_class, a.det_test_per_class, a.steps, a.steps_all,
                                     a.crop, a.width, a.methods.split(","), a.workers)
    command = "python scripts/measure_synthetic.py " + " ".join(argv if argv is not None else sys.argv[1:])
    res.pop("command", None)
    res.setdefault("commands", {}).update({part: command for part in only})
    path.write_text(json.dumps(res, indent=2) + "\n")
    (a.out / "tables.md").write_text(tables(res) + "\n")
    print(tables(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
