"""The default I0 meets its stated target (lowdose module doc): 25 HU at quarter dose."""

import math

import pytest
import torch
from sim_phantoms import centre_mask, disk_phantom

from lidplug.simulation import DEFAULT_PIXEL_SPACING_MM, simulate_low_dose


def test_default_i0_gives_target_noise():
    size, spacing = 512, DEFAULT_PIXEL_SPACING_MM
    # The CTDI body phantom: 320-mm water cylinder, defaults everywhere else.
    water = disk_phantom(size, spacing, radius_mm=160.0, inserts=False)
    clean = simulate_low_dose(water, 1.0, method="full", noise=False)
    roi = centre_mask(size, spacing, 25.0)
    batch = water.expand(3, 1, size, size)
    std = {}
    for dose in (1.0, 0.25):
        noise = simulate_low_dose(batch, dose, method="full", seed=0)[:, 0] - clean
        std[dose] = math.sqrt(float(noise[:, roi].pow(2).mean()))
    assert std[0.25] == pytest.approx(25.0, rel=0.08)
    assert std[1.0] == pytest.approx(12.5, rel=0.08)
    # Insertion into the full-dose scan adds the difference: sqrt(25^2 - 12.5^2) = 21.7 HU.
    full_dose = simulate_low_dose(batch, 1.0, method="full", seed=1)
    added = simulate_low_dose(full_dose, 0.25, seed=2)[:, 0] - full_dose[:, 0]
    assert math.sqrt(float(added[:, roi].pow(2).mean())) == pytest.approx(21.7, rel=0.08)
    assert torch.isfinite(added).all()
