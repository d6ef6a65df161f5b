"""Test-wide settings."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One intra-op thread per test: the test models are tiny, and on a shared 2-core machine
    OpenMP spinning with 2 threads made them up to 40x slower (an LSTM forward took 10 s with 2
    threads next to a busy process, 0.1 s with one)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
