"""Fixtures of the serving tests: a tiny saved detector with side files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from aigi.detectors import create_detector
from aigi.detectors.registry import detector_class


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny NPR detector (input 32 px) saved the way `aigi train` saves one, with side files."""
    out = tmp_path_factory.mktemp("serve") / "npr-tiny"
    torch.manual_seed(0)  # session fixtures are built before the per-test seeding
    det = create_detector("npr", **detector_class("npr").tiny_overrides)
    det.save_pretrained(out)
    (out / "training.json").write_text('{"detector": "npr", "steps": 2, "train_data": "tiny"}\n')
    (out / "eval").mkdir()
    (out / "eval" / "metrics.json").write_text('{"method": "npr", "mean": {"acc": 0.5}}\n')
    return out
