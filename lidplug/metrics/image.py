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
* **SSIM**: the Wang et al. 2004 definition with their parameters (Gaussian window sigma 1.5,
  11x11; K1 = 0.01, K2 = 0.03; population covariances), on the images mapped to ``[0, 1]`` by the
  window (data range 1), averaged over the pixels at least 5 pixels from the border (where the
  whole window fits). SSIM's luminance term is not shift-invariant, so the origin matters: here 0
  is the bottom of the window, as on a display. The SSIM map comes from torchmetrics'
  ``structural_similarity_index_measure`` (torch tensors: GPU, batched); its own mean includes
  reflect-padded border pixels, so the border is cropped here instead, which makes the value
  equal scikit-image's ``structural_similarity(..., gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=1)`` (the tests hold the two equal).

PSNR and RMSE are written here rather than taken from a library: both are one line on top of the
same per-image MSE (accumulated in float64), which keeps them consistent with each other.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchmetrics.functional.image import structural_similarity_index_measure

from lidplug.data.transforms import HU_MAX, HU_MIN, SOFT_TISSUE_HU

__all__ = ["FULL_WINDOW", "SOFT_TISSUE_WINDOW", "image_quality", "psnr", "rmse_hu", "ssim"]

FULL_WINDOW: tuple[float, float] = (HU_MIN, HU_MAX)
"""The models' window, ``(-1024, 3072)`` HU: the default for every metric here."""

SOFT_TISSUE_WINDOW: tuple[float, float] = SOFT_TISSUE_HU
"""Abdominal soft-tissue display window (width 400, level 40 HU)."""

# Gaussian sigma of Wang et al. 2004; torchmetrics (like scikit-image) truncates the kernel at
# 3.5 sigma, which makes it 11 x 11.
_SSIM_SIGMA = 1.5
_SSIM_WINDOW = 11


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


def _mse(pred: Tensor, target: Tensor, window: tuple[float, float] | None, name: str) -> Tensor:
    """Per-image mean squared error in HU^2 (float64), after clipping both images to ``window``."""
    p, t = _as_batch(pred, target, name)
    if window is not None:
        lo, hi = _check_window(window, name)
        p, t = p.clamp(lo, hi), t.clamp(lo, hi)
    return (p - t).square().flatten(1).mean(dim=1)


def rmse_hu(
    pred: Tensor, target: Tensor, *, window: tuple[float, float] | None = FULL_WINDOW
) -> Tensor:
    """Root mean squared error in HU, one value per image.

    Args:
        pred: denoised images in HU, ``[B, 1, H, W]`` (or ``[1, H, W]``, ``[H, W]``).
        target: reference (normal-dose) images in HU, same shape.
        window: ``(lo, hi)`` HU both images are clipped to first; ``None`` for raw HU.

    Returns:
        Tensor[B] float64, in HU.

    Raises:
        TypeError, ValueError: on non-real inputs, mismatched or unsupported shapes, non-finite
            values or a bad window.
    """
    return _mse(pred, target, window, "rmse_hu").sqrt()


def psnr(
    pred: Tensor,
    target: Tensor,
    *,
    window: tuple[float, float] = FULL_WINDOW,
    data_range: float | None = None,
) -> Tensor:
    """Peak signal-to-noise ratio in dB, one value per image.

    Args:
        pred: denoised images in HU, ``[B, 1, H, W]`` (or ``[1, H, W]``, ``[H, W]``).
        target: reference images in HU, same shape.
        window: ``(lo, hi)`` HU both images are clipped to first.
        data_range: the peak ``R`` in HU; defaults to the window width ``hi - lo``.

    Returns:
        Tensor[B] float64: ``10 log10(R**2 / MSE)``; ``inf`` where the clipped images are equal.

    Raises:
        TypeError, ValueError: as :func:`rmse_hu`, or on a non-positive ``data_range``.
    """
    lo, hi = _check_window(window, "psnr")
    peak = hi - lo if data_range is None else float(data_range)
    if not (math.isfinite(peak) and peak > 0):
        raise ValueError(f"psnr: expected a positive finite data_range, got {data_range!r}")
    mse = _mse(pred, target, (lo, hi), "psnr")
    return 10.0 * torch.log10(peak**2 / mse)


def ssim(pred: Tensor, target: Tensor, *, window: tuple[float, float] = FULL_WINDOW) -> Tensor:
    """Structural similarity (Wang et al. 2004), one value per image.

    Args:
        pred: denoised images in HU, ``[B, 1, H, W]`` (or ``[1, H, W]``, ``[H, W]``), with
            ``H, W >= 11`` (the Gaussian window's size).
        target: reference images in HU, same shape.
        window: ``(lo, hi)`` HU; both images are clipped to it and mapped to ``[0, 1]``.

    Returns:
        Tensor[B] float64, 1 for identical images.

    Raises:
        TypeError, ValueError: as :func:`rmse_hu`, or on images smaller than 11 pixels.
    """
    lo, hi = _check_window(window, "ssim")
    p, t = _as_batch(pred, target, "ssim")
    if min(p.shape[-2:]) < _SSIM_WINDOW:
        raise ValueError(
            f"ssim: expected H, W >= {_SSIM_WINDOW}, got {tuple(p.shape[-2:])}"
        )
    p = (p.clamp(lo, hi) - lo) / (hi - lo)
    t = (t.clamp(lo, hi) - lo) / (hi - lo)
    _, ssim_map = structural_similarity_index_measure(
        p, t, gaussian_kernel=True, sigma=_SSIM_SIGMA, data_range=1.0, k1=0.01, k2=0.03,
        reduction="none", return_full_image=True,
    )
    r = _SSIM_WINDOW // 2
    return ssim_map[..., r:-r, r:-r].flatten(1).mean(dim=1)


def image_quality(
    pred: Tensor, target: Tensor, *, window: tuple[float, float] = FULL_WINDOW
) -> dict[str, Tensor]:
    """PSNR, SSIM and RMSE of each image with one window (see the module docstring).

    Args:
        pred: denoised images in HU, ``[B, 1, H, W]``.
        target: reference images in HU, same shape.
        window: ``(lo, hi)`` HU for all three metrics.

    Returns:
        ``dict(psnr=Tensor[B], ssim=Tensor[B], rmse_hu=Tensor[B])``, float64.
    """
    return {
        "psnr": psnr(pred, target, window=window),
        "ssim": ssim(pred, target, window=window),
        "rmse_hu": rmse_hu(pred, target, window=window),
    }
