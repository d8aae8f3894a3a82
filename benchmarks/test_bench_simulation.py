"""Low-dose simulation throughput: lidplug's Fourier projector vs scikit-image radon + iradon.

Run: ``pytest benchmarks/test_bench_simulation.py --benchmark-enable`` (``--benchmark-json=out.json``
to keep the numbers). Groups compare side by side in one process, as ../shared/PERF.md asks:

- ``cpu-512-720views``: one 512 x 512 slice, 720 parallel views, forward projection + ramp FBP:
  ``lidplug`` (projector only), ``lidplug-full`` (the whole ``simulate_low_dose(method="full")``:
  projection, Poisson + electronic noise, log, FBP), the same on one thread, and ``skimage``
  (radon + iradon, float64, the PERF.md anchor of about 5.8 s). Target: lidplug at least 10x
  faster than skimage. On a shared 2-core machine the 2-thread medians swing with the
  neighbours' load (OpenMP teams wait for a busy core); compare minima, or the 1-thread row.
- ``cpu-dataset``: one slice as the phantom dataset draws them (default fan geometry, 1152 views),
  256 x 256 and 128 x 128, per call, plan cached, one thread (as in a DataLoader worker).
- ``cuda-512-720views``: a batch of 32 slices through ``simulate_low_dose`` on the GPU;
  ``extra_info["slices_per_s"]`` is the throughput (target >= 200 slices/s on an H100). Skipped
  without CUDA.
"""

from __future__ import annotations

import math

import pytest
import torch

from lidplug.simulation import get_projector, simulate_low_dose

SIZE, VIEWS, CUDA_BATCH = 512, 720, 32


def _phantom(size: int, batch: int = 1, device: str = "cpu") -> torch.Tensor:
    """Water ellipse with a bone and a lesion insert, 0.7-mm pixels, HU [batch, 1, size, size]."""
    c = (size - 1) / 2
    yy, xx = torch.meshgrid(torch.arange(size) - c, torch.arange(size) - c, indexing="ij")
    body = (xx / (0.45 * size)) ** 2 + (yy / (0.35 * size)) ** 2 <= 1
    hu = torch.where(body, torch.zeros(()), torch.full((), -1000.0))
    hu = torch.where((xx - 0.2 * size) ** 2 + yy**2 <= (0.05 * size) ** 2, 700.0, hu)
    hu = torch.where((xx + 0.2 * size) ** 2 + yy**2 <= (0.05 * size) ** 2, 40.0, hu)
    return hu.expand(batch, 1, size, size).contiguous().to(device)


def _lidplug_projector(hu):
    projector = get_projector(SIZE, SIZE, VIEWS)
    return lambda: projector.fbp(projector.forward(hu[:, 0] * 0.0193))


def _lidplug_full(hu):
    return lambda: simulate_low_dose(hu, 0.25, method="full", geometry="parallel", views=VIEWS,
                                     seed=0)


def _skimage(hu):
    transform = pytest.importorskip("skimage.transform")
    image = (hu[0, 0] * 0.0193).double().numpy()
    theta = [180.0 * v / VIEWS for v in range(VIEWS)]

    def run():
        sinogram = transform.radon(image, theta, circle=False)
        return transform.iradon(sinogram, theta, circle=False, output_size=SIZE)

    return run


CPU_IMPLS = {"lidplug": _lidplug_projector, "lidplug-full": _lidplug_full,
             "lidplug-full-1thread": _lidplug_full, "skimage": _skimage}


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("impl", list(CPU_IMPLS))
def test_cpu_slice_512(benchmark, request, impl):
    if impl.endswith("1thread"):
        # Like scikit-image, on one core; also immune to a neighbour busy on the other one.
        request.getfixturevalue("one_thread")
    run = CPU_IMPLS[impl](_phantom(SIZE))
    run()  # builds and caches the plan outside the timing
    benchmark.group = "cpu-512-720views"
    benchmark.extra_info.update(device="cpu", threads=torch.get_num_threads(),
                                torch=torch.__version__, shape=[1, 1, SIZE, SIZE], views=VIEWS)
    rounds = 3 if impl == "skimage" else 20
    benchmark.pedantic(run, rounds=rounds, warmup_rounds=0 if impl == "skimage" else 2)


@pytest.mark.parametrize("method", ["full", "insert"])
@pytest.mark.parametrize("size", [256, 128])
def test_cpu_dataset_slice(benchmark, one_thread, size, method):
    hu = _phantom(size)
    simulate_low_dose(hu, 0.25, method=method, seed=0)
    benchmark.group = "cpu-dataset"
    benchmark.extra_info.update(device="cpu", threads=1, torch=torch.__version__,
                                shape=[1, 1, size, size], geometry="fan", views=1152)
    benchmark.pedantic(lambda: simulate_low_dose(hu, 0.25, method=method, seed=0), rounds=20,
                       warmup_rounds=2)


@pytest.mark.parametrize("method", ["full", "insert"])
def test_cuda_batch_512(benchmark, method):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    hu = _phantom(SIZE, CUDA_BATCH, "cuda")
    generator = torch.Generator(device="cuda").manual_seed(0)

    def run():
        out = simulate_low_dose(hu, 0.25, method=method, geometry="parallel", views=VIEWS,
                                generator=generator)
        torch.cuda.synchronize()
        return out

    run()
    benchmark.group = "cuda-512-720views"
    benchmark.extra_info.update(device=torch.cuda.get_device_name(), torch=torch.__version__,
                                shape=[CUDA_BATCH, 1, SIZE, SIZE], views=VIEWS)
    benchmark.pedantic(run, rounds=20, warmup_rounds=3)
    median = benchmark.stats.stats.median
    benchmark.extra_info["slices_per_s"] = CUDA_BATCH / median if median > 0 else math.inf
