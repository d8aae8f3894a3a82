"""Physics of simulate_low_dose: reproduction without noise, dose scaling, bias, determinism."""

import math

import pytest
import torch
from sim_phantoms import centre_mask

from lidplug.simulation import simulate_low_dose

GEOMETRIES = ["fan", "parallel"]
# Small images keep the suite fast; views enough for them.
FAST = {"views": 180, "pixel_spacing": 1.5}


def _noise_variance(hu, dose, reference, mask, seeds, **kwargs):
    """Mean squared deviation from ``reference`` inside ``mask``, over several seeds."""
    total = 0.0
    for seed in seeds:
        out = simulate_low_dose(hu, dose, seed=seed, **kwargs)
        total += float(((out - reference)[mask] ** 2).mean())
    return total / len(seeds)


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_full_without_noise_reproduces_input(geometry, phantom96):
    out = simulate_low_dose(phantom96, 1.0, method="full", geometry=geometry, noise=False,
                            views=360, pixel_spacing=1.0)
    assert out.shape == phantom96.shape and out.dtype == phantom96.dtype
    error = out - phantom96
    # FBP error only: about 1% of the 1000 HU water-air step overall, ~1 HU in the water.
    assert float(error.pow(2).mean().sqrt()) < 10.0
    inside = centre_mask(96, 1.0, 10.0)
    assert float(error[inside].abs().max()) < 3.0
    # i0 = inf is the same as noise=False.
    same = simulate_low_dose(phantom96, 1.0, method="full", geometry=geometry, i0=math.inf,
                             views=360, pixel_spacing=1.0)
    assert torch.equal(same, out)


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_insert_at_full_dose_returns_input(geometry, phantom96):
    out = simulate_low_dose(phantom96, 1.0, geometry=geometry, seed=0)
    assert torch.equal(out, phantom96)
    assert out.data_ptr() != phantom96.data_ptr()
    # Per-image doses: the dose-1 image comes back bit for bit, the other one does not.
    batch = torch.stack([phantom96, phantom96])[:, None]
    mixed = simulate_low_dose(batch, torch.tensor([1.0, 0.25]), geometry=geometry, seed=0, **FAST)
    assert torch.equal(mixed[0], batch[0])
    assert not torch.equal(mixed[1], batch[1])


def test_full_noise_scales_as_inverse_sqrt_dose(water64):
    kwargs = {"method": "full", "i0": 2e5, "sigma_e": 0.0, **FAST}
    clean = simulate_low_dose(water64, 1.0, noise=False, **kwargs)
    mask = centre_mask(64, 1.5, 25.0)
    var_full = _noise_variance(water64, 1.0, clean, mask, range(6), **kwargs)
    var_quarter = _noise_variance(water64, 0.25, clean, mask, range(6), **kwargs)
    assert math.sqrt(var_quarter / var_full) == pytest.approx(2.0, rel=0.12)


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_insert_added_variance_scales_as_inverse_dose_minus_one(geometry, water64):
    kwargs = {"i0": 2e5, "sigma_e": 0.0, "geometry": geometry, **FAST}
    mask = centre_mask(64, 1.5, 25.0)
    # Added variance ~ (1/a - 1): 3 at a = 0.25, 1 at a = 0.5, 9 at a = 0.1.
    var_half = _noise_variance(water64, 0.5, water64, mask, range(6), **kwargs)
    var_quarter = _noise_variance(water64, 0.25, water64, mask, range(6), **kwargs)
    var_tenth = _noise_variance(water64, 0.1, water64, mask, range(6), **kwargs)
    assert var_quarter / var_half == pytest.approx(3.0, rel=0.15)
    assert var_tenth / var_half == pytest.approx(9.0, rel=0.15)


def test_insert_matches_full_noise_difference(water64):
    """Noise inserted into a full-dose scan gives the low-dose scan's total noise."""
    kwargs = {"i0": 2e5, **FAST}
    clean = simulate_low_dose(water64, 1.0, method="full", noise=False, **kwargs)
    mask = centre_mask(64, 1.5, 25.0)
    var_full = _noise_variance(water64, 1.0, clean, mask, range(6), method="full", **kwargs)
    var_low = _noise_variance(water64, 0.25, clean, mask, range(6), method="full", **kwargs)
    var_added = _noise_variance(water64, 0.25, water64, mask, range(6), **kwargs)
    assert var_added == pytest.approx(var_low - var_full, rel=0.15)


@pytest.mark.parametrize("method", ["insert", "full"])
def test_mean_hu_is_preserved(method, water64):
    # Low dose with electronic noise; the log's bias stays far below the noise.
    kwargs = {"method": method, "i0": 5e4, "sigma_e": 5.0, **FAST}
    reference = simulate_low_dose(water64, 1.0, noise=False, **kwargs)
    batch = water64.expand(8, 1, 64, 64)
    out = simulate_low_dose(batch, 0.25, seed=3, **kwargs)
    mask = centre_mask(64, 1.5, 30.0)
    noise = out[:, 0][:, mask] - reference[mask]
    assert abs(float(noise.mean())) < 0.1 * float(noise.std())
    assert abs(float(noise.mean())) < 3.0


@pytest.mark.parametrize("method", ["insert", "full"])
def test_same_seed_same_output(method, phantom96):
    kwargs = {"method": method, **FAST}
    a = simulate_low_dose(phantom96, 0.25, seed=7, **kwargs)
    b = simulate_low_dose(phantom96, 0.25, seed=7, **kwargs)
    c = simulate_low_dose(phantom96, 0.25, seed=8, **kwargs)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    d = simulate_low_dose(phantom96, 0.25, generator=torch.Generator().manual_seed(7), **kwargs)
    assert torch.equal(a, d)


def test_shapes_and_batches(phantom96):
    kwargs = {"method": "full", "noise": False, **FAST}
    two_d = simulate_low_dose(phantom96, 0.5, **kwargs)
    three_d = simulate_low_dose(phantom96[None], 0.5, **kwargs)
    batch = torch.stack([phantom96, phantom96.flip(0), phantom96.flip(1)])[:, None]
    four_d = simulate_low_dose(batch, 0.5, **kwargs)
    assert two_d.shape == (96, 96) and three_d.shape == (1, 96, 96)
    assert four_d.shape == (3, 1, 96, 96)
    assert torch.allclose(three_d[0], two_d)
    # Batched images are processed independently (up to float32 summation order).
    assert torch.allclose(four_d[1, 0], simulate_low_dose(phantom96.flip(0), 0.5, **kwargs),
                          atol=1e-2)
    # One pixel size per image.
    spacing = simulate_low_dose(batch, 0.5, method="full", noise=False, views=180,
                                pixel_spacing=[1.5, 1.5, 1.0])
    alone = simulate_low_dose(batch[2, 0], 0.5, method="full", noise=False, views=180,
                              pixel_spacing=1.0)
    assert torch.allclose(spacing[2, 0], alone, atol=1e-2)


def test_dtypes(phantom96):
    for dtype in (torch.float64, torch.float16, torch.bfloat16):
        out = simulate_low_dose(phantom96.to(dtype), 0.5, seed=0, **FAST)
        assert out.dtype == dtype and torch.isfinite(out.float()).all()


def test_fan_noise_is_plausible_against_parallel(water64):
    """Same photons per ray: the rebinned fan has ~2 rays per sample over 360 degrees."""
    mask = centre_mask(64, 1.5, 25.0)
    kwargs = {"method": "full", "i0": 2e5, "sigma_e": 0.0, "pixel_spacing": 1.5}
    clean = simulate_low_dose(water64, 1.0, noise=False, **kwargs)
    fan = _noise_variance(water64, 0.5, clean, mask, range(4), geometry="fan", views=360, **kwargs)
    par = _noise_variance(water64, 0.5, clean, mask, range(4), geometry="parallel", views=180,
                          **kwargs)
    # 360 fan views of 1-pixel channels = 180 parallel views with twice the photons, / cos(gamma).
    assert fan / par == pytest.approx(0.5, rel=0.2)


@pytest.mark.cuda
def test_cuda_matches_cpu(phantom96):
    cpu = simulate_low_dose(phantom96, 0.5, method="full", noise=False, **FAST)
    gpu = simulate_low_dose(phantom96.cuda(), 0.5, method="full", noise=False, **FAST)
    assert gpu.device.type == "cuda"
    assert torch.allclose(gpu.cpu(), cpu, atol=0.05)
    noisy = simulate_low_dose(phantom96.cuda(), 0.25, seed=1, **FAST)
    assert torch.equal(noisy, simulate_low_dose(phantom96.cuda(), 0.25, seed=1, **FAST))
