import pytest
import torch


@pytest.fixture
def one_thread():
    """Tiny tensors on a shared 2-core machine: one torch thread avoids the thread pool's overhead."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
