"""Fixtures of the inference-engine tests: one torch thread, a tiny saved detector."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from inference_helpers import save_tiny


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: one torch thread is fastest on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_dir(tmp_path) -> Path:
    return save_tiny(tmp_path / "model")
