"""How noisy a real CT image is, and the photon count that makes a simulated dose right.

**The noise of a real image** (:func:`noise_level`): the global noise level of Christianson et
al. (AJR 205(1), 2015, "Automated technique to measure noise in clinical CT examinations"): a
map of the local standard deviation in square windows of about 6 mm, kept where the window lies
in soft tissue, and the mode of its histogram. Tissue is found on a smoothed copy of the image
(so that noise does not fragment it) between -50 and 150 HU; windows are kept only where they
lie wholly inside it (an erosion by the window), so organ edges do not count as noise. The mode,
not the mean, because the few windows that straddle structure have larger SDs and a long tail.
Written here (scipy.ndimage box filters and a histogram): the method is a few lines and no
maintained library implements it.

**Calibration** (:func:`calibrate_i0`): :func:`lidplug.simulation.simulate_low_dose` with
``method="insert"`` adds the noise a normal-dose scan lacks. How much it adds depends on ``i0``,
the photons per detector bin of the *simulated* scanner, while the real image carries the noise
of its own scanner, kernel and slice thickness. A quarter-dose image must carry twice the
normal-dose noise (noise grows as ``1 / sqrt(dose)``), so the added noise must be
``sigma_n * sqrt(1 / dose - 1)`` with ``sigma_n`` the image's own noise level. In the insertion
the added noise's standard deviation scales as ``1 / sqrt(i0)`` (Gaussian counts; electronic
noise only matters for rays keeping fewer than about 100 photons), so one simulation at a
reference ``i0`` measures the constant and gives the ``i0`` that meets the target. Where the
header records the tube exposure (mAs) of each slice, ``i0`` follows it slice by slice (tube
current modulation): the calibration fixes photons per mAs for the series.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from torch import Tensor

__all__ = ["NoiseCalibration", "calibrate_i0", "noise_level"]

_WINDOW_MM = 6.0
_TISSUE_HU = (-50.0, 150.0)
_MIN_WINDOWS = 200  # fewer kept windows than this: no reliable mode
_BIN_HU = 0.5


def _local_sd(image: np.ndarray, size: int) -> np.ndarray:
    mean = ndimage.uniform_filter(image, size)
    square = ndimage.uniform_filter(image * image, size)
    return np.sqrt(np.clip(square - mean * mean, 0.0, None))


def _tissue_core(hu: np.ndarray, size: int) -> np.ndarray:
    smooth = ndimage.gaussian_filter(hu, 2.0)
    tissue = (smooth > _TISSUE_HU[0]) & (smooth < _TISSUE_HU[1])
    return ndimage.binary_erosion(tissue, np.ones((size, size), dtype=bool))


def _window(spacing_mm: float) -> int:
    return max(3, round(_WINDOW_MM / spacing_mm) | 1)


def _mode(values: np.ndarray) -> float:
    if values.size < _MIN_WINDOWS:
        return math.nan
    top = float(np.percentile(values, 99)) + _BIN_HU
    hist, edges = np.histogram(values, bins=np.arange(0.0, top + _BIN_HU, _BIN_HU))
    k = int(hist.argmax())
    return float(edges[k] + _BIN_HU / 2)


def noise_level(hu: Tensor | np.ndarray, spacing_mm: float, *,
                noise: Tensor | np.ndarray | None = None) -> float:
    """The global noise level (HU) of a CT slice (see the module docstring).

    Args:
        hu: ``[H, W]`` (or ``[1, H, W]``) slice in HU; its soft tissue selects the windows.
        spacing_mm: pixel size, which sets the 6-mm window.
        noise: measure this image instead (e.g. a noise field added to ``hu``) on the windows
            that ``hu``'s tissue selects.

    Returns:
        The mode of the local standard deviation in soft tissue, or NaN when the slice holds
        fewer than 200 windows of soft tissue (e.g. a slice through the lung apex only).
    """
    image = np.asarray(hu.detach().cpu() if isinstance(hu, Tensor) else hu, np.float64)
    image = image.reshape(image.shape[-2:])
    size = _window(float(spacing_mm))
    core = _tissue_core(image, size)
    target = image if noise is None else np.asarray(
        noise.detach().cpu() if isinstance(noise, Tensor) else noise, np.float64
    ).reshape(image.shape)
    return _mode(_local_sd(target, size)[core])


@dataclass
class NoiseCalibration:
    """The photon count of one series, and the noise levels it was fitted to.

    Attributes:
        i0: photons per detector bin at the reference exposure (normal dose).
        exposure: the reference exposure (mAs) ``i0`` belongs to, or None (no exposure in
            the header: every slice gets ``i0``).
        noise_hu: the series' own noise level (median over the slices measured).
        dose: the dose the calibration aimed at.
        added_hu: the noise the simulation adds at ``dose`` with ``i0`` (the target
            ``noise_hu * sqrt(1 / dose - 1)``, as predicted from the reference simulation).
        slices: how many slices were measured.
    """

    i0: float
    exposure: float | None
    noise_hu: float
    dose: float
    added_hu: float
    slices: int

    def i0_for(self, exposure: float | None) -> float:
        """The photon count of a slice exposed ``exposure`` mAs (``i0`` when unknown)."""
        if self.exposure is None or exposure is None or not exposure > 0:
            return self.i0
        return self.i0 * exposure / self.exposure

    @property
    def low_dose_noise_hu(self) -> float:
        """The noise a slice of this series carries at ``dose``: ``noise_hu / sqrt(dose)``."""
        return self.noise_hu / math.sqrt(self.dose)


def calibrate_i0(hu: Tensor, spacing_mm: float, dose: float, *,
                 exposure: Sequence[float | None] | None = None,
                 noise_hu: float | None = None, reference_i0: float = 1e6, seed: int = 0,
                 **simulate_kwargs) -> NoiseCalibration:
    """The ``i0`` that gives a real series the right noise at ``dose`` (see the module docstring).

    Args:
        hu: ``Tensor[N, H, W]`` some slices of the series (e.g. every fourth), HU.
        spacing_mm: their pixel size.
        dose: the simulated dose fraction, in (0, 1).
        exposure: per slice mAs (DICOM Exposure), None where unknown.
        noise_hu: the series' own noise level if known; else measured (:func:`noise_level`,
            median over the slices where it is defined).
        reference_i0: the photon count of the measuring simulation.
        seed: its seed.
        **simulate_kwargs: further options of ``simulate_low_dose`` (geometry, views, filter)
            that the runs will use too.

    Raises:
        ValueError: a dose outside (0, 1), or no slice with enough soft tissue to measure.
    """
    from lidplug.simulation.lowdose import simulate_low_dose

    if not 0.0 < dose < 1.0:
        raise ValueError(f"dose: expected a fraction in (0, 1) to calibrate, got {dose!r}")
    if hu.dim() != 3:
        raise ValueError(f"hu: expected slices [N, H, W], got shape {list(hu.shape)}")
    own = [noise_level(s, spacing_mm) for s in hu] if noise_hu is None else []
    measured = [v for v in own if math.isfinite(v)]
    if noise_hu is None and not measured:
        raise ValueError(f"hu: expected slices with soft tissue to measure the noise of, got "
                         f"none of {hu.shape[0]} slices with {_MIN_WINDOWS} windows of it")
    sigma_n = float(noise_hu) if noise_hu is not None else float(np.median(measured))
    exposures = [None] * hu.shape[0] if exposure is None else list(exposure)
    known = [e for e in exposures if e is not None and e > 0]
    reference = float(np.median(known)) if len(known) == len(exposures) and known else None
    ratios = []
    for k, s in enumerate(hu):
        # Each slice measured at the i0 its exposure implies, so ratios share one reference.
        i0_k = reference_i0 if reference is None else reference_i0 * exposures[k] / reference
        low = simulate_low_dose(s[None], dose, method="insert", i0=i0_k, pixel_spacing=spacing_mm,
                                seed=seed + k, **simulate_kwargs)[0]
        added = noise_level(s, spacing_mm, noise=low - s)
        if math.isfinite(added):
            ratios.append(added)
    if not ratios:
        raise ValueError("hu: expected slices with soft tissue to measure the added noise on, "
                         "got none")
    added_ref = float(np.median(ratios))
    target = sigma_n * math.sqrt(1.0 / dose - 1.0)
    # Added SD ~ 1 / sqrt(i0): i0 = i0_ref * (added_ref / target)^2.
    i0 = reference_i0 * (added_ref / target) ** 2
    return NoiseCalibration(i0=i0, exposure=reference, noise_hu=sigma_n, dose=float(dose),
                            added_hu=target, slices=len(ratios))
