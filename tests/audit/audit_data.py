"""Tiny datasets for the audit tests, built on the fly: one shortcut each (format, size, EXIF), or none."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def picture(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """Smooth random content (a small noise field scaled up), the same distribution for both classes."""
    small = (rng.random((max(2, h // 5), max(2, w // 5), 3)) * 255).astype(np.uint8)  # not 8: no 8-px grid
    return Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC)


def write(path: Path, img: Image.Image, fmt: str, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format=fmt, **kw)
    return path


def build(root: Path, kind: str, n: int = 24, seed: int = 0) -> Path:
    """``<root>/<kind>/{0_real,1_fake}/`` with one shortcut: ``format``, ``size``, ``exif``, or ``clean``."""
    rng = np.random.default_rng(seed)
    for label, folder in ((0, "0_real"), (1, "1_fake")):
        for i in range(n):
            fmt = "JPEG" if rng.random() < 0.5 else "PNG"
            w, h = int(rng.choice([48, 56, 64, 72])), int(rng.choice([48, 56, 64, 72]))
            kw: dict = {"quality": int(rng.integers(85, 96))} if fmt == "JPEG" else {}
            if kind == "format":
                fmt, kw = ("JPEG", {"quality": 90}) if label == 0 else ("PNG", {})
            elif kind == "size":  # fakes all 64 x 64, reals any other size
                w = h = 64 if label == 1 else int(rng.choice([48, 56, 72, 80]))
            elif kind == "exif" and label == 0:
                exif = Image.Exif()
                exif[0x010F], exif[0x0110] = "Canon", f"EOS {int(rng.integers(1, 9))}D"
                kw["exif"] = exif
            img = picture(rng, w, h)
            write(root / kind / folder / f"{i:03d}{'.jpg' if fmt == 'JPEG' else '.png'}", img, fmt, **kw)
    return root / kind
