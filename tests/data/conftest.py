"""Fixtures for the data-package tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

@pytest.fixture
def make_rgb() -> Callable[..., Image.Image]:
    """Factory for random RGB images: ``make_rgb(h, w, seed)``."""

    def _make(h: int = 32, w: int = 48, seed: int = 0) -> Image.Image:
        rng = np.random.default_rng(seed)
        return Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8))

    return _make
