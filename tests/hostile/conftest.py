"""Fixtures of the hostile-input suite: a tiny saved detector and image writers."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from aigi.detectors import create_detector
from aigi.detectors.registry import detector_class

#: POSIX file systems hold any bytes but "/" and NUL in a name; this one is not UTF-8
BAD_BYTES_NAME = b"b_\xff.png"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny NPR detector folder (input 32 px)."""
    out = tmp_path_factory.mktemp("hostile") / "npr-tiny"
    torch.manual_seed(0)
    det = create_detector("npr", **detector_class("npr").tiny_overrides)
    det.save_pretrained(out)
    return out


def png_bytes(size: int = 40, seed: int = 0) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def jpeg_bytes(size: int = 128, seed: int = 0, **kw) -> bytes:
    rng = np.random.default_rng(seed)
    # smooth content plus noise: compresses like a photo, not like pure noise
    y, x = np.mgrid[0:size, 0:size]
    base = np.stack([x, y, (x + y) // 2], -1).astype(np.float64) * (255.0 / (2 * size))
    arr = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=90, **kw)
    return buf.getvalue()


def write(path: Path | bytes, data: bytes) -> None:
    """Write ``data`` to ``path`` (a Path, or raw bytes for names that are not UTF-8)."""
    raw = os.fsencode(path)
    os.makedirs(os.path.dirname(raw) or b".", exist_ok=True)
    with open(raw, "wb") as fh:
        fh.write(data)


def can_drop_privileges() -> bool:
    """Running as root with a user (nobody) that can run this interpreter."""
    return hasattr(os, "geteuid") and os.geteuid() == 0
