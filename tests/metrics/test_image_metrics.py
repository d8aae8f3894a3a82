"""PSNR / SSIM / RMSE on HU: known values, window clipping, scikit-image agreement, masks, the
body mask, bad input."""

import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from lidplug.data.phantom import Tissue, generate_phantom
from lidplug.metrics import (
    FULL_WINDOW,
    SOFT_TISSUE_WINDOW,
    body_mask,
    image_quality,
    psnr,
    rmse_hu,
    ssim,
)


def phantom(size=64, seed=0):
    """An ellipse of soft tissue with a low-contrast lesion in air, plus a noisy copy (HU)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size * 1.0), torch.arange(size * 1.0), indexing="ij")
    c = size / 2
    body = ((xx - c) / (0.4 * size)) ** 2 + ((yy - c) / (0.3 * size)) ** 2 < 1
    lesion = (xx - c - 4) ** 2 + (yy - c) ** 2 < (size / 10) ** 2
    clean = -1000.0 + 1040.0 * body + 30.0 * lesion
    noisy = clean + 40.0 * torch.randn(size, size, generator=g)
    return noisy[None, None], clean[None, None]


def test_constant_offset_gives_known_rmse_and_psnr():
    target = torch.full((2, 1, 16, 16), 40.0)
    pred = target + 16.0
    assert rmse_hu(pred, target).tolist() == [16.0, 16.0]
    assert psnr(pred, target).tolist() == pytest.approx([20 * math.log10(4096 / 16)] * 2)
    assert psnr(pred, target, data_range=1000.0)[0].item() == pytest.approx(
        20 * math.log10(1000 / 16)
    )
    soft = psnr(pred, target, window=SOFT_TISSUE_WINDOW)[0].item()
    assert soft == pytest.approx(20 * math.log10(400 / 16))


def test_values_outside_the_window_are_clipped():
    target = torch.full((1, 1, 12, 12), -1024.0)
    pred = target.clone()
    pred[..., :6, :] = -3024.0  # outside-field-of-view padding: invisible through the window
    assert rmse_hu(pred, target).item() == 0.0
    assert psnr(pred, target).item() == math.inf
    assert ssim(pred, target).item() == pytest.approx(1.0)
    assert rmse_hu(pred, target, window=None).item() == pytest.approx(2000 / math.sqrt(2))


def test_identical_images():
    noisy, _ = phantom()
    q = image_quality(noisy, noisy)
    assert q["psnr"].item() == math.inf
    assert q["rmse_hu"].item() == 0.0
    assert q["ssim"].item() == pytest.approx(1.0)


@pytest.mark.parametrize("window", [FULL_WINDOW, SOFT_TISSUE_WINDOW])
@pytest.mark.parametrize("size", [11, 64])
def test_ssim_equals_scikit_image(window, size):
    noisy, clean = phantom(size)
    lo, hi = window

    def display(x):
        return ((x.clamp(lo, hi) - lo) / (hi - lo))[0, 0].double().numpy()

    expected = structural_similarity(
        display(noisy), display(clean), data_range=1.0, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False,
    )
    assert ssim(noisy, clean, window=window).item() == pytest.approx(expected, abs=1e-7)


def test_per_image_values_and_accepted_shapes():
    noisy, clean = phantom()
    batch_pred = torch.cat([noisy, clean])
    batch_target = torch.cat([clean, clean])
    for fn in (psnr, ssim, rmse_hu):
        values = fn(batch_pred, batch_target)
        assert values.shape == (2,) and values.dtype == torch.float64
        assert fn(noisy[0], clean[0]).item() == pytest.approx(values[0].item())
        assert fn(noisy[0, 0], clean[0, 0]).item() == pytest.approx(values[0].item())
    assert ssim(batch_pred, batch_target)[0] < 1.0 < psnr(batch_pred, batch_target)[1]


def test_ssim_symmetric_and_monotone_in_noise():
    _, clean = phantom()
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(clean.shape, generator=g)
    a, b = clean + 20 * noise, clean + 80 * noise
    assert ssim(a, clean).item() == pytest.approx(ssim(clean, a).item())
    assert ssim(a, clean) > ssim(b, clean)
    assert psnr(a, clean) > psnr(b, clean)
    assert rmse_hu(a, clean) < rmse_hu(b, clean)


def test_integer_hu_is_accepted():
    noisy, clean = phantom()
    np.testing.assert_allclose(
        rmse_hu(noisy.round().short(), clean.short()).numpy(),
        rmse_hu(noisy.round(), clean).numpy(),
    )


@pytest.mark.parametrize(
    ("fn", "args", "kwargs", "error", "message"),
    [
        (psnr, (torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 9)), {}, ValueError,
         "same shape, got"),
        (rmse_hu, (torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 8, 8)), {}, ValueError,
         r"expected images \[B, 1, H, W\]"),
        (rmse_hu, (torch.zeros(8, 8, dtype=torch.bool),) * 2, {}, TypeError, "real-valued"),
        (rmse_hu, ([[0.0]], [[0.0]]), {}, TypeError, "to be a Tensor, got list"),
        (psnr, (torch.zeros(8, 8), torch.zeros(8, 8)), {"window": (100, -100)}, ValueError,
         "lo < hi"),
        (psnr, (torch.zeros(8, 8), torch.zeros(8, 8)), {"data_range": 0.0}, ValueError,
         "positive finite data_range"),
        (ssim, (torch.zeros(8, 8), torch.zeros(8, 8)), {}, ValueError, r"H, W >= 11, got \(8, 8\)"),
        (rmse_hu, (torch.full((4, 4), math.nan), torch.zeros(4, 4)), {}, ValueError, "finite"),
        (ssim, (torch.zeros(12, 12), torch.zeros(12, 12)), {"window": 5}, TypeError,
         r"expected window=\(lo, hi\)"),
    ],
)
def test_bad_input(fn, args, kwargs, error, message):
    with pytest.raises(error, match=message):
        fn(*args, **kwargs)


def test_masked_metrics_use_only_the_masked_pixels():
    noisy, clean = phantom()
    mask = torch.zeros(noisy.shape, dtype=torch.bool)
    mask[..., 20:40, 10:50] = True
    err = (noisy.clamp(*FULL_WINDOW) - clean)[mask]
    assert rmse_hu(noisy, clean, mask=mask).item() == pytest.approx(err.square().mean().sqrt())
    raw = (noisy - clean)[mask].square().mean().sqrt()
    assert rmse_hu(noisy, clean, mask=mask, window=None).item() == pytest.approx(raw)
    assert psnr(noisy, clean, mask=mask).item() == pytest.approx(
        10 * math.log10(4096**2 / err.square().mean().item())
    )
    everywhere = torch.ones_like(mask)
    for fn in (rmse_hu, psnr, ssim):
        assert fn(noisy, clean, mask=everywhere).item() == pytest.approx(fn(noisy, clean).item())
    q = image_quality(noisy, clean, mask=mask)
    assert q["rmse_hu"].item() == rmse_hu(noisy, clean, mask=mask).item()
    assert q["ssim"].item() != pytest.approx(ssim(noisy, clean).item())
    # One value per image, also for [H, W] input with an [H, W] mask.
    assert rmse_hu(noisy[0, 0], clean[0, 0], mask=mask[0, 0]).shape == (1,)


def test_rmse_inside_the_body_ignores_the_air():
    noisy, clean = phantom()
    body = body_mask(clean)
    outside = noisy.clone()
    outside[~body] += 500.0  # errors in the air around the body are not counted
    assert rmse_hu(outside, clean, mask=body).item() == pytest.approx(
        rmse_hu(noisy, clean, mask=body).item()
    )


def test_body_mask_fills_holes_and_keeps_the_largest_component():
    size = 64
    yy, xx = torch.meshgrid(torch.arange(size * 1.0), torch.arange(size * 1.0), indexing="ij")
    disc = (xx - 30) ** 2 + (yy - 32) ** 2 < 20**2
    lung = (xx - 25) ** 2 + (yy - 32) ** 2 < 6**2
    blob = (xx - 58) ** 2 + (yy - 5) ** 2 < 3**2  # a table or stray object: dropped
    hu = torch.full((size, size), -1000.0)
    hu[disc] = 40.0
    hu[lung] = -850.0
    hu[blob] = 200.0
    hu += 10 * torch.randn(size, size, generator=torch.Generator().manual_seed(0))
    mask = body_mask(hu)
    assert mask.dtype == torch.bool and mask.shape == (size, size)
    assert torch.equal(mask, disc)
    batch = body_mask(torch.stack([hu, torch.full_like(hu, -1000.0)])[:, None])
    assert batch.shape == (2, 1, size, size)
    assert torch.equal(batch[0, 0], disc) and not batch[1].any()


def test_body_mask_of_a_phantom_is_its_body():
    p = generate_phantom(0, size=128, num_lesions=1)
    body = p.tissue != Tissue.AIR
    mask = body_mask(p.hu[None, None])[0, 0]
    assert (mask != body).float().mean() < 0.01  # the skin's partial-volume edge


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"mask": torch.ones(1, 1, 8, 8)}, TypeError, "bool Tensor mask"),
        ({"mask": torch.ones(1, 1, 8, 7, dtype=torch.bool)}, ValueError, "images' shape"),
        ({"mask": torch.zeros(1, 1, 8, 8, dtype=torch.bool)}, ValueError, r"none in \[0\]"),
    ],
)
def test_bad_mask(kwargs, error, message):
    with pytest.raises(error, match=message):
        rmse_hu(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8), **kwargs)


def test_bad_body_mask_input():
    with pytest.raises(ValueError, match="finite threshold"):
        body_mask(torch.zeros(8, 8), threshold=math.nan)
    with pytest.raises(TypeError, match="real-valued"):
        body_mask(torch.zeros(8, 8, dtype=torch.bool))
