"""Finding the low-contrast discs of a noise-free phantom: where each is and how large.

The toolbox looks up four fixed values (14, 7, 5 and 3 HU: its CCT189 discs); here any disc is
found, whatever its contrast, so other phantoms work too. Then each disc is measured the
toolbox's way, because its size sets the observer's channel width and ROI:

1. The phantom is the truth above -500 HU; its background the median HU inside it.
2. Candidates: pixels at least 0.5 HU from the background, 3 pixels or more inside the phantom's
   edge (the edge's partial-volume ring is no disc); 8-connected components of them.
3. A component's contrast is its value farthest from the background (the truth is noise-free:
   partial-volume pixels at the disc's rim lie between background and plateau).
4. Its **mask** is the toolbox's: pixels within ``tolerance`` (1 HU) of the plateau, cleaned by
   a 3x3 median filter, kept where they touch the component. The disc's **centre** is the
   mask's centroid rounded to a pixel (Python's rounding, half to even, as the toolbox's Python
   code), its **diameter** the longer side of the mask's bounding box in pixels.
5. ``equivalent_diameter_px`` is the physical size: ``2 sqrt(A / pi)`` with ``A`` the area the
   contrast-weighted pixels add up to (partial volume included). The toolbox's diameter is
   1-2 pixels smaller, since its mask leaves the rim out.

A disc so small that the median filter erases its mask (fewer than about 5 plateau pixels) is
measured from the unfiltered plateau instead; the toolbox drops such a disc.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["Disc", "find_discs", "phantom_mask"]

_AIR_LIMIT_HU = -500.0  # the phantom is water-equivalent, outside is air (-1000 HU)
_MIN_CONTRAST_HU = 0.5
_EDGE_PX = 3
_EIGHT = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class Disc:
    """One low-contrast disc of the ground truth (module docstring: how each is measured).

    Attributes:
        contrast_hu: plateau minus the phantom's background, HU.
        centre: ``(row, col)`` pixel the ROIs are centred on.
        diameter_px: the toolbox's size, the mask's longer bounding-box side in pixels.
        equivalent_diameter_px: the physical diameter in pixels (partial volume included).
        mask_pixels: pixels in the mask.
    """

    contrast_hu: float
    centre: tuple[int, int]
    diameter_px: int
    equivalent_diameter_px: float
    mask_pixels: int

    def label(self, spacing_mm: float | None = None) -> str:
        """``"14 HU, 4.7 px"``, or ``"14 HU, 3.0 mm"`` when the pixel size is known."""
        size = (f"{self.equivalent_diameter_px * spacing_mm:.1f} mm" if spacing_mm
                else f"{self.equivalent_diameter_px:.1f} px")
        return f"{self.contrast_hu:g} HU, {size}"


def phantom_mask(truth_hu: np.ndarray) -> np.ndarray:
    """``bool[H, W]``: the phantom (water-equivalent) rather than the air around it."""
    return np.asarray(truth_hu) > _AIR_LIMIT_HU


def _toolbox_mask(truth: np.ndarray, plateau: float, near: np.ndarray,
                  tolerance: float) -> np.ndarray:
    """The plateau mask, median-filtered as the toolbox does, limited to the disc at ``near``."""
    raw = np.abs(truth - plateau) < tolerance
    cleaned = ndimage.median_filter(raw, size=3) & near
    if not cleaned.any():  # a disc of a few pixels: the filter erases it
        cleaned = raw & near
    labels, count = ndimage.label(cleaned, structure=_EIGHT)
    if count > 1:  # keep the largest piece (stray plateau-valued pixels at other rims)
        sizes = ndimage.sum_labels(cleaned, labels, index=np.arange(1, count + 1))
        cleaned = labels == 1 + int(np.argmax(sizes))
    return cleaned


def find_discs(truth_hu: np.ndarray, *, tolerance: float = 1.0) -> list[Disc]:
    """The discs of a noise-free phantom image, by increasing size.

    Args:
        truth_hu: ``[H, W]`` the ground truth in HU (offset removed).
        tolerance: HU within which a pixel belongs to a disc's plateau (the toolbox's 1 HU).

    Returns:
        The discs (empty if there are none).

    Raises:
        ValueError: not a finite 2-D image, a non-positive tolerance, or no phantom (nothing
            above -500 HU).
    """
    truth = np.asarray(truth_hu, dtype=np.float64)
    if truth.ndim != 2 or not np.isfinite(truth).all():
        raise ValueError(f"find_discs: expected a finite [H, W] image, got shape {truth.shape}")
    if not tolerance > 0:
        raise ValueError(f"find_discs: expected a positive tolerance, got {tolerance!r}")
    phantom = phantom_mask(truth)
    if not phantom.any():
        raise ValueError("find_discs: expected a phantom (pixels above -500 HU), got only air")
    background = float(np.median(truth[phantom]))
    inside = ndimage.binary_erosion(phantom, iterations=_EDGE_PX)
    candidates = inside & (np.abs(truth - background) >= _MIN_CONTRAST_HU)
    labels, count = ndimage.label(candidates, structure=_EIGHT)
    discs = []
    for index in range(1, count + 1):
        component = labels == index
        values = truth[component] - background
        contrast = float(values[np.argmax(np.abs(values))])
        near = ndimage.binary_dilation(component, structure=_EIGHT)
        mask = _toolbox_mask(truth, background + contrast, near, tolerance)
        rows, cols = np.nonzero(mask)
        # round() on Python floats: half to even, as the toolbox's Python code rounds.
        centre = (round(float(rows.mean())), round(float(cols.mean())))
        diameter = max(int(np.ptp(rows)) + 1, int(np.ptp(cols)) + 1)
        area = float(np.clip((truth[near] - background) / contrast, 0.0, 1.0).sum())
        discs.append(Disc(contrast, centre, diameter, 2 * math.sqrt(area / math.pi),
                          int(mask.sum())))
    return sorted(discs, key=lambda d: (d.equivalent_diameter_px, d.centre))
