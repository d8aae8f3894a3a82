"""Input validation: every error names what was expected and what came."""

import math

import pytest
import torch

from lidplug.simulation import simulate_low_dose
from lidplug.simulation.geometry import acquisition

IMAGE = torch.zeros(32, 32)


@pytest.mark.parametrize("hu,error,match", [
    ([[0.0]], TypeError, "hu: expected a torch.Tensor, got list"),
    (torch.zeros(32, 32, dtype=torch.int16), TypeError, "floating-point tensor"),
    (torch.zeros(2, 32, 32), ValueError, r"expected shape \[H, W\].*got \[2, 32, 32\]"),
    (torch.zeros(2, 3, 32, 32), ValueError, r"got \[2, 3, 32, 32\]"),
    (torch.zeros(32), ValueError, r"got \[32\]"),
    (torch.zeros(4, 32), ValueError, r"H, W >= 8"),
    (torch.full((32, 32), math.nan), ValueError, "finite values"),
    (torch.full((32, 32), math.inf), ValueError, "finite values"),
])
def test_bad_images(hu, error, match):
    with pytest.raises(error, match=match):
        simulate_low_dose(hu, 0.5)


@pytest.mark.parametrize("dose,error,match", [
    (0.0, ValueError, r"dose: expected values in \(0.0, 1.0\], got 0.0"),
    (1.5, ValueError, r"got 1.5"),
    (1e-300, ValueError, r"got 1e-300"),  # as given: float32 would say 0.0
    (-0.1, ValueError, "dose: expected values in"),
    (math.nan, ValueError, "dose: expected values in"),
    ("half", TypeError, "dose: expected a number or one number per image, got str"),
    (True, TypeError, "got bool"),
    ([0.5, 0.5], ValueError, r"dose: expected 1 or 1 values \(one per image\), got 2"),
])
def test_bad_doses(dose, error, match):
    with pytest.raises(error, match=match):
        simulate_low_dose(IMAGE, dose)


@pytest.mark.parametrize("kwargs,error,match", [
    ({"method": "poisson"}, ValueError, r"method: expected one of \('insert', 'full'\)"),
    ({"geometry": "cone"}, ValueError, "geometry: expected one of"),
    ({"filter_name": "lanczos"}, ValueError, "filter_name: expected one of"),
    ({"i0": 0.0}, ValueError, "i0: expected a number > 0, got 0.0"),
    ({"i0": -1.0}, ValueError, "i0: expected"),
    ({"i0": "1e5"}, TypeError, "i0: expected a number, got str"),
    ({"sigma_e": -1.0}, ValueError, "sigma_e: expected a finite number >= 0, got -1.0"),
    ({"sigma_e": math.inf}, ValueError, "sigma_e: expected a finite number"),
    ({"pixel_spacing": 0.0}, ValueError, r"pixel_spacing: expected values in \(0.0, inf\)"),
    ({"pixel_spacing": math.inf}, ValueError, "pixel_spacing: expected values in"),
    ({"views": 1}, ValueError, "views: expected an int >= 2, got 1"),
    ({"views": 90.0}, TypeError, "views: expected an int, got float"),
    ({"geometry": "parallel", "detector_bins": 20}, ValueError,
     r"detector_bins: expected an int >= 46 \(the image diagonal\), got 20"),
    ({"detector_pitch_mm": 5.0, "detector_bins": 4}, ValueError,
     r"detector_bins: expected an int >= \d+ \(channels to span the image\), got 4"),
    ({"source_isocenter_mm": 10.0}, ValueError,
     "source_isocenter_mm: expected more than the image's half-diagonal"),
    ({"source_detector_mm": 500.0}, ValueError,
     "source_detector_mm: expected more than source_isocenter_mm"),
    ({"mu_water": 0.0}, ValueError, "mu_water: expected a finite number > 0"),
    ({"seed": 1, "generator": torch.Generator()}, ValueError, "at most one of them, got both"),
    ({"seed": 1.5}, TypeError, "seed: expected an int, got float"),
    ({"generator": 3}, TypeError, "generator: expected a torch.Generator, got int"),
])
def test_bad_parameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        simulate_low_dose(IMAGE, 0.5, **kwargs)


def test_fan_rays_per_sample():
    spacing = torch.tensor([1.0, 0.5], dtype=torch.float64)
    scan = acquisition("fan", 64, 64, spacing, views=360, detector_bins=None,
                       source_isocenter_mm=595.0, source_detector_mm=1085.6,
                       detector_pitch_mm=None)
    assert (scan.views, scan.bins) == (180, 91)
    # Channels at one-pixel pitch at isocentre: n(s) = 2 / cos(gamma) (a little less: ceil).
    s = (torch.arange(91, dtype=torch.float64) - 45) * spacing[:, None]
    expected = 2 / torch.sqrt(1 - (s / 595.0) ** 2)
    assert scan.rays.shape == (2, 1, 91)
    assert torch.allclose(scan.rays[:, 0], expected, rtol=0.02)
    parallel = acquisition("parallel", 64, 64, spacing, views=None, detector_bins=None,
                           source_isocenter_mm=595.0, source_detector_mm=1085.6,
                           detector_pitch_mm=None)
    assert (parallel.views, parallel.bins) == (720, 91)
    assert torch.equal(parallel.rays, torch.ones(2, 1, 91, dtype=torch.float64))
