import pytest
import torch


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (pytest -m gpu on a GPU machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def one_thread():
    """Small tensors: one thread is fastest, and threaded BLAS/LAPACK stalls on a shared 2-core box."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pytest_configure(config):
    """Under pytest-xdist each worker gets one intra-op thread: the workers already use the cores,
    and threaded BLAS on an oversubscribed 2-core machine spin-waits (see sptrace.threads)."""
    if hasattr(config, "workerinput"):
        torch.set_num_threads(1)
