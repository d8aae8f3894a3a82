"""Image-quality metrics on HU images: PSNR, SSIM and RMSE, one value per image.

Papers on low-dose CT disagree on how these are computed (PSNR over the full 12-bit range, over a
soft-tissue display window, over ``[0, 1]`` after some normalisation, or with the target's own
max), so the choice here is explicit and the same for all three metrics:

* **Inputs** are in Hounsfield units, ``[B, 1, H, W]`` (``[1, H, W]`` and ``[H, W]`` count as one
  image). Every function returns ``Tensor[B]`` float64, one value per image, ready for
  :func:`lidplug.metrics.bootstrap_mean`.
* **Window** ``(lo, hi)`` in HU, default :data:`FULL_WINDOW` = ``(-1024, 3072)``, the window the
  models see (:class:`lidplug.data.HUWindow`). Both images are **clipped to the window** first,
  so values a reader would not see through it (outside-field-of-view padding at -2048 or -3024,
  metal above 3072) neither add nor hide error. :data:`SOFT_TISSUE_WINDOW` (W400/L40) is the
  usual abdominal display window; pass it for metrics that focus on soft-tissue contrast.
* **PSNR** = ``10 log10(R**2 / MSE)`` with data range ``R = hi - lo`` (4096 HU by default; pass
  ``data_range`` to override). Identical images give ``inf``. Numbers computed with different
  windows or ranges are not comparable: the soft-tissue window gives much lower PSNR than the full
  range for the same images.
* **RMSE** in HU over the clipped images (``window=None``: no clipping, raw HU).
* **Mask** (optional, ``bool [B, 1, H, W]``, same shape as the images): PSNR and RMSE take the
  MSE over the masked pixels only, and SSIM averages its map over the masked pixels that are at
  least 5 pixels from the border; still one value per image. The protocol's RMSE is inside the
  body (:func:`body_mask`): the air around the patient is a large, easy part of the image and
  dilutes every difference. An image whose mask selects no pixel is an error, not a NaN.
* **Body mask** (:func:`body_mask`): pixels above a threshold (-500 HU: lungs at about -850 and
  bowel gas fall below it, every soft tissue above), holes filled, then the largest
  8-connected component kept (the patient, not the table or a stray blob). All by
  ``scipy.ndimage`` (``binary_fill_holes``, ``label``) on the CPU.
* **SSIM**: the Wang et al. 2004 definition with their parameters (Gaussian window sigma 1.5,
  11x11; K1 = 0.01, K2 = 0.03; population covariances), on the images mapped to ``[0, 1]`` by the
  window (data range 1), averaged over the pixels at least 5 pixels from the border (where the
  whole window fits). SSIM's luminance term is not shift-invariant, so the origin matters: here 0
  is the bottom of the window, as on a display. The value equals scikit-image's
  ``structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
  data_range=1)`` and torchmetrics' ``structural_similarity_index_measure`` map over the same
  pixels (the tests hold all three equal). The map is computed here, by the Gaussian window's
  two 1-D passes over the pixels where it fits: torchmetrics convolves with the 11 x 11 kernel
  at once, which in float64 on a CPU unfolds 121 taps per pixel (26 GB for 21 slices of 512^2,
  0.8 s a slice), while the separable passes need 11 taps each and give the same numbers
  (within float64 rounding).

PSNR and RMSE are written here rather than taken from a library: both are one line on top of the
same per-image MSE (accumulated in float64), which keeps them consistent with each other.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import Tensor

from lidplug.data.transforms import HU_MAX, HU_MIN, SOFT_TISSUE_HU

__all__ = [
    "FULL_WINDOW",
    "SOFT_TISSUE_WINDOW",
    "body_mask",
    "image_quality",
    "psnr",
    "rmse_hu",
    "ssim",
]

FULL_WINDOW: tuple[float, float] = (HU_MIN, HU_MAX)
"""The models' window, ``(-1024, 3072)`` HU: the default for every metric here."""

SOFT_TISSUE_WINDOW: tuple[float, float] = SOFT_TISSUE_HU
"""Abdominal soft-tissue display window (width 400, level 40 HU)."""

# Gaussian sigma of Wang et al. 2004; torchmetrics (like scikit-image) truncates the kernel at
# 3.5 sigma, which makes it 11 x 11.
_SSIM_SIGMA = 1.5
_SSIM_WINDOW = 11
_SSIM_CHUNK = 16  # images per pass: bounds the temporaries (about 40 MB a 512^2 image)


def _as_batch(pred: Tensor, target: Tensor, name: str) -> tuple[Tensor, Tensor]:
    """Check a pair of HU images and return them as float64 ``[B, 1, H, W]``."""
    for label, t in (("pred", pred), ("target", target)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name}: expected {label} to be a Tensor, got {type(t).__name__}")
        if t.dtype == torch.bool or t.is_complex():
            raise TypeError(f"{name}: expected real-valued {label} (HU), got {t.dtype}")
    if pred.shape != target.shape:
        raise ValueError(
            f"{name}: expected pred and target of the same shape, got {tuple(pred.shape)} and "
            f"{tuple(target.shape)}"
        )
    shape = tuple(pred.shape)
    if pred.dim() == 2:
        pred, target = pred[None, None], target[None, None]
    elif pred.dim() == 3 and shape[0] == 1:
        pred, target = pred[None], target[None]
    elif not (pred.dim() == 4 and shape[1] == 1):
        raise ValueError(f"{name}: expected images [B, 1, H, W], [1, H, W] or [H, W], got {shape}")
    if not (torch.isfinite(pred).all() and torch.isfinite(target).all()):
        raise ValueError(f"{name}: expected finite HU values, got NaN or inf")
    return pred.double(), target.double()


def _check_window(window: tuple[float, float], name: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in window)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected window=(lo, hi) in HU, got {window!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"{name}: expected a window (lo, hi) with lo < hi, got {window!r}")
    return lo, hi


def _as_mask(mask: Tensor | None, image: Tensor, batch: Tensor, name: str) -> Tensor | None:
    """Check a mask against the image it belongs to (as given) and return it as ``[B, 1, H, W]``."""
    if mask is None:
        return None
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        got = mask.dtype if isinstance(mask, Tensor) else type(mask).__name__
        raise TypeError(f"{name}: expected a bool Tensor mask, got {got}")
    if mask.shape != image.shape:
        raise ValueError(
            f"{name}: expected a mask of the images' shape {tuple(image.shape)}, got "
            f"{tuple(mask.shape)}"
        )
    return mask.reshape(batch.shape).to(batch.device)


def _masked_mean(values: Tensor, mask: Tensor | None, name: str) -> Tensor:
    """Per-image mean of ``values [B, 1, H, W]`` over ``mask`` (all pixels when None)."""
    if mask is None:
        return values.flatten(1).mean(dim=1)
    counts = mask.flatten(1).sum(dim=1)
    if (counts == 0).any():
        empty = torch.nonzero(counts == 0).flatten().tolist()
        raise ValueError(f"{name}: expected a mask with pixels in every image, got none in {empty}")
    return torch.where(mask, values, 0.0).flatten(1).sum(dim=1) / counts


def _mse(
    pred: Tensor,
    target: Tensor,
    window: tuple[float, float] | None,
    name: str,
    mask: Tensor | None = None,
) -> Tensor:
    """Per-image mean squared error in HU^2 (float64) over ``mask``, after clipping both."""
    p, t = _as_batch(pred, target, name)
    m = _as_mask(mask, pred, p, name)
    if window is not None:
        lo, hi = _check_window(window, name)
        p, t = p.clamp(lo, hi), t.clamp(lo, hi)
    return _masked_mean((p - t).square(), m, name)


def rmse_hu(
    pred: Tensor,
    target: Tensor,
    *,
    window: tuple[float, float] | None = FULL_WINDOW,
    mask: Tensor | None = None,
) -> Tensor:
    """Root mean squared error in HU, one value per image.

    Args:
        pred: denoised images in HU, ``[B, 1, H, W]`` (or ``[1, H, W]``, ``[H, W]``).
        target: reference (normal-dose) images in HU, same shape.
        window: ``(lo, hi)`` HU both images are clipped to first; ``None`` for raw HU.
        mask: optional bool mask of the images' shape (e.g. :func:`body_mask`); the RMSE is
            then over the masked pixels only.

    Returns:
        Tensor[B] float64, in HU.

    Raises:
        TypeError, ValueError: on non-real inputs, mismatched or unsupported shapes, non-finite
            values, a bad window, or a mask that is not bool, not shaped like the images, or
            empty in some image.
    """
    return _mse(pred, target, window, "rmse_hu", mask).sqrt()


def psnr(
    pred: Tensor,
    target: Tensor,
    *,
    window: tuple[float, float] = FULL_WINDOW,
    data_range: float | None = None,
    mask: Tensor | None = None,
) -> Tensor:
    """Peak signal-to-noise ratio in dB, one value per image.

    Args:
        pred: denoised images in HU, ``[B, 1, H, W]`` (or ``[1, H, W]``, ``[H, W]``).
        target: reference images in HU, same shape.
        window: ``(lo, hi)`` HU both images are clipped to first.
        data_range: the peak ``R`` in HU; defaults to the window width ``hi - lo``.
        mask: optional bool mask of the images' shape; the MSE is over the masked pixels.

    Returns:
        Tensor[B] float64: ``10 log10(R**2 / MSE)``; ``inf`` where the clipped images are equal.

    Raises:
        TypeError, ValueError: as :func:`rmse_hu`, or on a non-positive ``data_range``.
    """
    lo, hi = _check_window(window, "psnr")
    peak = hi - lo if data_range is None else float(data_range)
    if not (math.isfinite(peak) and peak > 0):
        raise ValueError(f"psnr: expected a positive finite data_range, got {data_range!r}")
    mse = _mse(pred, target, (lo, hi), "psnr", mask)
    return 10.0 * torch.log10(peak**2 / mse)


def ssim(
    pred: Tensor,
    target: Tensor,
    *,
    window: tuple[float, float] = FULL_WINDOW,
    mask: Tensor | None = None,
) -> Tensor:
    """Structural similarity (Wang et al. 2004), one value per image.

    Args:
        pred: denoised images in HU, ``[B, 1, H, W]`` (or ``[1, H, W]``, ``[H, W]``), with
            ``H, W >= 11`` (the Gaussian window's size).
        target: reference images in HU, same shape.
        window: ``(lo, hi)`` HU; both images are clipped to it and mapped to ``[0, 1]``.
        mask: optional bool mask of the images' shape; the SSIM map is averaged over the masked
            pixels at least 5 pixels from the border.

    Returns:
        Tensor[B] float64, 1 for identical images.

    Raises:
        TypeError, ValueError: as :func:`rmse_hu`, or on images smaller than 11 pixels.
    """
    lo, hi = _check_window(window, "ssim")
    p, t = _as_batch(pred, target, "ssim")
    m = _as_mask(mask, pred, p, "ssim")
    if min(p.shape[-2:]) < _SSIM_WINDOW:
        raise ValueError(
            f"ssim: expected H, W >= {_SSIM_WINDOW}, got {tuple(p.shape[-2:])}"
        )
    p = (p.clamp(lo, hi) - lo) / (hi - lo)
    t = (t.clamp(lo, hi) - lo) / (hi - lo)
    ssim_map = torch.cat([_ssim_map(p[i:i + _SSIM_CHUNK], t[i:i + _SSIM_CHUNK])
                          for i in range(0, p.shape[0], _SSIM_CHUNK)])
    r = _SSIM_WINDOW // 2
    crop = (..., slice(r, -r), slice(r, -r))
    where = "ssim (mask pixels at least 5 from the border)"
    return _masked_mean(ssim_map, None if m is None else m[crop], where)


def _ssim_map(p: Tensor, t: Tensor) -> Tensor:
    """Wang et al.'s SSIM map of ``[B, 1, H, W]`` images in ``[0, 1]`` (data range 1), over the
    pixels where the 11 x 11 Gaussian window fits: ``[B, 1, H - 10, W - 10]``."""
    x = torch.arange(_SSIM_WINDOW, dtype=p.dtype, device=p.device) - _SSIM_WINDOW // 2
    g = torch.exp(-0.5 * (x / _SSIM_SIGMA) ** 2)
    g = g / g.sum()
    rows, cols = g.view(1, 1, 1, -1), g.view(1, 1, -1, 1)

    def blur(image: Tensor) -> Tensor:  # the 2-D Gaussian is the outer product of two 1-D ones
        return F.conv2d(F.conv2d(image, rows), cols)

    c1, c2 = 0.01**2, 0.03**2
    mu_p, mu_t = blur(p), blur(t)
    var_p = (blur(p * p) - mu_p**2).clamp_min(0.0)
    var_t = (blur(t * t) - mu_t**2).clamp_min(0.0)
    cov = blur(p * t) - mu_p * mu_t
    return ((2 * mu_p * mu_t + c1) * (2 * cov + c2)) / ((mu_p**2 + mu_t**2 + c1)
                                                        * (var_p + var_t + c2))


def image_quality(
    pred: Tensor,
    target: Tensor,
    *,
    window: tuple[float, float] = FULL_WINDOW,
    mask: Tensor | None = None,
) -> dict[str, Tensor]:
    """PSNR, SSIM and RMSE of each image with one window (see the module docstring).

    Args:
        pred: denoised images in HU, ``[B, 1, H, W]``.
        target: reference images in HU, same shape.
        window: ``(lo, hi)`` HU for all three metrics.
        mask: optional bool mask of the images' shape (e.g. :func:`body_mask` of ``target``)
            for all three metrics.

    Returns:
        ``dict(psnr=Tensor[B], ssim=Tensor[B], rmse_hu=Tensor[B])``, float64.
    """
    return {
        "psnr": psnr(pred, target, window=window, mask=mask),
        "ssim": ssim(pred, target, window=window, mask=mask),
        "rmse_hu": rmse_hu(pred, target, window=window, mask=mask),
    }


def body_mask(hu: Tensor, threshold: float = -500.0) -> Tensor:
    """The patient's body in each image: above ``threshold``, holes filled, largest component.

    Args:
        hu: images in HU, ``[B, 1, H, W]`` (or ``[1, H, W]``, ``[H, W]``); a real image or the
            reference of a pair (the mask should not depend on the method being scored).
        threshold: HU above which a pixel is tissue (-500: above lung and gas, below fat).

    Returns:
        bool Tensor of ``hu``'s shape and device; all False for an image with nothing above the
        threshold.

    Raises:
        TypeError, ValueError: as :func:`rmse_hu`, or on a non-finite threshold.
    """
    if not (isinstance(threshold, int | float) and math.isfinite(threshold)):
        raise ValueError(f"body_mask: expected a finite threshold in HU, got {threshold!r}")
    batch, _ = _as_batch(hu, hu, "body_mask")
    images = (batch[:, 0] > threshold).cpu().numpy()
    out = np.zeros_like(images)
    for i, image in enumerate(images):
        # Fill first, then pick: the body with its lungs and gas filled is the largest region
        # even where air-filled organs split its tissue into thin pieces.
        filled = ndimage.binary_fill_holes(image)
        labels, n = ndimage.label(filled, structure=np.ones((3, 3), dtype=bool))
        if n:
            sizes = np.bincount(labels.ravel())[1:]
            out[i] = labels == 1 + int(np.argmax(sizes))
    return torch.from_numpy(out).reshape(hu.shape).to(hu.device)
