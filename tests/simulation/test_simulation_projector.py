"""Projector and FBP against a direct DFT and against scikit-image's radon/iradon."""

import math

import numpy as np
import pytest
import torch

from lidplug.simulation import FILTERS, get_projector
from lidplug.simulation._nufft import NufftPlan, next_smooth


@pytest.fixture
def skimage_transform():
    """scikit-image, the reference (a test-only dependency)."""
    return pytest.importorskip("skimage.transform")


def _relative_rms(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return math.sqrt(((a - b) ** 2).mean() / (b**2).mean())


def _shepp_logan(size):
    data = pytest.importorskip("skimage.data")
    transform = pytest.importorskip("skimage.transform")
    return transform.resize(data.shepp_logan_phantom(), (size, size)).astype(np.float64)


def test_next_smooth():
    assert [next_smooth(n) for n in (1, 7, 11, 97, 128, 1450)] == [1, 8, 12, 100, 128, 1458]


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-3), (torch.float64, 1e-3)])
def test_nufft_matches_direct_dft(dtype, tol):
    # Non-square, odd and even sizes; frequencies anywhere in [-pi, pi]^2.
    g = torch.Generator().manual_seed(0)
    h, w, m = 21, 16, 200
    kx = (torch.rand(m, generator=g, dtype=torch.float64) * 2 - 1) * math.pi
    ky = (torch.rand(m, generator=g, dtype=torch.float64) * 2 - 1) * math.pi
    plan = NufftPlan(h, w, kx, ky, device=torch.device("cpu"), dtype=dtype)
    image = torch.rand(2, h, w, generator=g, dtype=torch.float64)
    oy, ox = plan.origin
    ey = torch.exp(-1j * ky[:, None] * (torch.arange(h) - oy))
    ex = torch.exp(-1j * kx[:, None] * (torch.arange(w) - ox))
    direct = torch.einsum("my,byx,mx->mb", ey, image.to(torch.complex128), ex)
    fast = plan.forward(image.to(dtype)).to(torch.complex128)
    assert ((fast - direct).abs().max() / direct.abs().max()) < tol
    # Type 1 is the adjoint: <A f, a> == <f, Re A^H a> for real f.
    a = torch.randn(m, 2, generator=g, dtype=torch.float64).to(torch.complex128)
    complex_dtype = torch.complex64 if dtype == torch.float32 else torch.complex128
    back = plan.adjoint(a.to(complex_dtype)).double()
    lhs = (direct.conj() * a).sum().real
    rhs = (image * back).sum()
    assert abs(lhs - rhs) / abs(lhs) < tol


def test_forward_matches_skimage_radon(skimage_transform):
    # Odd size with an odd diagonal: scikit-image's centre N // 2 equals our (N - 1) / 2.
    image = _shepp_logan(61)
    theta = np.linspace(0.0, 180.0, 60, endpoint=False)
    reference = skimage_transform.radon(image, theta, circle=False)  # [D, V]
    projector = get_projector(61, 61, 60, reference.shape[0])
    sinogram = projector.forward(torch.tensor(image, dtype=torch.float32)[None])[0]
    # Different discretisations (bilinear rotation vs band-limited interpolation): a few %.
    assert _relative_rms(sinogram.T, reference) < 0.03
    # Axis-aligned views are plain column/row sums in both.
    assert np.allclose(sinogram[0].numpy(), reference[:, 0], atol=1e-2 * reference.max())


@pytest.mark.parametrize("filter_name", ["ramp", "hann"])
def test_fbp_matches_skimage_iradon(skimage_transform, filter_name):
    image = _shepp_logan(61)
    theta = np.linspace(0.0, 180.0, 90, endpoint=False)
    sinogram = skimage_transform.radon(image, theta, circle=False)
    reference = skimage_transform.iradon(sinogram, theta, circle=False, output_size=61,
                                         filter_name=filter_name)
    projector = get_projector(61, 61, 90, sinogram.shape[0])
    ours = projector.fbp(torch.tensor(sinogram.T, dtype=torch.float32)[None], filter_name)[0]
    assert _relative_rms(ours, reference) < 0.1
    assert abs(float(ours.mean()) - reference.mean()) < 1e-3


def test_round_trip_beats_skimage(skimage_transform):
    image = _shepp_logan(129)
    theta = np.linspace(0.0, 180.0, 360, endpoint=False)
    sk = skimage_transform.iradon(skimage_transform.radon(image, theta, circle=False), theta,
                                  circle=False, output_size=129)
    projector = get_projector(129, 129, 360)
    ours = projector.fbp(projector.forward(torch.tensor(image, dtype=torch.float32)[None]))[0]
    err_ours, err_sk = _relative_rms(ours, image), _relative_rms(sk, image)
    assert err_ours < 0.05
    assert err_ours < err_sk
    assert abs(float(ours.mean()) - image.mean()) < 1e-3


def test_non_square_batch_and_float64():
    g = torch.Generator().manual_seed(1)
    # A smooth random field (white noise has 21% of its energy beyond the detector's band).
    noise = torch.rand(3, 1, 40, 56, generator=g, dtype=torch.float64)
    image = torch.nn.functional.avg_pool2d(noise, 5, 1, 2, count_include_pad=False)[:, 0]
    image[:, :4], image[:, -4:], image[:, :, :4], image[:, :, -4:] = 0, 0, 0, 0
    projector = get_projector(40, 56, 120, dtype=torch.float64)
    sinogram = projector.forward(image)
    assert sinogram.shape == (3, 120, math.ceil(math.hypot(40, 56)))
    assert sinogram.dtype == torch.float64
    # Every view of a projection integrates the same total mass.
    # (Up to the band-limited interpolant's ripple beyond the detector: white noise rings.)
    assert torch.allclose(sinogram.sum(-1), image.sum((-2, -1))[:, None].expand(3, 120),
                          rtol=1e-3)
    single = projector.forward(image[1:2])
    assert torch.allclose(single, sinogram[1:2], atol=1e-10)
    recon = projector.fbp(sinogram)
    assert recon.shape == image.shape
    assert _relative_rms(recon[:, 6:-6, 6:-6], image[:, 6:-6, 6:-6]) < 0.1


def test_projector_cache_and_filters():
    assert get_projector(32, 32, 30) is get_projector(32, 32, 30, device="cpu")
    assert get_projector(32, 32, 30) is not get_projector(32, 32, 31)
    projector = get_projector(32, 32, 30)
    sinogram = torch.ones(1, 30, projector.bins)
    for name in FILTERS:
        assert torch.isfinite(projector.fbp(sinogram, name)).all()
    with pytest.raises(ValueError, match="filter_name: expected one of"):
        projector.fbp(sinogram, "lanczos")


@pytest.mark.cuda
def test_cuda_matches_cpu():
    image = torch.tensor(_shepp_logan(64), dtype=torch.float32)[None]
    cpu = get_projector(64, 64, 90)
    gpu = get_projector(64, 64, 90, device="cuda")
    assert torch.allclose(gpu.forward(image.cuda()).cpu(), cpu.forward(image), atol=1e-3)
    assert torch.allclose(gpu.fbp(gpu.forward(image.cuda())).cpu(),
                          cpu.fbp(cpu.forward(image)), atol=1e-3)
