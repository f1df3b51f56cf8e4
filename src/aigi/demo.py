"""``aigi demo``: the whole benchmark on a fresh machine, with no data and no weights.

What it does, on the built-in synthetic benchmark (:mod:`aigi.data.synthetic`):

1. generates a training set from two simulated generators (``gan`` and ``ldm``: a GAN and
   a latent-diffusion model, the shape of AIGIBench's Setting II, ProGAN + SD v1.4) and a
   test set from all six;
2. trains the from-scratch detectors -- NPR, DFFreq and CNNSpot (no ImageNet weights) --
   at CPU sizes (thousands to a hundred thousand parameters, 32-pixel crops of 64-pixel images);
3. runs AIGIBench's four tasks through :func:`aigi.benchmark.run.run_protocol`:
   generalisation to every generator, robustness to JPEG / blur / noise / resizing / a
   social-media chain, NPR retrained with each training augmentation, and the test-time
   preprocessing swapped;
4. writes ``report.md`` / ``report.html`` (with plots) into the output folder, prints the
   leaderboard, and scores one test image from a generator no detector saw in training
   with the best model.

With ``backbone=DIR`` (a local CLIP checkpoint folder) UnivFD and Effort join, with tiny
training budgets and the generalisation task only (a CLIP ViT on a CPU is slow); without
it the report lists them as skipped and says why. Everything is stored: running the demo
again reuses the data, the trained models and every score, and only re-renders the
report. The demo's models are tiny, so it runs torch single-threaded, which is also the
fastest setting on a busy machine.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

__all__ = ["DemoSize", "SIZES", "TRAIN_GENERATORS", "demo_protocol", "ensure_data", "run_demo"]

#: the generators the demo trains on (AIGIBench Setting II's shape: a GAN + a latent diffusion model)
TRAIN_GENERATORS: tuple[str, ...] = ("gan", "ldm")


@dataclass(frozen=True)
class DemoSize:
    """How big the demo is: images, detectors, training and the tasks' lists."""

    image: int
    input: int
    resize_to: int
    train_per_class: int
    test_per_class: int
    steps: int
    batch: int
    degradations: tuple[str, ...]
    modes: tuple[str, ...]
    variants: tuple[str, ...]
    bootstrap: int
    width: int = 8


SIZES: dict[str, DemoSize] = {
    "full": DemoSize(
        image=64, input=32, resize_to=48, train_per_class=150, test_per_class=30, steps=250, batch=32,
        degradations=("jpeg:90", "jpeg:75", "jpeg:50", "blur:0.5", "blur:1", "blur:2", "noise:0.02", "noise:0.05",
                      "resize:0.75:bilinear", "resize:0.5:bilinear", "social"),
        modes=("center_crop", "resize", "resize_center_crop", "none", "patch_selection"),
        variants=("none", "blur", "jpeg", "rotation", "color_jitter", "mask"),
        bootstrap=1000,
    ),
    "quick": DemoSize(
        image=48, input=32, resize_to=40, train_per_class=24, test_per_class=8, steps=24, batch=16,
        degradations=("jpeg:75", "blur:1", "resize:0.5:bilinear"),
        modes=("center_crop", "resize", "none"),
        variants=("none", "jpeg"),
        bootstrap=200, width=4,
    ),
}


def _recipe(detector: str, size: DemoSize, train: Path, **extra: Any) -> dict[str, Any]:
    blocks = [1, 1, 1, 1] if detector == "cnnspot" else [1, 1]
    return {
        "detector": detector,
        "overrides": {"blocks": blocks, "width": size.width, "preprocess.size": size.input,
                      "preprocess.resize_to": size.resize_to, "preprocess.train": "random_crop",
                      "preprocess.test": "center_crop", **extra},
        "data": {"train": str(train), "layout": "subsets"},
        "optimizer": {"name": "adam", "lr": 2.0e-3},
        "batch_size": size.batch,
        "max_steps": size.steps,
        "seed": 0,
        "checkpoint_every": 100000,
        "log_every": 25,
    }


def _clip_recipe(detector: str, size: DemoSize, train: Path, backbone: Path) -> dict[str, Any]:
    overrides: dict[str, Any] = {"backbone": str(backbone), "preprocess.train": "translate_duplicate_random_crop",
                                 "preprocess.test": "translate_duplicate", "preprocess.resize_to": size.image}
    if detector == "effort":
        overrides.update({"targets": "attention", "trainable_rank": 1, "head": "one_logit"})
    return {
        "detector": detector,
        "overrides": overrides,
        "data": {"train": str(train), "layout": "subsets"},
        "optimizer": {"name": "adamw", "lr": 2.0e-4 if detector == "effort" else 1.0e-3, "weight_decay": 0.0},
        "batch_size": 8,
        "max_steps": 4 if size is SIZES["quick"] else 20,
        "seed": 0,
        "checkpoint_every": 100000,
        "log_every": 5,
        "adapter_only": True,
    }


def demo_protocol(root: Path, *, quick: bool = False, backbone: Path | None = None) -> dict[str, Any]:
    """The demo's benchmark protocol (a plain mapping; ``configs/protocols/builtin.yaml`` is the full one)."""
    mode = "quick" if quick else "full"
    size = SIZES[mode]
    data = Path(root) / "data" / mode
    models = Path(root) / "models" / mode
    detectors: list[dict[str, Any]] = [
        {"name": name, "recipe": _recipe(name, size, data / "train"), "output": str(models / name)}
        for name in ("npr", "dffreq", "cnnspot")
    ]
    skipped: list[dict[str, str]] = []
    clip = ("univfd", "effort")
    if backbone is not None:
        detectors += [{"name": name, "recipe": _clip_recipe(name, size, data / "train", Path(backbone)),
                       "output": str(models / name)} for name in clip]
    else:
        skipped = [{"name": name, "reason": "needs pretrained CLIP weights, which the demo never downloads; "
                                            "run `aigi demo --backbone DIR` with a local CLIP checkpoint folder"}
                   for name in clip]
    scratch = ["npr", "dffreq", "cnnspot"]
    return {
        "name": f"aigi-demo-{mode}",
        "description": (
            "The built-in synthetic benchmark: detectors trained on two simulated generators "
            f"({', '.join(TRAIN_GENERATORS)}), tested on all six. Simulated data: the numbers show the toolkit "
            "working, they say nothing about real generators."
        ),
        "data": {"test": str(data / "test"), "layout": "subsets"},
        "calibration": {"holdout": 0.25, "fpr": 0.05},
        "detectors": detectors,
        "skipped": skipped,
        "tasks": {
            "generalization": {},
            "robustness": {"degradations": list(size.degradations), "detectors": scratch},
            "augmentation": {"detectors": ["npr"], "variants": list(size.variants), "probability": 0.5,
                             "degradations": ["jpeg:75", "blur:1"] if not quick else []},
            "preprocessing": {"modes": list(size.modes), "detectors": scratch},
        },
        "metrics": {"bootstrap": size.bootstrap},
        "run": {"batch_size": 64},
    }


def ensure_data(root: Path, *, quick: bool = False, console: Console | None = None) -> bool:
    """Generate the demo's train and test sets unless they are there with the same settings.

    Returns whether anything was (re)generated. Data lives in ``<root>/data/{full,quick}/{train,test}``.
    """
    from .data.synthetic import MANIFEST, generate_benchmark, generator_fingerprint

    mode = "quick" if quick else "full"
    size = SIZES[mode]
    data = Path(root) / "data" / mode
    plans = (
        ("train", dict(per_class=size.train_per_class, size=size.image, generators=list(TRAIN_GENERATORS), seed=0)),
        ("test", dict(per_class=size.test_per_class, size=size.image, generators=None, seed=1)),
    )
    made = False
    for split, kw in plans:
        folder = data / split
        meta_path = folder / MANIFEST
        if meta_path.is_file():
            # the same generator code, settings and libraries, or the data is made again
            meta = json.loads(meta_path.read_text())
            if meta.get("generator_sha256") == generator_fingerprint(**kw):
                continue
        if console is not None:
            console.print(f"generating the {split} set ({kw['per_class']} images per class and generator, "
                          f"{kw['size']} px) in {folder}")
        generate_benchmark(folder, workers=2, overwrite=True, **kw)
        made = True
    return made


def run_demo(output: Path, *, quick: bool = False, console: Console | None = None, out: Console | None = None,
             backbone: Path | None = None):
    """Generate, train, benchmark, report, and score one image; returns the BenchResult."""
    import torch

    from .benchmark.run import run_protocol
    from .benchmark.protocol import protocol_from_dict
    from .benchmark.report import leaderboard_table
    from .evaluate.runner import detect

    console = console or Console(stderr=True)
    out = out or Console()
    t0 = time.time()
    output = Path(output).resolve()
    if backbone is not None and not Path(backbone).is_dir():
        raise ValueError(f"--backbone {backbone} is not a folder; pass a local CLIP checkpoint folder "
                         "(one that holds config.json and the weights)")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if ensure_data(output, quick=quick, console=console):
            # models trained on earlier data would be reused (same recipe): start them afresh
            shutil.rmtree(output / "models" / ("quick" if quick else "full"), ignore_errors=True)
        protocol = protocol_from_dict(demo_protocol(output, quick=quick, backbone=backbone), source="the demo protocol")
        if backbone is not None:
            from transformers.utils import logging as hf_logging

            hf_logging.set_verbosity_error()  # loading one tower of a full CLIP folder lists the other's keys
            console.print("[yellow]CLIP detectors added: a CLIP ViT on a CPU takes minutes even for their tiny "
                          "training budgets[/]")
        result = run_protocol(protocol, output, console=console)
    finally:
        torch.set_num_threads(threads)
    res = result.results
    out.print(leaderboard_table(res))
    for name, cond, reason in res.failures:
        console.print(f"[yellow]not scored[/] {escape(str(name))} under {escape(str(cond))}: {escape(str(reason))}")
    for s in protocol.skipped:
        console.print(f"[dim]skipped {escape(s.name)}: {escape(s.reason)}[/]")

    best = res.ranked()[0]
    unseen = sorted(p for p in (Path(protocol.data.test)).glob("*/1_fake/*")
                    if p.parent.parent.name not in TRAIN_GENERATORS)
    if unseen:
        image = unseen[0]
        rows, _ = detect(result.detectors[best], [image])
        if rows:
            r = rows[0]
            out.print(f"best model [bold]{best}[/] on {escape(str(image.relative_to(output)))} "
                      f"(a fake from '{image.parent.parent.name}', a generator it never saw): "
                      f"P(fake) = {r['p_fake']:.3f} → [bold]{r['verdict']}[/]")
    console.print(f"report: {escape(str(result.report))} and {escape(str(result.report.with_suffix('.html')))}")
    again = "; running it again reuses everything" if result.scored else ""
    console.print(f"demo finished in {time.time() - t0:.1f} s ({result.scored} new scores, {result.reused} reused)"
                  + again)
    return result
