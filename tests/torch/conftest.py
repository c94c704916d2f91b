"""tests/torch: one torch intra-op thread while these tests run (tiny tensors; on a shared 2-core
machine torch's default thread pool makes every op wait for busy cores). Restored afterwards, so
other test directories keep torch's default."""
import pytest

try:
    import torch
except ImportError:  # the test modules skip with a visible reason
    torch = None


@pytest.fixture(autouse=True)
def _one_torch_thread():
    if torch is None:
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)
