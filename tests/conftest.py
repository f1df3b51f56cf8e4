"""Suite-wide settings: no network, few threads, deterministic seeds."""

import os

# No test may reach the network: transformers and the hub stay offline.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def shared_data() -> Path:
    """The development image sets beside the repository; skipped when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present (it never is on a user's clone)")
    return SHARED_DATA
