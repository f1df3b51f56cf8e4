"""``aigi demo``: the whole path on a fresh machine, with no data and no weights.

Generates a small two-generator image set, trains a tiny NPR on one split, evaluates it on
another and prints the per-subset table. (The full built-in benchmark replaces the image
generator here once it lands.)
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PIL import Image
from rich.console import Console


def _scene(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth random colour field with edges: low-passed noise plus a few discs."""
    freq = np.fft.rfftfreq(size)[None, :] ** 2 + np.fft.fftfreq(size)[:, None] ** 2
    amp = 1.0 / np.maximum(freq, 1.0 / size**2) ** 0.9
    out = np.empty((size, size, 3))
    for c in range(3):
        spec = amp * np.exp(2j * np.pi * rng.random(amp.shape))
        ch = np.fft.irfft2(spec, s=(size, size))
        out[..., c] = (ch - ch.mean()) / (ch.std() + 1e-8)
    yy, xx = np.mgrid[:size, :size]
    for _ in range(4):
        cy, cx, r = rng.integers(0, size, 2).tolist() + [int(rng.integers(size // 10, size // 3))]
        out[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] += rng.normal(0, 1.0, 3)
    return np.clip(128 + 40 * out, 0, 255)


def make_demo_data(root: Path, *, per_class: int, size: int, seed: int = 0) -> Path:
    """Write ``<root>/{train,test}/<generator>/{0_real,1_fake}/*.png``.

    Real images are scenes with sensor-like noise; fakes are rendered at half resolution
    and up-sampled (``nearest`` or ``bilinear``), the classic up-sampling fingerprint.
    """
    rng = np.random.default_rng(seed)
    for split, n in (("train", per_class), ("test", max(per_class // 2, 4))):
        for gen, method in (("nearest_up", Image.NEAREST), ("bilinear_up", Image.BILINEAR)):
            for label in ("0_real", "1_fake"):
                d = root / split / gen / label
                d.mkdir(parents=True, exist_ok=True)
                for i in range(n):
                    if label == "0_real":
                        arr = _scene(rng, size) + rng.normal(0, 3.0, (size, size, 3))
                        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
                    else:
                        small = Image.fromarray(_scene(rng, size // 2).astype(np.uint8))
                        img = small.resize((size, size), method)
                    img.save(d / f"{i:04d}.png")
    return root


def run_demo(output: Path, *, quick: bool = False, console: Console | None = None,
             out: Console | None = None) -> dict:
    """Generate data, train a tiny NPR, evaluate it; returns the metrics report."""
    from .cli import metrics_table
    from .evaluate import evaluate
    from .train import TrainConfig, train

    console = console or Console(stderr=True)
    out = out or Console()
    t0 = time.time()
    output = Path(output)
    size = 32 if quick else 64
    data = make_demo_data(output / "data", per_class=16 if quick else 64, size=size)
    console.print(f"generated demo images in {data}")
    cfg = TrainConfig.model_validate({
        "detector": "npr",
        "overrides": {"width": 8, "blocks": [1, 1], "preprocess.size": size, "preprocess.train": "random_crop",
                      "preprocess.test": "center_crop"},
        "data": {"train": str(data / "train"), "layout": "subsets"},
        "optimizer": {"name": "adam", "lr": 2e-3},
        "batch_size": 16,
        "max_steps": 10 if quick else 80,
        "checkpoint_every": 1000,
        "log_every": 5,
    })
    model_dir = output / "npr"
    if (model_dir / "checkpoints").exists():
        import shutil

        shutil.rmtree(model_dir)
    train(cfg, model_dir, progress=False)
    report = evaluate(model_dir, data / "test", layout="subsets", output=model_dir / "eval")
    out.print(metrics_table(report))
    console.print(f"demo finished in {time.time() - t0:.1f} s; model in {model_dir}, metrics in {model_dir / 'eval'}")
    return report
