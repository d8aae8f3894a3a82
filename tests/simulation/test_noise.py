"""The noise level of an image, and the photon count that gives a scan the right low-dose noise."""

import math

import pytest
import torch

from lidplug.simulation import calibrate_i0, noise_level, simulate_low_dose


def _cylinder(size=256, spacing=1.2):
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    r = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2).sqrt() * spacing
    return torch.where(r < 110, torch.tensor(40.0), torch.tensor(-1000.0))


def test_noise_level_of_white_noise_in_soft_tissue():
    g = torch.Generator().manual_seed(0)
    hu = _cylinder() + 12.0 * torch.randn(256, 256, generator=g)
    assert noise_level(hu, 1.2) == pytest.approx(12.0, rel=0.08)
    assert noise_level(torch.full((256, 256), -1000.0), 1.2) != noise_level(hu, 1.2)
    assert math.isnan(noise_level(torch.full((256, 256), -1000.0), 1.2))  # no soft tissue


def test_calibrated_dose_gives_the_low_dose_noise_of_the_scan():
    g = torch.Generator().manual_seed(1)
    own = 10.0
    slices = torch.stack([_cylinder() + own * torch.randn(256, 256, generator=g)
                          for _ in range(2)])
    for dose in (0.25, 0.1):
        cal = calibrate_i0(slices, 1.2, dose)
        assert cal.noise_hu == pytest.approx(own, rel=0.1)
        low = simulate_low_dose(slices[0][None], dose, i0=cal.i0, pixel_spacing=1.2, seed=5)[0]
        # Noise grows as 1 / sqrt(dose): the simulated image carries the scan's own noise too.
        assert noise_level(low, 1.2) == pytest.approx(own / math.sqrt(dose), rel=0.12)
    # The exposure of each slice scales the photons it gets.
    cal = calibrate_i0(slices, 1.2, 0.25, exposure=[100.0, 100.0])
    assert cal.i0_for(200.0) == pytest.approx(2 * cal.i0)
    assert cal.i0_for(None) == cal.i0
    with pytest.raises(ValueError, match=r"dose: expected a fraction in \(0, 1\)"):
        calibrate_i0(slices, 1.2, 1.0)
    with pytest.raises(ValueError, match="soft tissue"):
        calibrate_i0(torch.full((1, 64, 64), -1000.0), 1.2, 0.25)
