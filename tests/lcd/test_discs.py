"""Disc finding: the sample's ground truth (as the toolbox measures it), the CCT189 phantom, and
phantoms without discs."""

import math

import numpy as np
import pytest
from lcd_folders import disc_truth

from lidplug.lcd import cct189, find_discs
from lidplug.lcd.layout import read_truth
from lidplug.lcd.phantom import CCT189_DISCS, DEFAULT_PIXEL_MM, DISC_DISTANCE_MM


def test_sample_truth_has_the_four_mita_discs(lcd_sample):
    truth, _ = read_truth(lcd_sample / "fbp" / "ground_truth.mhd", offset=1000)
    discs = find_discs(truth)
    assert [d.contrast_hu for d in discs] == [14.0, 7.0, 5.0, 3.0]
    # The toolbox's sizes and centres on this file (its get_insert_radius, regionprops centroid
    # rounded; checked against its Python code, docs/LCD.md).
    assert [d.diameter_px for d in discs] == [4, 7, 10, 14]
    assert [d.centre for d in discs] == [(94, 160), (95, 95), (160, 95), (160, 160)]
    # Physical diameters 3, 5, 7 and 10 mm at one pixel size (about 0.65 mm in this sample).
    px = [d.equivalent_diameter_px / mm for d, mm in zip(discs, (3, 5, 7, 10), strict=True)]
    assert max(px) / min(px) == pytest.approx(1.0, abs=0.02)
    # All four on one circle around the image centre, on the diagonals.
    radii = [math.hypot(r - 127.5, c - 127.5) for r, c in (d.centre for d in discs)]
    assert max(radii) - min(radii) < 1.5


def test_cct189_discs_have_their_size_contrast_and_place():
    truth = cct189().double().numpy()
    discs = find_discs(truth)
    assert [d.contrast_hu for d in discs] == [14.0, 7.0, 5.0, 3.0]
    centre = (truth.shape[0] - 1) / 2
    for disc, spec in zip(discs, CCT189_DISCS, strict=True):
        assert disc.equivalent_diameter_px * DEFAULT_PIXEL_MM == pytest.approx(
            spec.diameter_mm, abs=0.1)
        row, col = disc.centre
        # rows grow downwards: +y (up) is a smaller row
        angle = math.degrees(math.atan2(centre - row, col - centre)) % 360
        assert angle == pytest.approx(spec.angle_deg, abs=1.5)
        distance = math.hypot(row - centre, col - centre) * DEFAULT_PIXEL_MM
        assert distance == pytest.approx(DISC_DISTANCE_MM, abs=0.5)
        assert disc.diameter_px <= disc.equivalent_diameter_px + 0.5  # the rim is left out


def test_any_contrast_sign_and_no_discs():
    discs = find_discs(disc_truth(contrasts=(-9.0, 6.0)))
    assert [d.contrast_hu for d in discs] == [-9.0, 6.0]
    assert [d.diameter_px for d in discs] == [8, 12]  # radius 4 and 6 about a pixel corner
    assert discs[0].label() == "-9 HU, 8.0 px" and discs[1].label(0.5) == "6 HU, 6.0 mm"
    assert find_discs(disc_truth(contrasts=())) == []


def test_bad_truth():
    with pytest.raises(ValueError, match="only air"):
        find_discs(np.full((32, 32), -1000.0))
    with pytest.raises(ValueError, match=r"finite \[H, W\]"):
        find_discs(np.zeros((2, 32, 32)))
    with pytest.raises(ValueError, match="positive tolerance"):
        find_discs(disc_truth(), tolerance=0)
