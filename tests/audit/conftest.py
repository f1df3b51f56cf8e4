"""The shared real-image set, when this machine has it."""

from __future__ import annotations

from pathlib import Path

import pytest

from audit_data import SHARED


@pytest.fixture
def dif6gen() -> Path:
    root = SHARED / "dif-6gen"
    if not root.is_dir():
        pytest.skip("../shared/data/dif-6gen is not available")
    return root
