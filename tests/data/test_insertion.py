"""Lesion insertion on a synthetic chest slice: where lesions go, and what they change."""

import numpy as np
import pytest
import torch

from lidplug.data.insertion import insert, placements, resample_signal, site_mask

SPACING = (0.8, 0.8)


def _chest(size=160):
    """A body of soft tissue (40 HU) in air (-1000) with two lungs (-850) and a vessel."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    hu = torch.full((size, size), -1000.0)
    hu[((yy - 80) / 70) ** 2 + ((xx - 80) / 75) ** 2 <= 1] = 40.0
    for cx in (48, 112):
        hu[((yy - 80) / 45) ** 2 + ((xx - cx) / 25) ** 2 <= 1] = -850.0
    hu[78:82, 40:56] = 30.0  # a vessel in the left lung
    return hu


def _nodule(radius=4, contrast=120.0):
    r = torch.arange(-radius, radius + 1, dtype=torch.float32)
    d = (r[:, None] ** 2 + r[None, :] ** 2).sqrt()
    mask = d <= radius
    return torch.where(mask, contrast * (1 - 0.3 * d / radius), torch.zeros(())), mask


def test_lung_site_leaves_out_the_air_around_the_patient_and_the_soft_tissue():
    hu = _chest()
    lung = site_mask(hu, SPACING, "lung")
    assert lung.dtype == torch.bool and lung.shape == hu.shape
    assert not lung[hu == -1000].any()  # the air outside the patient
    assert not lung[hu == 40].any()
    assert lung[80, 112] and lung[60, 48]
    soft = site_mask(hu, SPACING, "soft_tissue")
    assert soft[80, 80] and not soft[80, 112]
    with pytest.raises(ValueError, match="site: expected one of"):
        site_mask(hu, SPACING, "bone")


def test_insertion_adds_the_signal_inside_the_mask_and_nothing_outside():
    hu = _chest()
    signal, mask = _nodule()
    rng = np.random.default_rng(0)
    placed = placements([(signal, mask)] * 3, site_mask(hu, SPACING), rng)
    assert all(p is not None for p in placed)
    hybrid, inserted, labels = insert(hu, placed)
    assert torch.equal(hybrid[labels == 0], hu[labels == 0])  # background untouched
    for k, p in enumerate(placed, start=1):
        region = labels[p.rows, p.cols]
        assert torch.equal(region == k, mask)
        # The nodule's HU profile on top of the background (float32 rounding at -850 HU)
        added = (hybrid - hu)[p.rows, p.cols][mask]
        assert torch.allclose(added, signal[mask], rtol=0, atol=1e-3)
        assert torch.equal(inserted[p.rows, p.cols][mask], signal[mask])
    # Every lesion sits wholly in lung, clear of the others
    lung = site_mask(hu, SPACING)
    assert lung[labels > 0].all()
    assert len(torch.unique(labels)) == 4


def test_a_lesion_that_fits_nowhere_is_not_placed():
    hu = _chest()
    big = _nodule(radius=40)
    small = _nodule(radius=2)
    placed = placements([big, small], site_mask(hu, SPACING), np.random.default_rng(1))
    assert placed[0] is None and placed[1] is not None


def test_resampling_keeps_the_contrast_and_crops_to_the_mask():
    signal, mask = _nodule(radius=8, contrast=100.0)
    same_s, same_m = resample_signal(signal, mask, (0.7, 0.7), (0.7, 0.7))
    assert torch.equal(same_s, signal) and torch.equal(same_m, mask)
    finer_s, finer_m = resample_signal(signal, mask, (0.7, 0.7), (0.5, 0.5))
    assert finer_m.shape[0] > mask.shape[0]
    assert finer_m[0].any() and finer_m[-1].any() and finer_m[:, 0].any()  # cut to its box
    area_mm2 = float(finer_m.sum()) * 0.25
    assert area_mm2 == pytest.approx(float(mask.sum()) * 0.49, rel=0.1)
    assert float(finer_s[finer_m].mean()) == pytest.approx(float(signal[mask].mean()), rel=0.05)
    assert (finer_s[~finer_m] == 0).all()
