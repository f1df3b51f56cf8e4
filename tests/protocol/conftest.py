"""Settings for the benchmark tests: single-threaded torch.

Every model here is tiny; one thread is as fast on an idle machine and many times faster
on a busy one (thread hand-offs dominate tiny convolutions when cores are contended).
"""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
