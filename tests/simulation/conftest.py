import pytest
import torch
from sim_phantoms import disk_phantom


@pytest.fixture(autouse=True)
def _one_thread():
    """These tests use small tensors: one intra-op thread is faster and immune to a busy core
    (a 2-thread OpenMP team on a shared 2-core machine can be 100x slower per small op)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def water64():
    """64 x 64 water disk, 1.5 mm pixels (radius 40 mm), no inserts: a uniform region."""
    return disk_phantom(64, 1.5, radius_mm=40.0, inserts=False)


@pytest.fixture
def phantom96():
    """96 x 96 blurred phantom with bone and lesion inserts, 1 mm pixels."""
    return disk_phantom(96, 1.0, radius_mm=40.0, blur=True)
