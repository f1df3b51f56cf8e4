"""One torch thread for these small models: on a shared, busy CPU two OpenMP threads wait on
each other and a 32-pixel training step goes from ~50 ms to seconds (measured)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
