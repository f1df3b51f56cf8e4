"""Helpers of the inference-engine tests (imported by the test modules; fixtures live in conftest.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

import aigi
from aigi.detectors import detector_class


def save_tiny(path: Path, name: str = "npr", seed: int = 1) -> Path:
    """A tiny random detector saved as a folder."""
    torch.manual_seed(seed)
    aigi.create_detector(name, **detector_class(name).tiny_overrides).save_pretrained(path)
    return path


def write_pngs(folder: Path, n: int, size: int = 40, seed: int = 0) -> list[Path]:
    """``n`` random RGB PNGs (every other one a 2x up-sampled image)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        if i % 2:
            a = np.repeat(np.repeat(rng.integers(0, 256, (size // 2, size // 2, 3)), 2, 0), 2, 1)
        else:
            a = rng.integers(0, 256, (size, size, 3))
        p = folder / f"{i:03d}.png"
        Image.fromarray(a.astype(np.uint8)).save(p)
        out.append(p)
    return out
