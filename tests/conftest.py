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


def write_image_tree(root: Path, subsets=("a", "b"), per_class: int = 8, size: int = 40, seed: int = 0) -> Path:
    """Write ``<root>/<subset>/{0_real,1_fake}/*.png``: noisy reals, 2×-nearest-up-sampled fakes."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for subset in subsets:
        for label in ("0_real", "1_fake"):
            d = root / subset / label
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                if label == "0_real":
                    arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                else:
                    small = rng.integers(0, 256, (size // 2, size // 2, 3), dtype=np.uint8)
                    arr = small.repeat(2, axis=0).repeat(2, axis=1)
                Image.fromarray(arr).save(d / f"{i:03d}.png")
    return root


@pytest.fixture(scope="session")
def make_image_tree():
    """:func:`write_image_tree` for tests that need more than one tree (``from conftest import``
    is ambiguous: every test folder may have a conftest)."""
    return write_image_tree


@pytest.fixture
def image_tree(tmp_path) -> Path:
    """A small labelled tree in the subsets layout (2 subsets × 8 real + 8 fake, 40×40)."""
    return write_image_tree(tmp_path / "data")
