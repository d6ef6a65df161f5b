"""The audio tests are tiny: one torch thread each avoids oversubscription on shared machines
(an LSTM forward took 10 s with 2 threads next to a busy process, 0.1 s with one)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
